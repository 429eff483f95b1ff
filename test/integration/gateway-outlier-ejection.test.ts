/**
 * DestinationRule outlierDetection through a real gateway: an upstream answering 500s is ejected
 * (traffic moves to the others) and comes back after baseEjectionTime (ms-scale settings).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { getApp, startServiceGateway, type Handler } from '../helpers/service-gateway.ts';


test('an upstream returning 500s is ejected, then returns after baseEjectionTime', async (t) => {
  let failing = true;
  const bad: Handler = (_req, res) => {
    if (!failing) return false;
    res.writeHead(500, { 'x-upstream': 'bad' });
    res.end('boom');
    return true;
  };
  const s = await startServiceGateway(
    t,
    ['bad', 'good1', 'good2'],
    `    outlierDetection: {consecutive5xxErrors: 2, interval: 10ms, baseEjectionTime: 2s, maxEjectionPercent: 100}`,
    { bad },
  );
  const statuses: number[] = [];
  for (let i = 0; i < 30; i++) statuses.push((await getApp(s.port)).status);
  assert.equal(s.ups.bad!.seen.length, 2, 'ejected after two consecutive 500s');
  assert.equal(statuses.filter((x) => x === 500).length, 2);
  assert.ok(s.ups.good1!.seen.length > 10 && s.ups.good2!.seen.length > 10);
  const ep = s.gw.balancer.stats().find((c) => c.name.endsWith('|app.default.svc.cluster.local'))!.endpoints.find((e) => e.port === s.ups.bad!.port)!;
  assert.equal(ep.health, 'EJECTED');
  assert.equal(ep.ejections, 1);

  failing = false;
  // baseEjectionTime is generous (2 s) so a slow, shared CI host cannot end the ejection while
  // the 30 requests above are still running.
  await waitFor(async () => {
    await getApp(s.port);
    return s.ups.bad!.seen.length > 2;
  });
  assert.equal((await getApp(s.port)).status, 200);
});

test('connect failures eject an endpoint that is down; the others keep serving', async (t) => {
  const s = await startServiceGateway(t, ['down', 'up'], `    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}`);
  await new Promise<void>((r) => {
    s.ups.down!.server.closeAllConnections();
    s.ups.down!.server.close(() => r());
  });
  // Istio's default retries (connect-failure) move a failed attempt to the other host.
  for (let i = 0; i < 10; i++) assert.equal((await getApp(s.port)).status, 200);
  const st = s.gw.balancer.stats().find((c) => c.name.endsWith('|app.default.svc.cluster.local'))!;
  assert.equal(st.endpoints.find((e) => e.port === s.ups.down!.port)!.health, 'EJECTED');
  assert.ok(s.ups.up!.seen.length >= 10);
});

async function waitFor(cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 2));
  }
}
