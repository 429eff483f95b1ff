/**
 * Outlier detection (gateway/outlier.ts through the Balancer) with an injected clock and manual
 * sweeps: consecutive 5xx / gateway errors, local-origin failures, ejection time growth and
 * return, maxEjectionPercent, panic (minHealthPercent), no healthy upstream, hook and stats.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Cluster, Endpoint, OutlierDetection, TrafficPolicy } from '../../config/snapshot.ts';
import { Balancer, type EjectionEvent, type Outcome } from '../../gateway/balancer.ts';

function ep(port: number): Endpoint {
  return Object.freeze({ address: '127.0.0.1', port, labels: {}, weight: 1 });
}

function cluster(endpoints: Endpoint[], od: Partial<OutlierDetection> | undefined, extra: TrafficPolicy = {}): Cluster {
  const outlierDetection = od ? { consecutive5xxErrors: 5, intervalMs: 10_000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 100, minHealthPercent: 0, ...od } : undefined;
  return Object.freeze({ name: 'outbound|80||svc', host: 'svc', port: 80, resolution: 'STATIC', protocol: 'HTTP', endpoints: Object.freeze(endpoints), trafficPolicy: { ...extra, outlierDetection }, meshExternal: false });
}

function setup(od: Partial<OutlierDetection> | undefined, n = 3) {
  let now = 1_000_000;
  const events: EjectionEvent[] = [];
  const b = new Balancer({ timers: false, now: () => now, onEjection: (e) => events.push(e) });
  const eps = Array.from({ length: n }, (_, i) => ep(i + 1));
  const c = cluster(eps, od);
  const hit = (i: number, o: Outcome, times = 1): void => {
    for (let k = 0; k < times; k++) b.start(c, eps[i]!)(o);
  };
  const ports = (k = 30): Set<number> => new Set(Array.from({ length: k }, () => b.pick(c)?.endpoint.port ?? 0));
  const health = (port: number) => b.stats()[0]!.endpoints.find((e) => e.port === port)!.health;
  return { b, c, eps, hit, ports, health, events, advance: (ms: number) => (now += ms) };
}

const s500: Outcome = { kind: 'response', status: 500 };
const s503: Outcome = { kind: 'response', status: 503 };
const ok: Outcome = { kind: 'response', status: 200 };

test('consecutive5xxErrors ejects the host; pick() skips it; it returns after baseEjectionTime', () => {
  const s = setup({ consecutive5xxErrors: 3, baseEjectionTimeMs: 1000 });
  s.hit(0, s500, 2);
  assert.equal(s.health(1), 'HEALTHY', 'two errors are not enough');
  s.hit(0, s500);
  assert.equal(s.health(1), 'EJECTED');
  assert.deepEqual(s.ports(), new Set([2, 3]));
  s.advance(999);
  s.b.sweep();
  assert.equal(s.health(1), 'EJECTED', 'still within baseEjectionTime');
  s.advance(1);
  s.b.sweep();
  assert.equal(s.health(1), 'HEALTHY');
  assert.deepEqual(s.ports(), new Set([1, 2, 3]));
  assert.deepEqual(
    s.events.map((e) => [e.action, e.port, e.reason]),
    [
      ['eject', 1, 'consecutive-5xx'],
      ['uneject', 1, 'consecutive-5xx'],
    ],
  );
  assert.equal(s.events[0]!.durationMs, 1000);
});

test('a success resets the consecutive count; 4xx is a success', () => {
  const s = setup({ consecutive5xxErrors: 3 });
  s.hit(0, s500, 2);
  s.hit(0, ok);
  s.hit(0, s500, 2);
  s.hit(0, { kind: 'response', status: 404 });
  s.hit(0, s500, 2);
  assert.equal(s.health(1), 'HEALTHY');
  s.hit(0, s500);
  assert.equal(s.health(1), 'EJECTED');
});

test('local-origin failures count as 5xx; client cancellations do not', () => {
  const s = setup({ consecutive5xxErrors: 3 });
  s.hit(0, { kind: 'cancelled' }, 10);
  assert.equal(s.health(1), 'HEALTHY');
  s.hit(0, { kind: 'connect-failure' });
  s.hit(0, { kind: 'reset' });
  s.hit(0, { kind: 'timeout' });
  assert.equal(s.health(1), 'EJECTED');
});

test('consecutiveGatewayErrors counts 502/503/504 and local failures; a plain 500 resets it', () => {
  const s = setup({ consecutive5xxErrors: 0, consecutiveGatewayErrors: 2 });
  s.hit(0, s503);
  s.hit(0, s500);
  s.hit(0, s503);
  s.hit(0, s500, 10);
  assert.equal(s.health(1), 'HEALTHY', '500s never eject when consecutive5xxErrors is 0');
  s.hit(0, s503);
  s.hit(0, { kind: 'connect-failure' });
  assert.equal(s.health(1), 'EJECTED');
  assert.equal(s.events[0]!.reason, 'consecutive-gateway-errors');
});

test('each ejection lasts baseEjectionTime x times ejected; healthy sweeps lower the multiplier', () => {
  const s = setup({ consecutive5xxErrors: 1, baseEjectionTimeMs: 1000 });
  s.hit(0, s500);
  s.advance(1000);
  s.b.sweep();
  assert.equal(s.health(1), 'HEALTHY');
  s.hit(0, s500);
  assert.equal(s.events.at(-1)!.durationMs, 2000, 'second ejection: 2 x base');
  s.advance(1500);
  s.b.sweep();
  assert.equal(s.health(1), 'EJECTED');
  s.advance(500);
  s.b.sweep();
  assert.equal(s.health(1), 'HEALTHY');
  s.b.sweep(); // healthy for a sweep: multiplier 2 -> 1
  s.hit(0, s500);
  assert.equal(s.events.at(-1)!.durationMs, 2000, 'multiplier back to 1, this ejection makes 2');
  assert.equal(s.b.stats()[0]!.endpoints[0]!.ejections, 3);
});

test('maxEjectionPercent caps ejections, but one host can always be ejected', () => {
  const s = setup({ consecutive5xxErrors: 1, maxEjectionPercent: 10 }, 4);
  s.hit(0, s500);
  s.hit(1, s500);
  s.hit(2, s500);
  assert.deepEqual([1, 2, 3, 4].map((p) => s.health(p)), ['EJECTED', 'HEALTHY', 'HEALTHY', 'HEALTHY']);
  assert.equal(s.b.stats()[0]!.ejectionsOverflow, 2);

  const h = setup({ consecutive5xxErrors: 1, maxEjectionPercent: 50 }, 4);
  for (let i = 0; i < 4; i++) h.hit(i, s500);
  assert.deepEqual([1, 2, 3, 4].map((p) => h.health(p)), ['EJECTED', 'EJECTED', 'HEALTHY', 'HEALTHY']);

  const z = setup({ consecutive5xxErrors: 1, maxEjectionPercent: 0 }, 2);
  z.hit(0, s500);
  assert.equal(z.health(1), 'HEALTHY', 'maxEjectionPercent 0 disables ejection');
});

test('all hosts ejected and no panic threshold: no healthy upstream', () => {
  const s = setup({ consecutive5xxErrors: 1 }, 2);
  s.hit(0, s500);
  s.hit(1, s500);
  assert.equal(s.b.pick(s.c), undefined);
});

test('minHealthPercent: below it the cluster panics and uses every host', () => {
  const s = setup({ consecutive5xxErrors: 1, minHealthPercent: 50 }, 4);
  s.hit(0, s500);
  assert.deepEqual(s.ports(), new Set([2, 3, 4]), '75% healthy: ejection honoured');
  s.hit(1, s500);
  assert.deepEqual(s.ports(), new Set([3, 4]), '50% healthy is not below 50%');
  s.hit(2, s500);
  assert.equal(s.b.stats()[0]!.panic, true);
  assert.deepEqual(s.ports(), new Set([1, 2, 3, 4]), '25% healthy: panic, all hosts used');
});

test('without outlierDetection nothing is ejected, and removing it returns ejected hosts', () => {
  const s = setup(undefined);
  s.hit(0, s500, 50);
  assert.equal(s.health(1), 'HEALTHY');

  const t = setup({ consecutive5xxErrors: 1 });
  t.hit(0, s500);
  assert.equal(t.health(1), 'EJECTED');
  const swapped = cluster(t.eps, undefined);
  assert.equal(t.b.pick(swapped)!.endpoint.port !== undefined, true);
  assert.equal(t.health(1), 'HEALTHY');
});

test('ejection state survives a config swap that keeps the endpoint', () => {
  const s = setup({ consecutive5xxErrors: 1 });
  s.hit(0, s500);
  const next = cluster([ep(1), ep(2), ep(3), ep(4)], { consecutive5xxErrors: 1 });
  const seen = new Set(Array.from({ length: 20 }, () => s.b.pick(next)!.endpoint.port));
  assert.deepEqual(seen, new Set([2, 3, 4]));
});

test('the interval timer returns ejected hosts on its own', async () => {
  const b = new Balancer();
  const eps = [ep(1), ep(2)];
  const c = cluster(eps, { consecutive5xxErrors: 1, intervalMs: 5, baseEjectionTimeMs: 10 });
  b.start(c, eps[0]!)(s500);
  assert.equal(b.stats()[0]!.endpoints[0]!.health, 'EJECTED');
  const deadline = Date.now() + 2000;
  while (b.stats()[0]!.endpoints[0]!.health === 'EJECTED' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert.equal(b.stats()[0]!.endpoints[0]!.health, 'HEALTHY');
  b.close();
});

test('setHealth marks endpoints down and up (active health checks)', () => {
  const s = setup({ consecutive5xxErrors: 5 });
  s.b.setHealth(s.c, s.eps[1]!, false);
  assert.equal(s.health(2), 'UNHEALTHY');
  assert.deepEqual(s.ports(), new Set([1, 3]));
  s.b.setHealth(s.c, s.eps[1]!, true);
  assert.deepEqual(s.ports(), new Set([1, 2, 3]));
});
