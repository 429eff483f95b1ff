/**
 * Optional active TCP health checking (gateway/health.ts) against real sockets: a port nobody
 * listens on is marked UNHEALTHY after the threshold and skipped; it is HEALTHY again once
 * something listens there.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { test } from 'node:test';
import type { Cluster, Endpoint } from '../../config/snapshot.ts';
import { Balancer } from '../../gateway/balancer.ts';
import { HealthChecker, tcpProbe } from '../../gateway/health.ts';
import { freePort } from '../helpers/net.ts';

async function listen(port = 0): Promise<Server> {
  const srv = createServer((s) => s.destroy());
  await new Promise<void>((r) => srv.listen(port, '127.0.0.1', r));
  return srv;
}

test('TCP health checks mark an unreachable endpoint down and bring it back', async (t) => {
  const up = await listen();
  t.after(() => up.close());
  const upPort = (up.address() as { port: number }).port;
  const downPort = await freePort();
  const eps: Endpoint[] = [upPort, downPort].map((port) => Object.freeze({ address: '127.0.0.1', port, labels: {}, weight: 1 }));
  const od = { consecutive5xxErrors: 5, intervalMs: 10_000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 10, minHealthPercent: 0 };
  const c: Cluster = Object.freeze({ name: 'outbound|80||svc', host: 'svc', port: 80, resolution: 'STATIC', protocol: 'HTTP', endpoints: eps, trafficPolicy: { outlierDetection: od }, meshExternal: false });
  const plain: Cluster = { ...c, name: 'outbound|80||plain', trafficPolicy: {} };
  const b = new Balancer({ timers: false });
  const hc = new HealthChecker(b, () => [c, plain], { timeoutMs: 500, unhealthyThreshold: 2 });
  t.after(() => hc.stop());
  const health = (name: string, port: number) => b.stats().find((s) => s.name === name)?.endpoints.find((e) => e.port === port)?.health;

  assert.equal(await tcpProbe('127.0.0.1', upPort, 500), true);
  assert.equal(await tcpProbe('127.0.0.1', downPort, 500), false);

  await hc.round();
  assert.equal(health(c.name, downPort), 'HEALTHY', 'one failure is below the threshold');
  await hc.round();
  assert.equal(health(c.name, downPort), 'UNHEALTHY');
  assert.equal(health(c.name, upPort), 'HEALTHY');
  for (let i = 0; i < 10; i++) assert.equal(b.pick(c)!.endpoint.port, upPort);
  assert.equal(health(plain.name, downPort), undefined, 'clusters without outlierDetection are not checked');

  const revived = await listen(downPort);
  t.after(() => revived.close());
  await hc.round();
  assert.equal(health(c.name, downPort), 'HEALTHY');
  assert.equal(new Set(Array.from({ length: 10 }, () => b.pick(c)!.endpoint.port)).size, 2);
});
