/**
 * The client's ordering guarantees and the protocol pieces, against a scripted SSE peer (a real
 * HTTP server on port 0 that sends exactly the events a test wants, including misbehaviour a
 * real control plane should never produce: replays, older revisions, stale epochs, garbage).
 */
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import { test, type TestContext } from 'node:test';
import fc from 'fast-check';
import { buildSnapshotFromText } from '../../config/index.ts';
import type { Snapshot } from '../../config/snapshot.ts';
import { bearerToken, tokenMatches } from '../../controlplane/auth.ts';
import { subscribeSnapshots } from '../../controlplane/client.ts';
import { isNewer, SseParser, sseEvent, workloadKey, type Position, type SnapshotMessage } from '../../controlplane/protocol.ts';
import { backoffMs } from '../../controlplane/subscribe.ts';

async function snapshotOf(marker: string): Promise<Snapshot> {
  const r = await buildSnapshotFromText(
    `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ${marker}, namespace: default}
spec: {address: 127.0.0.1}
`,
  );
  assert.ok(r.ok);
  return r.snapshot;
}

function msg(pos: Position, snapshot: Snapshot): string {
  const m: SnapshotMessage = { ...pos, version: snapshot.version, snapshot };
  return sseEvent('snapshot', JSON.stringify(m), `${pos.epoch}:${pos.revision}`);
}

/** A peer that plays `script(res, connectionIndex)` to every stream request. */
async function scriptedPeer(t: TestContext, script: (res: ServerResponse, n: number, url: URL) => void): Promise<{ url: string; requests: URL[] }> {
  const requests: URL[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push(url);
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(sseEvent('hello', JSON.stringify({ epoch: 'e', startedAt: 1, revision: 0, heartbeatMs: 60_000 })));
    script(res, requests.length - 1, url);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  }));
  const addr = server.address();
  return { url: `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`, requests };
}

test('never applies an older or repeated position, across epochs; reconnects with what it has', async (t) => {
  const [a, b, c, d] = await Promise.all(['a', 'b', 'c', 'd'].map(snapshotOf));
  const e1 = { epoch: 'epoch-1', startedAt: 1_000 };
  const e2 = { epoch: 'epoch-2', startedAt: 2_000 };
  const peer = await scriptedPeer(t, (res, n) => {
    if (n === 0) {
      res.write(msg({ ...e1, revision: 2 }, a!));
      res.write(msg({ ...e1, revision: 1 }, b!)); // older revision: ignored
      res.write(msg({ ...e1, revision: 2 }, b!)); // replay of 2: ignored
      res.write(msg({ ...e2, revision: 1 }, c!)); // new epoch restarts at 1: applied
      res.write(msg({ ...e1, revision: 9 }, d!)); // older epoch, higher revision: ignored
      res.end(); // drop the connection: the client must come back
    } else {
      res.write(msg({ ...e2, revision: 1 }, c!)); // what it has: ignored
      res.write(msg({ ...e2, revision: 2 }, d!));
    }
  });
  const applied: [number, string][] = [];
  const errors: string[] = [];
  const sub = subscribeSnapshots({
    url: peer.url,
    node: 'n1',
    minBackoffMs: 10,
    maxBackoffMs: 20,
    onSnapshot: async (s, rev) => {
      await new Promise((r) => setTimeout(r, 5)); // slow applies must not overlap or reorder
      applied.push([rev, s.workloads[0]!.name]);
    },
    onError: (e) => void errors.push((e as { code?: string }).code ?? e.message),
  });
  t.after(() => sub.close());
  const deadline = Date.now() + 5_000;
  while (applied.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(applied, [[2, 'a'], [1, 'c'], [2, 'd']]);
  assert.ok(errors.includes('PORTICO_ERR_CP_STALE_EPOCH'), errors.join());
  assert.equal(peer.requests[1]!.searchParams.get('have'), '1');
  assert.equal(peer.requests[1]!.searchParams.get('epoch'), 'epoch-2');
  assert.equal(peer.requests[0]!.searchParams.get('node'), 'n1');
  assert.ok(Object.isFrozen(sub.current().snapshot), 'delivered snapshots are deep-frozen');
});

test('a stream that goes silent is dropped and reconnected; garbage is a protocol error, not a crash', async (t) => {
  const s = await snapshotOf('a');
  const peer = await scriptedPeer(t, (res, n) => {
    if (n === 0) return; // hello, then silence
    if (n === 1) {
      res.write('event: snapshot\ndata: {not json\n\n');
      return;
    }
    res.write(msg({ epoch: 'e', startedAt: 1, revision: 1 }, s));
  });
  const errors: string[] = [];
  const applied: number[] = [];
  const sub = subscribeSnapshots({
    url: peer.url,
    idleTimeoutMs: 150,
    minBackoffMs: 10,
    maxBackoffMs: 20,
    onSnapshot: (_s, rev) => void applied.push(rev),
    onError: (e) => void errors.push(e.message),
  });
  t.after(() => sub.close());
  const deadline = Date.now() + 5_000;
  while (applied.length < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(applied, [1]);
  assert.ok(errors.some((e) => /no data from the control plane for 150 ms/.test(e)), errors.join('\n'));
  assert.ok(errors.some((e) => /not JSON/.test(e)), errors.join('\n'));
});

test('isNewer orders by epoch start, then epoch id, then revision', () => {
  assert.equal(isNewer({ epoch: 'a', startedAt: 1, revision: 1 }, undefined), true);
  assert.equal(isNewer({ epoch: 'a', startedAt: 1, revision: 2 }, { epoch: 'a', startedAt: 1, revision: 1 }), true);
  assert.equal(isNewer({ epoch: 'a', startedAt: 1, revision: 1 }, { epoch: 'a', startedAt: 1, revision: 1 }), false);
  assert.equal(isNewer({ epoch: 'b', startedAt: 2, revision: 1 }, { epoch: 'a', startedAt: 1, revision: 50 }), true);
  assert.equal(isNewer({ epoch: 'a', startedAt: 1, revision: 50 }, { epoch: 'b', startedAt: 2, revision: 1 }), false);
  // a strict total order: exactly one of a<b, b<a, a=b
  const pos = fc.record({ epoch: fc.constantFrom('x', 'y'), startedAt: fc.integer({ min: 0, max: 3 }), revision: fc.integer({ min: 0, max: 3 }) });
  fc.assert(
    fc.property(pos, pos, (p, q) => {
      const same = p.epoch === q.epoch && p.startedAt === q.startedAt && p.revision === q.revision;
      return Number(isNewer(p, q)) + Number(isNewer(q, p)) + Number(same) === 1;
    }),
  );
});

test('SseParser gives the same events however the bytes are split', () => {
  const text = `${sseEvent('hello', '{"a":1}')}: comment\n\n${sseEvent('snapshot', '{"b":"x:y"}', 'e:1')}event: heartbeat\r\ndata: {}\r\n\r\n`;
  const whole = new SseParser().push(text);
  assert.deepEqual(whole, [
    { event: 'hello', data: '{"a":1}' },
    { event: 'snapshot', data: '{"b":"x:y"}', id: 'e:1' },
    { event: 'heartbeat', data: '{}' },
  ]);
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: text.length }), { maxLength: 8 }), (cuts) => {
      const points = [...new Set(cuts)].sort((x, y) => x - y);
      const p = new SseParser();
      const got = [];
      let last = 0;
      for (const at of [...points, text.length]) {
        got.push(...p.push(text.slice(last, at)));
        last = at;
      }
      assert.deepEqual(got, whole);
    }),
  );
});

test('bearer tokens: scheme case-insensitive, compared exactly', () => {
  assert.equal(bearerToken('Bearer abc'), 'abc');
  assert.equal(bearerToken('bearer abc'), 'abc');
  assert.equal(bearerToken('Basic abc'), undefined);
  assert.equal(bearerToken('Bearer a b'), undefined);
  assert.equal(bearerToken(undefined), undefined);
  assert.equal(tokenMatches('secret', 'secret'), true);
  assert.equal(tokenMatches('secret2', 'secret'), false);
  assert.equal(tokenMatches('Secret', 'secret'), false);
  assert.equal(tokenMatches(undefined, 'secret'), false);
  assert.equal(tokenMatches('', ''), false, 'an absent token never matches');
});

test('workload names and backoff bounds', () => {
  assert.equal(workloadKey('bookinfo/reviews-v1'), 'bookinfo/reviews-v1');
  assert.equal(workloadKey('reviews-v1'), 'default/reviews-v1');
  for (const bad of ['', 'a/b/c', '../x', 'A/b', 'ns/', '/x', 'x y']) assert.equal(workloadKey(bad), undefined, bad);
  for (let attempt = 0; attempt < 40; attempt++) {
    const cap = Math.min(1000, 10 * 2 ** attempt);
    const d = backoffMs(attempt, 10, 1000);
    assert.ok(d >= cap / 2 && d <= cap, `${attempt}: ${d}`);
  }
});
