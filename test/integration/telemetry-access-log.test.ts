/**
 * Access logs from a real gateway: Istio's default TEXT line, Istio's default JSON fields, a
 * custom format with Envoy operators, secrets never written (cookies, authorization, OIDC codes
 * in the query), bad formats refused with the operator named, lines written to a file.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { request } from 'undici';
import { compileAccessLogFormat, redactQuery } from '../../gateway/telemetry/access-log.ts';
import type { AccessLogOptions } from '../../gateway/telemetry/access-log.ts';
import { startMesh } from './telemetry-helper.ts';

const SECRET_HEADERS = { cookie: 'authservice_session=SECRETCOOKIE', authorization: 'Bearer SECRETTOKEN', 'user-agent': 'curl/8.0', 'x-forwarded-for': '10.1.2.3' };

async function logged(t: import('node:test').TestContext, accessLog: Omit<AccessLogOptions, 'stream' | 'file'>, path = '/reviews/1?code=SECRETCODE&page=2'): Promise<string> {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (c: Buffer) => (text += c.toString()));
  const mesh = await startMesh(t, { tracing: false, accessLog: { file: '/dev/stdout', stream, ...accessLog } });
  const res = await request(`http://127.0.0.1:${mesh.port}${path}`, { headers: { host: 'bookinfo.example.com', ...SECRET_HEADERS } });
  await res.body.text();
  await mesh.tel.accessLog!.flush();
  return text;
}

test('TEXT: Istio default format line', async (t) => {
  const line = await logged(t, {});
  const re =
    /^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\] "GET \/reviews\/1\?code=\[REDACTED\]&page=2 HTTP\/1\.1" 200 - via_upstream - "-" 0 (\d+) (\d+) - "10\.1\.2\.3" "curl\/8\.0" "([0-9a-f-]{36})" "bookinfo\.example\.com" "127\.0\.0\.1:(\d+)" outbound\|9080\|\|reviews\.default\.svc\.cluster\.local - 127\.0\.0\.1:\d+ 127\.0\.0\.1:\d+ - reviews\n$/;
  const m = re.exec(line);
  assert.ok(m, `line does not match Istio's default format:\n${line}`);
  assert.ok(Math.abs(Date.parse(m[1]!) - Date.now()) < 10_000);
  assert.ok(Number(m[2]) > 0, 'bytes sent');
  assert.doesNotMatch(line, /SECRET/);
});

test('JSON: Istio default fields, numbers as numbers, missing values null', async (t) => {
  const text = await logged(t, { encoding: 'JSON' });
  const entry = JSON.parse(text) as Record<string, unknown>;
  assert.equal(entry.method, 'GET');
  assert.equal(entry.path, '/reviews/1?code=[REDACTED]&page=2');
  assert.equal(entry.response_code, 200);
  assert.equal(entry.response_flags, '-');
  assert.equal(entry.protocol, 'HTTP/1.1');
  assert.equal(entry.upstream_cluster, 'outbound|9080||reviews.default.svc.cluster.local');
  assert.equal(entry.route_name, 'reviews');
  assert.equal(entry.authority, 'bookinfo.example.com');
  assert.equal(entry.user_agent, 'curl/8.0');
  assert.equal(typeof entry.duration, 'number');
  assert.equal(entry.upstream_service_time, null);
  assert.match(String(entry.request_id), /^[0-9a-f-]{36}$/);
  assert.doesNotMatch(text, /SECRET/);
});

test('custom formats: text operators, header fallbacks, truncation, secrets redacted', async (t) => {
  const line = await logged(t, { format: '%REQ(:METHOD)% %RESPONSE_CODE% %REQ(COOKIE)% %REQ(AUTHORIZATION)% %REQ(X-MISSING?USER-AGENT)% %REQ(USER-AGENT):4% %UPSTREAM_REQUEST_ATTEMPT_COUNT%' });
  assert.equal(line, 'GET 200 [REDACTED] [REDACTED] curl/8.0 curl 1\n');
  const json = await logged(t, { encoding: 'JSON', format: '{"m":"%REQ(:METHOD)%","code":"%RESPONSE_CODE%","c":"%REQ(COOKIE)%","both":"%REQ(:METHOD)% %PROTOCOL%"}' }, '/reviews/2');
  assert.deepEqual(JSON.parse(json), { m: 'GET', code: 200, c: '[REDACTED]', both: 'GET HTTP/1.1' });
});

test('bad formats are refused naming the problem', () => {
  assert.throws(() => compileAccessLogFormat('TEXT', '%NOT_AN_OPERATOR%'), /unsupported command operator %NOT_AN_OPERATOR%/);
  assert.throws(() => compileAccessLogFormat('JSON', 'not json'), /JSON object/);
  assert.throws(() => compileAccessLogFormat('JSON', '{"a": 1}'), /field 'a' must be a string/);
});

test('redactQuery keeps harmless parameters and hides token-like ones', () => {
  assert.equal(redactQuery('/cb?state=s1&code=c1&next=%2Fhome'), '/cb?state=[REDACTED]&code=[REDACTED]&next=%2Fhome');
  assert.equal(redactQuery('/p?access%5Ftoken=x'), '/p?access%5Ftoken=[REDACTED]');
  assert.equal(redactQuery('/plain'), '/plain');
});

test('accessLogFile path: lines appended to the file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-log-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'access.log');
  const mesh = await startMesh(t, { tracing: false, accessLog: { file, encoding: 'JSON' } });
  for (let i = 0; i < 3; i++) {
    const r = await request(`http://127.0.0.1:${mesh.port}/reviews/${i}`, { headers: { host: 'x' } });
    await r.body.text();
  }
  await mesh.tel.accessLog!.flush();
  const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { path: string });
  assert.deepEqual(lines.map((l) => l.path), ['/reviews/0', '/reviews/1', '/reviews/2']);
});
