/**
 * Load-balancing policies of gateway/balancer.ts with an injected random source: round robin
 * (plain and weighted), RANDOM, LEAST_REQUEST, consistent hash (header, cookie, source IP, query
 * parameter), retries avoiding tried hosts, and state that survives a config swap.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Cluster, Endpoint, TrafficPolicy } from '../../config/snapshot.ts';
import { Balancer, buildRing, cookieValue, hashCookie, queryValue, type PickRequest } from '../../gateway/balancer.ts';

/** Deterministic uniform [0,1) (mulberry32). */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function ep(port: number, weight = 1): Endpoint {
  return Object.freeze({ address: '127.0.0.1', port, labels: {}, weight });
}

function cluster(endpoints: Endpoint[], trafficPolicy: TrafficPolicy = {}, name = 'outbound|80||svc'): Cluster {
  return Object.freeze({ name, host: 'svc', port: 80, resolution: 'STATIC', protocol: 'HTTP', endpoints: Object.freeze(endpoints), trafficPolicy, meshExternal: false });
}

function req(headers: Record<string, string> = {}, sourceIp = '10.0.0.1', query = ''): PickRequest {
  return { headers, sourceIp, query };
}

function counts(b: Balancer, c: Cluster, n: number, r?: () => PickRequest): Map<number, number> {
  const m = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const p = b.pick(c, undefined, r?.())!;
    m.set(p.endpoint.port, (m.get(p.endpoint.port) ?? 0) + 1);
  }
  return m;
}

test('round robin cycles through every endpoint in turn', () => {
  const b = new Balancer({ timers: false });
  const c = cluster([ep(1), ep(2), ep(3)]);
  const seq = Array.from({ length: 6 }, () => b.pick(c)!.endpoint.port);
  assert.deepEqual(seq, [1, 2, 3, 1, 2, 3]);
});

test('round robin honours endpoint weights (Envoy weighted round robin)', () => {
  const b = new Balancer({ timers: false });
  const c = cluster([ep(1, 1), ep(2, 3)]);
  const m = counts(b, c, 400);
  assert.equal(m.get(1), 100);
  assert.equal(m.get(2), 300);
  // Smooth: the light endpoint is never starved for long.
  const seq = Array.from({ length: 8 }, () => b.pick(c)!.endpoint.port);
  assert.ok(seq.includes(1) && seq.filter((p) => p === 1).length === 2, `sequence ${seq}`);
});

test('RANDOM spreads picks roughly evenly', () => {
  const b = new Balancer({ timers: false, random: seeded(7) });
  const c = cluster([ep(1), ep(2), ep(3), ep(4)], { loadBalancer: { simple: 'RANDOM' } });
  const m = counts(b, c, 4000);
  for (const p of [1, 2, 3, 4]) assert.ok(m.get(p)! > 800 && m.get(p)! < 1200, `port ${p}: ${m.get(p)}`);
  // Not round robin: the sequence is not the fixed rotation.
  const seq = Array.from({ length: 12 }, () => b.pick(c)!.endpoint.port);
  assert.notDeepEqual(seq, [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4]);
});

test('LEAST_REQUEST (power of two choices) steers away from busy endpoints', () => {
  const b = new Balancer({ timers: false, random: seeded(3) });
  const eps = [ep(1), ep(2), ep(3)];
  const c = cluster(eps, { loadBalancer: { simple: 'LEAST_REQUEST' } });
  // Port 1 has 5 attempts in flight, port 2 has 1, port 3 is idle.
  const ends = [...Array(5)].map(() => b.start(c, eps[0]!));
  const end2 = b.start(c, eps[1]!);
  const m = counts(b, c, 600);
  assert.equal(m.get(1) ?? 0, 0, 'the busiest endpoint loses every comparison');
  assert.ok(m.get(3)! > m.get(2)!, `idle ${m.get(3)} vs one in flight ${m.get(2)}`);
  for (const end of ends) end({ kind: 'response', status: 200 });
  end2({ kind: 'response', status: 200 });
  const after = counts(b, c, 600);
  assert.ok(after.get(1)! > 100, `once idle again port 1 gets traffic: ${after.get(1)}`);
});

test('the end callback is idempotent and in-flight counts return to zero', () => {
  const b = new Balancer({ timers: false });
  const e = ep(1);
  const c = cluster([e]);
  const end = b.start(c, e);
  assert.equal(b.stats()[0]!.endpoints[0]!.active, 1);
  end({ kind: 'response', status: 200 });
  end({ kind: 'response', status: 200 });
  assert.equal(b.stats()[0]!.endpoints[0]!.active, 0);
});

test('retries prefer endpoints not yet tried, then fall back to tried ones', () => {
  const b = new Balancer({ timers: false, random: seeded(1) });
  for (const loadBalancer of [undefined, { simple: 'RANDOM' as const }, { simple: 'LEAST_REQUEST' as const }, { consistentHash: { httpHeaderName: 'x-user' } }]) {
    const eps = [ep(1), ep(2), ep(3)];
    const c = cluster(eps, loadBalancer ? { loadBalancer } : {}, `c-${JSON.stringify(loadBalancer)}`);
    for (let i = 0; i < 50; i++) {
      const tried = new Set<Endpoint>([eps[0]!, eps[2]!]);
      assert.equal(b.pick(c, tried, req({ 'x-user': `u${i}` }))!.endpoint.port, 2, JSON.stringify(loadBalancer));
    }
    assert.ok(b.pick(c, new Set(eps), req()), 'all tried: still picks one');
  }
});

test('no endpoints: undefined; a DNS cluster without endpoints uses its host', () => {
  const b = new Balancer({ timers: false });
  assert.equal(b.pick(cluster([])), undefined);
  const dns: Cluster = { ...cluster([]), resolution: 'DNS', host: 'example.com', port: 8080 };
  assert.deepEqual(b.pick(dns)!.endpoint, { address: 'example.com', port: 8080, labels: {}, weight: 1 });
});

test('consistent hash on a header sticks to one endpoint per key and spreads keys', () => {
  const b = new Balancer({ timers: false });
  const c = cluster([ep(1), ep(2), ep(3)], { loadBalancer: { consistentHash: { httpHeaderName: 'x-user' } } });
  const owner = new Map<string, number>();
  for (let i = 0; i < 300; i++) {
    const k = `user-${i}`;
    const p = b.pick(c, undefined, req({ 'x-user': k }))!.endpoint.port;
    owner.set(k, p);
  }
  for (let round = 0; round < 3; round++) {
    for (const [k, p] of owner) assert.equal(b.pick(c, undefined, req({ 'x-user': k }))!.endpoint.port, p, k);
  }
  const per = new Map<number, number>();
  for (const p of owner.values()) per.set(p, (per.get(p) ?? 0) + 1);
  for (const p of [1, 2, 3]) assert.ok((per.get(p) ?? 0) > 50, `port ${p} owns ${per.get(p)} of 300 keys`);
});

test('consistent hash without the key falls back to a random endpoint', () => {
  const b = new Balancer({ timers: false, random: seeded(9) });
  const c = cluster([ep(1), ep(2), ep(3)], { loadBalancer: { consistentHash: { httpHeaderName: 'x-user' } } });
  const m = counts(b, c, 300, () => req());
  for (const p of [1, 2, 3]) assert.ok(m.get(p)! > 50, `port ${p}: ${m.get(p)}`);
  assert.equal(b.pick(c, undefined, req())!.setCookie, undefined);
});

test('consistent hash: adding an endpoint moves few keys, and only to the new endpoint', () => {
  const b = new Balancer({ timers: false });
  const policy: TrafficPolicy = { loadBalancer: { consistentHash: { httpHeaderName: 'x-user' } } };
  const before = cluster([ep(1), ep(2), ep(3), ep(4)], policy);
  const after = cluster([ep(1), ep(2), ep(3), ep(4), ep(5)], policy);
  let moved = 0;
  let movedElsewhere = 0;
  const N = 2000;
  for (let i = 0; i < N; i++) {
    const r = req({ 'x-user': `k${i}` });
    const a = b.pick(before, undefined, r)!.endpoint.port;
    const z = b.pick(after, undefined, r)!.endpoint.port;
    if (a !== z) {
      moved++;
      if (z !== 5) movedElsewhere++;
    }
  }
  // Ideal is 1/5 = 20% of the keys, all of them to the new endpoint.
  assert.ok(moved / N < 0.3, `moved ${moved} of ${N}`);
  assert.ok(moved / N > 0.1, `the new endpoint gets keys: ${moved}`);
  assert.equal(movedElsewhere, 0, 'no key moves between endpoints that were already there');
});

test('consistent hash on a cookie: present cookie sticks; absent + ttl generates one like Envoy', () => {
  const b = new Balancer({ timers: false });
  const c = cluster([ep(1), ep(2), ep(3)], { loadBalancer: { consistentHash: { httpCookie: { name: 'sticky', path: '/app', ttlMs: 60_000 } } } });
  const first = b.pick(c, undefined, req())!;
  assert.match(first.setCookie!, /^sticky="([0-9a-f]{16})"; Max-Age=60; Path=\/app; HttpOnly$/);
  const value = /"([0-9a-f]+)"/.exec(first.setCookie!)![1]!;
  for (let i = 0; i < 20; i++) {
    const p = b.pick(c, undefined, req({ cookie: `other=1; sticky=${value}` }))!;
    assert.equal(p.endpoint.port, first.endpoint.port);
    assert.equal(p.setCookie, undefined, 'no new cookie once the client has one');
  }
  // Quoted form as Envoy sets it is read back the same.
  assert.equal(b.pick(c, undefined, req({ cookie: `sticky="${value}"` }))!.endpoint.port, first.endpoint.port);
  // Without ttl Envoy does not generate a cookie: random fallback, no Set-Cookie.
  const noTtl = cluster([ep(1), ep(2)], { loadBalancer: { consistentHash: { httpCookie: { name: 'sticky' } } } }, 'c2');
  assert.equal(b.pick(noTtl, undefined, req())!.setCookie, undefined);
  // Zero ttl: a session cookie (no Max-Age).
  const session = cluster([ep(1), ep(2)], { loadBalancer: { consistentHash: { httpCookie: { name: 's', ttlMs: 0 } } } }, 'c3');
  assert.match(b.pick(session, undefined, req())!.setCookie!, /^s="[0-9a-f]{16}"; HttpOnly$/);
});

test('consistent hash on source IP and on a query parameter', () => {
  const b = new Balancer({ timers: false });
  const byIp = cluster([ep(1), ep(2), ep(3)], { loadBalancer: { consistentHash: { useSourceIp: true } } }, 'ip');
  const byQ = cluster([ep(1), ep(2), ep(3)], { loadBalancer: { consistentHash: { httpQueryParameterName: 'uid' } } }, 'q');
  const ipOwners = new Set<number>();
  const qOwners = new Set<number>();
  for (let i = 0; i < 40; i++) {
    const ip = `10.1.0.${i}`;
    const p = b.pick(byIp, undefined, req({}, ip))!.endpoint.port;
    assert.equal(b.pick(byIp, undefined, req({}, ip))!.endpoint.port, p);
    ipOwners.add(p);
    const q = b.pick(byQ, undefined, req({}, '1.1.1.1', `a=1&uid=${i}&b=2`))!.endpoint.port;
    assert.equal(b.pick(byQ, undefined, req({}, '9.9.9.9', `uid=${i}`))!.endpoint.port, q, 'same parameter value, same endpoint');
    qOwners.add(q);
  }
  assert.equal(ipOwners.size, 3);
  assert.equal(qOwners.size, 3);
});

test('ring size follows weights and minimumRingSize', () => {
  const ring = buildRing(['a:1', 'b:1'], [1, 3], 1024);
  let a = 0;
  for (const o of ring.owners) if (o === 0) a++;
  assert.ok(a >= 1024 / 4 && a / ring.owners.length > 0.24 && a / ring.owners.length < 0.26, `${a} of ${ring.owners.length}`);
  for (let i = 1; i < ring.hashes.length; i++) assert.ok(ring.hashes[i - 1]! <= ring.hashes[i]!, 'sorted');
  assert.ok(buildRing(['a:1', 'b:1'], [1, 1], 8).owners.length >= 8);
  assert.equal(buildRing([], [], 1024).owners.length, 0);
});

test('cookie, query and Set-Cookie helpers', () => {
  assert.equal(cookieValue('a=1; sticky=xyz; b=2', 'sticky'), 'xyz');
  assert.equal(cookieValue('notsticky=1; sticky=2', 'sticky'), '2');
  assert.equal(cookieValue('xsticky=1', 'sticky'), undefined);
  assert.equal(cookieValue(['a=1', 'sticky="q"'], 'sticky'), 'q');
  assert.equal(cookieValue(undefined, 'sticky'), undefined);
  assert.equal(queryValue('a=1&uid=7&b', 'uid'), '7');
  assert.equal(queryValue('xuid=1&uid=2', 'uid'), '2');
  assert.equal(queryValue('uidx=1', 'uid'), undefined);
  assert.equal(queryValue('uid&x=1', 'uid'), '');
  assert.equal(hashCookie('n', 'v', 3_600_000, undefined), 'n="v"; Max-Age=3600; HttpOnly');
});

test('state is keyed by cluster name and address:port, so a config swap keeps it', () => {
  const b = new Balancer({ timers: false });
  const c1 = cluster([ep(1), ep(2), ep(3)]);
  assert.equal(b.pick(c1)!.endpoint.port, 1);
  const end = b.start(c1, c1.endpoints[1]!);
  // New snapshot: same cluster name, new objects, one endpoint removed, one added.
  const c2 = cluster([ep(2), ep(3), ep(4)]);
  assert.equal(b.pick(c2)!.endpoint.port, 3, 'the rotation continues (cursor 1 of the new list)');
  const st = b.stats()[0]!;
  assert.deepEqual(st.endpoints.map((e) => e.port).sort(), [2, 3, 4], 'the removed endpoint is dropped');
  assert.equal(st.endpoints.find((e) => e.port === 2)!.active, 1, 'in-flight count carried over');
  end({ kind: 'response', status: 200 });
  assert.equal(b.stats()[0]!.endpoints.find((e) => e.port === 2)!.active, 0);
});
