import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CertErrorCodes, isCertError, needsRotation, rotationTime } from '../../certs/index.ts';
import { validityWindow } from '../../certs/validity.ts';

const H = 3_600_000;
const start = Date.UTC(2030, 0, 1);
const end = start + 24 * H;

describe('needsRotation', () => {
  test('rotates once more than half the lifetime has passed', () => {
    assert.equal(needsRotation(start, end, start), false);
    assert.equal(needsRotation(start, end, start + 12 * H - 1), false);
    assert.equal(needsRotation(start, end, start + 12 * H), false, 'exactly half: not yet');
    assert.equal(needsRotation(start, end, start + 12 * H + 1), true);
    assert.equal(needsRotation(start, end, end - 1), true);
  });

  test('rotates expired and not-yet-valid certificates', () => {
    assert.equal(needsRotation(start, end, end), true);
    assert.equal(needsRotation(start, end, end + 365 * 24 * H), true);
    assert.equal(needsRotation(start, end, start - 1), true);
  });

  test('takes Dates and a custom fraction', () => {
    const nb = new Date(start);
    const na = new Date(end);
    assert.equal(needsRotation(nb, na, new Date(start + 18 * H), 0.8), false);
    assert.equal(needsRotation(nb, na, new Date(start + 20 * H), 0.8), true);
    assert.equal(needsRotation(nb, na, new Date(end - 1), 1), false);
    assert.equal(rotationTime(nb, na).getTime(), start + 12 * H);
    assert.equal(rotationTime(nb, na, 0.25).getTime(), start + 6 * H);
  });

  test('refuses nonsense input instead of guessing', () => {
    for (const fraction of [0, -0.5, 1.5, Number.NaN]) {
      assert.throws(() => needsRotation(start, end, start, fraction), (e: unknown) => isCertError(e, CertErrorCodes.BAD_ARGUMENT));
    }
    assert.throws(() => needsRotation(end, start, start), /validity/);
    assert.throws(() => needsRotation(new Date('garbage'), end, start), /validity/);
  });
});

describe('validityWindow', () => {
  test('truncates to whole seconds, back-dates a minute and caps at the issuer', () => {
    const now = new Date(start + 1234);
    const w = validityWindow(now, 10 * H);
    assert.equal(w.notBefore.getTime(), start + 1000 - 60_000);
    assert.equal(w.notAfter.getTime(), start + 1000 + 10 * H);
    const capped = validityWindow(now, 10 * H, new Date(start + 2 * H + 500));
    assert.equal(capped.notAfter.getTime(), start + 2 * H);
  });
});
