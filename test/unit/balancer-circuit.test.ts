/**
 * Circuit breaking through Balancer.admit(): Envoy's max_connections / max_pending_requests /
 * max_requests per cluster, from DestinationRule connectionPool.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Cluster, ConnectionPool } from '../../config/snapshot.ts';
import { Balancer } from '../../gateway/balancer.ts';
import { circuitLimits } from '../../gateway/circuit.ts';

function cluster(connectionPool: ConnectionPool | undefined, name = 'outbound|80||svc'): Cluster {
  return Object.freeze({
    name,
    host: 'svc',
    port: 80,
    resolution: 'STATIC',
    protocol: 'HTTP',
    endpoints: [{ address: '127.0.0.1', port: 1, labels: {}, weight: 1 }],
    trafficPolicy: connectionPool ? { connectionPool } : {},
    meshExternal: false,
  });
}

/** Admits until refused; returns the release functions of the admitted ones. */
function fill(b: Balancer, c: Cluster, max = 1000): (() => void)[] {
  const out: (() => void)[] = [];
  for (let i = 0; i < max; i++) {
    const r = b.admit(c);
    if (!r) break;
    out.push(r);
  }
  return out;
}

test('no connectionPool: unlimited', () => {
  const b = new Balancer({ timers: false });
  assert.equal(fill(b, cluster(undefined), 500).length, 500);
});

test('maxConnections + http1MaxPendingRequests: connections busy plus the pending queue', () => {
  const b = new Balancer({ timers: false });
  const c = cluster({ tcp: { maxConnections: 1 }, http: { http1MaxPendingRequests: 1 } });
  const admitted = fill(b, c);
  assert.equal(admitted.length, 2, 'one on the connection, one pending');
  const st = b.stats()[0]!;
  assert.equal(st.active, 2);
  assert.equal(st.pending, 1);
  assert.equal(st.overflows, 1);
  assert.deepEqual(st.limits, { maxConnections: 1, maxPendingRequests: 1, maxRequests: null });
  admitted[0]!();
  admitted[0]!(); // idempotent
  assert.equal(b.stats()[0]!.active, 1);
  assert.ok(b.admit(c), 'room again after a release');
  assert.equal(b.admit(c), undefined);
});

test('http1MaxPendingRequests 0 with maxConnections 3: exactly 3 in flight', () => {
  const b = new Balancer({ timers: false });
  assert.equal(fill(b, cluster({ tcp: { maxConnections: 3 }, http: { http1MaxPendingRequests: 0 } })).length, 3);
});

test('http2MaxRequests caps requests in flight whatever the connections', () => {
  const b = new Balancer({ timers: false });
  assert.equal(fill(b, cluster({ http: { http2MaxRequests: 4 } })).length, 4);
  assert.equal(fill(b, cluster({ tcp: { maxConnections: 10 }, http: { http2MaxRequests: 2, http1MaxPendingRequests: 100 } }, 'b')).length, 2);
});

test('pending limit without maxConnections never binds (connections are unlimited)', () => {
  const b = new Balancer({ timers: false });
  assert.equal(fill(b, cluster({ http: { http1MaxPendingRequests: 1 } }), 50).length, 50);
});

test('counters are per cluster name and survive a config swap', () => {
  const b = new Balancer({ timers: false });
  const pool = { tcp: { maxConnections: 2 }, http: { http1MaxPendingRequests: 0 } };
  assert.equal(fill(b, cluster(pool)).length, 2);
  assert.equal(b.admit(cluster(pool)), undefined, 'a new Cluster object with the same name shares the count');
  assert.ok(b.admit(cluster(pool, 'other')), 'another cluster has its own');
});

test('circuitLimits maps Istio fields to Envoy thresholds', () => {
  assert.deepEqual(circuitLimits(undefined), { maxConnections: Infinity, maxPendingRequests: Infinity, maxRequests: Infinity });
  assert.deepEqual(circuitLimits({ tcp: { maxConnections: 5 }, http: { http1MaxPendingRequests: 7, http2MaxRequests: 9 } }), { maxConnections: 5, maxPendingRequests: 7, maxRequests: 9 });
});
