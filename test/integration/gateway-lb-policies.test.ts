/**
 * DestinationRule loadBalancer through a real gateway to real upstreams (WorkloadEntries on
 * 127.0.0.1 with distinct ports): consistent hash on a header and on a generated cookie,
 * LEAST_REQUEST steering away from a slow endpoint.
 */
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { test } from 'node:test';
import { getApp, startServiceGateway, type Handler } from '../helpers/service-gateway.ts';


test('consistentHash on a header: each key sticks to one upstream, keys spread', async (t) => {
  const s = await startServiceGateway(t, ['a', 'b', 'c'], `    loadBalancer: {consistentHash: {httpHeaderName: x-user}}`);
  const owners = new Set<string>();
  for (let u = 0; u < 12; u++) {
    const first = (await getApp(s.port, { 'x-user': `user-${u}` })).name!;
    assert.ok(first);
    owners.add(first);
    for (let k = 0; k < 3; k++) assert.equal((await getApp(s.port, { 'x-user': `user-${u}` })).name, first, `user-${u} request ${k}`);
  }
  assert.ok(owners.size >= 2, `12 keys all on ${[...owners]}`);
});

test('consistentHash on a cookie with ttl: the gateway sets the cookie and then sticks to it', async (t) => {
  const s = await startServiceGateway(t, ['a', 'b', 'c'], `    loadBalancer: {consistentHash: {httpCookie: {name: backend, path: /, ttl: 3600s}}}`);
  for (let i = 0; i < 4; i++) {
    const first = await getApp(s.port);
    assert.equal(first.status, 200);
    const setCookie = first.headers['set-cookie'];
    assert.equal(typeof setCookie, 'string', 'one Set-Cookie from the gateway');
    const m = /^backend="([0-9a-f]+)"; Max-Age=3600; Path=\/; HttpOnly$/.exec(setCookie as string);
    assert.ok(m, `Set-Cookie: ${setCookie}`);
    for (let k = 0; k < 4; k++) {
      const again = await getApp(s.port, { cookie: `backend="${m[1]}"` });
      assert.equal(again.name, first.name, 'same cookie, same upstream');
      assert.equal(again.headers['set-cookie'], undefined, 'no new cookie when the client sends one');
    }
  }
});

test('LEAST_REQUEST sends new requests to the idle upstream while the other is busy', async (t) => {
  const held: ServerResponse[] = [];
  const slowHandler: Handler = (_req, res) => {
    held.push(res); // never answered until the test ends
    return true;
  };
  const s = await startServiceGateway(t, ['slow', 'fast'], `    loadBalancer: {simple: LEAST_REQUEST}`, { slow: slowHandler });
  t.after(() => {
    for (const r of held) r.destroy();
  });
  const pending: Promise<unknown>[] = [];
  let fast = 0;
  for (let i = 0; i < 20; i++) {
    const before = s.ups.slow!.seen.length;
    const p = getApp(s.port).then((r) => {
      if (r.name === 'fast') fast++;
    });
    let answered = false;
    pending.push(p.then(() => (answered = true), () => (answered = true)));
    // Wait until the request has landed: answered by fast, or held by slow.
    await waitFor(() => answered || s.ups.slow!.seen.length > before);
  }
  assert.equal(s.ups.slow!.seen.length, 1, 'at most one request goes to the busy upstream (round robin would send 10)');
  assert.equal(fast, 19);
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 2));
  }
}
