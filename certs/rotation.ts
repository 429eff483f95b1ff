import { badArg } from './names.ts';

/**
 * True when a certificate valid from `notBefore` to `notAfter` should be replaced at `now`:
 * once more than `fraction` of its lifetime has passed (default one half, which leaves the
 * other half to retry a failed renewal), or when it is already expired or not yet valid.
 * Istio's agent uses the same rule (SECRET_GRACE_PERIOD_RATIO, default 0.5).
 */
export function needsRotation(
  notBefore: Date | number,
  notAfter: Date | number,
  now: Date | number = Date.now(),
  fraction = 0.5,
): boolean {
  if (!(fraction > 0 && fraction <= 1)) throw badArg(`rotation fraction must be in (0, 1], got ${fraction}`);
  const start = +notBefore;
  const end = +notAfter;
  const at = +now;
  if (!Number.isFinite(start) || !Number.isFinite(end) || end <= start) {
    throw badArg(`certificate validity is empty or invalid (notBefore ${String(notBefore)}, notAfter ${String(notAfter)})`);
  }
  if (at < start || at >= end) return true;
  return at - start > fraction * (end - start);
}

/** When `needsRotation` will first return true for this validity window. */
export function rotationTime(notBefore: Date | number, notAfter: Date | number, fraction = 0.5): Date {
  const start = +notBefore;
  return new Date(start + fraction * (+notAfter - start));
}
