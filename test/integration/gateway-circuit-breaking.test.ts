/**
 * DestinationRule connectionPool circuit breaking through a real gateway: with
 * maxConnections 1 and http1MaxPendingRequests 1 against a slow upstream, one request runs, one
 * waits, the rest get 503 "upstream connection pool overflow" at once.
 */
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { test } from 'node:test';
import { getApp, startServiceGateway, type Handler } from '../helpers/service-gateway.ts';


test('maxConnections 1 + http1MaxPendingRequests 1: overflow answers 503 UO, admitted requests succeed', async (t) => {
  const held: ServerResponse[] = [];
  const slow: Handler = (_req, res) => {
    held.push(res);
    return true;
  };
  const s = await startServiceGateway(t, ['slow'], `    connectionPool: {tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}`, { slow });
  const results = Array.from({ length: 6 }, () => getApp(s.port));
  await waitFor(() => held.length === 1);
  // Requests beyond the running one and the pending one are refused without reaching upstream.
  const overflowed = await Promise.all(results.slice(2));
  for (const r of overflowed) {
    assert.equal(r.status, 503);
    assert.match(r.text, /upstream connection pool overflow/);
  }
  assert.equal(s.ups.slow!.seen.length, 1, 'only one connection to the upstream');
  const st = s.gw.balancer.stats().find((c) => c.name.endsWith('|app.default.svc.cluster.local'))!;
  assert.equal(st.active, 2);
  assert.equal(st.pending, 1);
  assert.equal(st.overflows, 4);

  // Finish the first: the pending one gets the connection.
  respond(held[0]!);
  const first = await results[0]!;
  assert.equal(first.status, 200);
  await waitFor(() => held.length === 2);
  respond(held[1]!);
  assert.equal((await results[1]!).status, 200);
  // Capacity is back.
  const later = getApp(s.port);
  await waitFor(() => held.length === 3);
  respond(held[2]!);
  assert.equal((await later).status, 200);
});

function respond(res: ServerResponse): void {
  res.writeHead(200, { 'x-upstream': 'slow' });
  res.end('ok');
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 2));
  }
}
