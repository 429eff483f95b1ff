/**
 * lib/log.ts: the one logger factory — Portico's line shape, and credentials redacted whatever
 * component logs them.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createAuthserviceLogger } from '../../authservice/logger.ts';
import { jsonLogger } from '../../controlplane/log.ts';
import { createLogger, REDACTED } from '../../lib/log.ts';

function sink(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  });
  return { stream, lines: () => text.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

test('message-first lines: level label, ISO time, component, msg, fields', () => {
  const s = sink();
  const log = createLogger('gateway', { destination: s.stream });
  log.info('gateway ready', { ports: [8080] });
  log.warn('plain');
  assert.match(JSON.stringify(s.lines()[0]), /^\{"level":"info","time":"[^"]+","component":"gateway","msg":"gateway ready","ports":\[8080\]\}$/);
  const [a, b] = s.lines();
  assert.equal(a!.level, 'info');
  assert.equal(a!.component, 'gateway');
  assert.equal(a!.msg, 'gateway ready');
  assert.deepEqual(a!.ports, [8080]);
  assert.match(String(a!.time), /^\d{4}-\d\d-\d\dT/);
  assert.equal(b!.level, 'warn');
  assert.equal(b!.msg, 'plain');
});

test('credentials are redacted in every component', () => {
  const gw = sink();
  createLogger('gateway', { destination: gw.stream }).warn('ext_authz', { headers: { cookie: 'authservice_session=s3cr3t', authorization: 'Bearer abc', accept: '*/*' } });
  const cp = sink();
  jsonLogger('controlplane', cp.stream).error('push', { client: { token: 'tkn', privateKey: 'pem' } });
  const au = sink();
  createAuthserviceLogger('info', au.stream).info({ tokens: { id_token: 'eyJ', refreshToken: 'r' }, req: { headers: { cookie: 'c' } } }, 'callback');
  const g = gw.lines()[0] as { headers: Record<string, string> };
  assert.equal(g.headers.cookie, REDACTED);
  assert.equal(g.headers.authorization, REDACTED);
  assert.equal(g.headers.accept, '*/*');
  const c = cp.lines()[0] as { client: Record<string, string> };
  assert.deepEqual(c.client, { token: REDACTED, privateKey: REDACTED });
  const a = au.lines()[0] as { tokens: Record<string, string>; req: { headers: Record<string, string> }; component: string };
  assert.equal(a.component, 'authservice');
  assert.deepEqual(a.tokens, { id_token: REDACTED, refreshToken: REDACTED });
  assert.equal(a.req.headers.cookie, REDACTED);
  for (const text of [JSON.stringify(gw.lines()), JSON.stringify(cp.lines()), JSON.stringify(au.lines())]) {
    assert.doesNotMatch(text, /s3cr3t|Bearer abc|tkn|eyJ/);
  }
});
