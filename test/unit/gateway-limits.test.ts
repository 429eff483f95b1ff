/** The request limit settings: Envoy's defaults, the gateway flags, out-of-range values named. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { limitOptionsFromFlags as listenerSettings, resolveLimits } from '../../gateway/limits.ts';

test("defaults are Envoy's: 60 KiB, 100 headers; 30 s header timeout, no request timeout", () => {
  assert.deepEqual(resolveLimits(), { maxHeaderBytes: 60 * 1024, maxHeaders: 100, headersTimeoutMs: 30_000, requestTimeoutMs: 0, keepAliveTimeoutMs: 65_000 });
});

test('gateway flags set the limits', () => {
  const o = listenerSettings({ 'max-request-headers-kb': '96', 'max-headers-count': '200', 'request-headers-timeout-ms': '5000', 'request-timeout-ms': '0' });
  assert.deepEqual(resolveLimits(o), { maxHeaderBytes: 96 * 1024, maxHeaders: 200, headersTimeoutMs: 5000, requestTimeoutMs: 0, keepAliveTimeoutMs: 65_000 });
});

test('bad values are refused naming the flag or the setting', () => {
  assert.throws(() => listenerSettings({ 'max-headers-count': 'lots' }), /--max-headers-count: 'lots'/);
  assert.throws(() => listenerSettings({ 'max-request-headers-kb': '0' }), /max request headers: 0 KiB/);
  assert.throws(() => listenerSettings({ 'max-request-headers-kb': '9000' }), /1\.\.8192/);
  assert.throws(() => resolveLimits({ maxHeadersCount: 0 }), /max headers count/);
});
