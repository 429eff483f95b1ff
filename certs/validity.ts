/**
 * Certificate validity windows. notBefore is back-dated a little so a peer whose clock runs
 * slightly behind ours does not reject a certificate that was issued a moment ago.
 */
export const CLOCK_SKEW_MS = 60_000;
export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;

export interface Validity {
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/**
 * The window for a certificate issued at `now` that should live `lifetimeMs`. X.509 times have
 * one-second resolution, so both ends are truncated to whole seconds: the returned dates are
 * exactly what the certificate will say. A certificate never outlives its issuer (`capAt`),
 * since a chain is only valid while every certificate in it is.
 */
export function validityWindow(now: Date, lifetimeMs: number, capAt?: Date): Validity {
  const start = floorToSecond(now.getTime());
  let end = floorToSecond(now.getTime() + lifetimeMs);
  if (capAt && end > capAt.getTime()) end = floorToSecond(capAt.getTime());
  return { notBefore: new Date(start - CLOCK_SKEW_MS), notAfter: new Date(end) };
}

function floorToSecond(ms: number): number {
  return Math.floor(ms / 1000) * 1000;
}
