/**
 * The control plane's snapshot distribution against real servers on port 0: config changes reach
 * every subscribed client, reconnects catch up without duplicates, clients keep their snapshot
 * while the control plane is down and catch up with a restarted one, bad config changes are
 * refused and reported, and the bootstrap token is enforced.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { request } from 'undici';
import { createRootCa, type CaPair } from '../../certs/index.ts';
import type { Snapshot } from '../../config/snapshot.ts';
import { subscribeSnapshots, type Subscription } from '../../controlplane/client.ts';
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from '../../controlplane/server.ts';
import { SseParser, type SseEvent } from '../../controlplane/protocol.ts';

const TOKEN = 'test-bootstrap-token-0123456789abcdef';
let sharedCa: CaPair | undefined;
const ca = (): CaPair => (sharedCa ??= createRootCa({ commonName: 'Test Mesh CA', organization: 'Portico tests' }));

function configYaml(marker: string): string {
  return `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 18080, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: up, namespace: default}
spec:
  hosts: [up.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: 9}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: default}
spec:
  hosts: ["*"]
  gateways: [edge]
  http:
  - headers: {response: {set: {x-config: "${marker}"}}}
    route: [{destination: {host: up.default.svc.cluster.local}}]
`;
}

/** The `x-config` marker the snapshot's route sets: tells which config a client runs. */
function markerOf(s: Snapshot): string | undefined {
  const route = s.gateways[0]?.ports[0]?.virtualHosts[0]?.routes[0];
  return route?.headers?.response?.set.find(([k]) => k === 'x-config')?.[1];
}

function configDir(t: TestContext, marker: string): { dir: string; write(marker: string): void; writeRaw(text: string): void } {
  const dir = mkdtempSync(join(tmpdir(), 'portico-cp-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, configYaml(marker));
  return { dir, write: (m) => writeFileSync(file, configYaml(m)), writeRaw: (text) => writeFileSync(file, text) };
}

async function startCp(t: TestContext, dir: string, extra: Partial<ControlPlaneOptions> = {}): Promise<ControlPlane> {
  const cp = await startControlPlane({ config: [dir], port: 0, ca: ca(), token: TOKEN, host: '127.0.0.1', heartbeatMs: 200, debounceMs: 20, ...extra });
  t.after(() => cp.close());
  return cp;
}

interface Received {
  revision: number;
  epoch: string;
  marker: string | undefined;
  at: number;
}

function client(t: TestContext, url: string, node: string, extra: Partial<Parameters<typeof subscribeSnapshots>[0]> = {}): { sub: Subscription; got: Received[]; errors: Error[] } {
  const got: Received[] = [];
  const errors: Error[] = [];
  const sub = subscribeSnapshots({
    url,
    token: TOKEN,
    node,
    minBackoffMs: 50,
    maxBackoffMs: 200,
    onSnapshot: (s, revision, pos) => void got.push({ revision, epoch: pos.epoch, marker: markerOf(s), at: Date.now() }),
    onError: (e) => void errors.push(e),
    ...extra,
  });
  t.after(() => sub.close());
  return { sub, got, errors };
}

async function until(what: string, cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Opens a raw SSE stream and collects its events for `ms`. */
async function rawEvents(url: string, path: string, ms: number, headers: Record<string, string> = {}): Promise<SseEvent[]> {
  const ac = new AbortController();
  const res = await request(new URL(path, url), { headers: { authorization: `Bearer ${TOKEN}`, ...headers }, signal: ac.signal });
  assert.equal(res.statusCode, 200);
  const events: SseEvent[] = [];
  const parser = new SseParser();
  const timer = setTimeout(() => ac.abort(), ms);
  try {
    for await (const chunk of res.body) events.push(...parser.push(String(chunk)));
  } catch {
    // aborted on purpose
  } finally {
    clearTimeout(timer);
  }
  return events;
}

test('a config change reaches two subscribed clients with the next revision', async (t) => {
  const cfg = configDir(t, 'v1');
  const cp = await startCp(t, cfg.dir);
  const a = client(t, cp.url, 'gw-a');
  const b = client(t, cp.url, 'sidecar-b');
  await until('both clients have revision 1', () => a.got.length === 1 && b.got.length === 1);
  assert.deepEqual([a.got[0]!.revision, a.got[0]!.marker, b.got[0]!.marker], [1, 'v1', 'v1']);

  const changedAt = Date.now();
  cfg.write('v2');
  await until('both clients have revision 2', () => a.got.length === 2 && b.got.length === 2);
  for (const c of [a, b]) {
    assert.equal(c.got[1]!.revision, 2);
    assert.equal(c.got[1]!.marker, 'v2');
  }
  t.diagnostic(`config change → applied: ${Math.max(a.got[1]!.at, b.got[1]!.at) - changedAt} ms (debounce 20 ms)`);

  const status = (await (await request(new URL('/v1/status', cp.url), { headers: { authorization: `Bearer ${TOKEN}` } })).body.json()) as {
    revision: number;
    proxies: { node: string; revision: number }[];
  };
  assert.equal(status.revision, 2);
  assert.deepEqual(status.proxies.map((p) => [p.node, p.revision]).sort(), [['gw-a', 2], ['sidecar-b', 2]]);
});

test('a reconnecting client gets the current snapshot; one that has it gets no duplicate', async (t) => {
  const cfg = configDir(t, 'v1');
  const cp = await startCp(t, cfg.dir);
  const first = client(t, cp.url, 'first');
  await until('revision 1', () => first.got.length === 1);
  first.sub.close();
  cfg.write('v2');
  await until('the control plane at revision 2', () => cp.feed.latest?.revision === 2);

  // Reconnect with what it had (revision 1): gets revision 2 at once.
  const had = first.sub.current();
  assert.equal(had.position?.revision, 1);
  const again = client(t, cp.url, 'first', { initial: { ...had.position!, version: had.snapshot!.version, snapshot: had.snapshot! } });
  await until('revision 2 after reconnect', () => again.got.length === 1);
  assert.equal(again.got[0]!.revision, 2);
  assert.equal(again.got[0]!.marker, 'v2');

  // A client that already has revision 2 of this epoch: hello and heartbeats, no snapshot event.
  const path = `/v1/snapshots/stream?node=n&have=2&epoch=${cp.feed.epoch}`;
  const events = await rawEvents(cp.url, path, 700);
  assert.equal(events[0]?.event, 'hello');
  assert.ok(events.some((e) => e.event === 'heartbeat'), 'heartbeats arrive');
  assert.equal(events.filter((e) => e.event === 'snapshot').length, 0);
  // The same with the standard SSE reconnect header.
  const viaHeader = await rawEvents(cp.url, '/v1/snapshots/stream?node=n', 400, { 'last-event-id': `${cp.feed.epoch}:2` });
  assert.equal(viaHeader.filter((e) => e.event === 'snapshot').length, 0);
  // Without `have`, or with another epoch's revision 2, the snapshot is sent.
  const fresh = await rawEvents(cp.url, '/v1/snapshots/stream?node=n&have=2&epoch=other-epoch', 400);
  const snap = fresh.filter((e) => e.event === 'snapshot');
  assert.equal(snap.length, 1);
  assert.equal(snap[0]!.id, `${cp.feed.epoch}:2`);

  // And the subscribed client is not sent revision 2 again over a later change's stream.
  cfg.write('v3');
  await until('revision 3', () => again.got.length === 2);
  assert.deepEqual(again.got.map((g) => g.revision), [2, 3]);
});

test('control plane down: clients keep their snapshot, then catch up with a restarted control plane on the same port', async (t) => {
  const cfg = configDir(t, 'v1');
  const cp = await startCp(t, cfg.dir);
  const a = client(t, cp.url, 'a');
  const b = client(t, cp.url, 'b');
  await until('revision 1', () => a.got.length === 1 && b.got.length === 1);
  const oldEpoch = cp.feed.epoch;

  await cp.close();
  cfg.write('v2');
  await until('clients notice the control plane is gone', () => a.errors.length > 0 && b.errors.length > 0);
  await sleep(300);
  assert.equal(a.got.length, 1, 'nothing applied while the control plane is down');
  assert.equal(markerOf(a.sub.current().snapshot!), 'v1', 'the last snapshot is kept');
  assert.equal(a.sub.connected(), false);

  // The new process starts at revision 1 again, in a newer epoch: that must count as newer.
  const restarted = await startCp(t, cfg.dir, { port: cp.port });
  assert.notEqual(restarted.feed.epoch, oldEpoch);
  assert.equal(restarted.feed.latest?.revision, 1);
  await until('both clients caught up', () => a.got.length === 2 && b.got.length === 2);
  for (const c of [a, b]) {
    assert.deepEqual([c.got[1]!.epoch, c.got[1]!.revision, c.got[1]!.marker], [restarted.feed.epoch, 1, 'v2']);
  }
});

test('a restarted control plane with the same config: the new position is adopted without re-applying', async (t) => {
  const cfg = configDir(t, 'same');
  const cp = await startCp(t, cfg.dir);
  const a = client(t, cp.url, 'a');
  await until('revision 1', () => a.got.length === 1);
  await cp.close();
  const restarted = await startCp(t, cfg.dir, { port: cp.port });
  await until('the client follows the new epoch', () => a.sub.current().position?.epoch === restarted.feed.epoch);
  assert.equal(a.got.length, 1, 'same content version: nothing to apply');
});

test('a bad config change keeps the old snapshot and /v1/status reports every issue', async (t) => {
  const cfg = configDir(t, 'good');
  const cp = await startCp(t, cfg.dir);
  const a = client(t, cp.url, 'a');
  await until('revision 1', () => a.got.length === 1);

  cfg.writeRaw(
    configYaml('bad')
      .replace('hosts: [up.default.svc.cluster.local]', 'hosts: [up.default.svc.cluster.local]\n  bogusField: 1')
      .replace('route: [{destination: {host: up.default.svc.cluster.local}}]', 'route: [{destination: {host: up.default.svc.cluster.local}, weight: 0}, {destination: {host: up.default.svc.cluster.local}, weight: 0}]'),
  );
  const auth = { authorization: `Bearer ${TOKEN}` };
  type Status = { revision: number; lastBuild: string; lastError: { issues: string[] } | null };
  let status: Status | undefined;
  const deadline = Date.now() + 5_000;
  do {
    if (status) await sleep(20);
    status = (await (await request(new URL('/v1/status', cp.url), { headers: auth })).body.json()) as Status;
  } while (status.lastBuild !== 'failed' && Date.now() < deadline);
  assert.equal(status?.lastBuild, 'failed');
  assert.equal(status.revision, 1);
  const issues = status.lastError!.issues;
  assert.ok(issues.length >= 2, `every issue is listed: ${issues.join(' | ')}`);
  assert.ok(issues.some((l) => /config\.yaml:\d+: ServiceEntry\/up: .*bogusField/.test(l)), issues.join('\n'));
  assert.ok(issues.some((l) => /config\.yaml:\d+: VirtualService\/app: .*weight/.test(l)), issues.join('\n'));

  const snap = (await (await request(new URL('/v1/snapshot', cp.url), { headers: auth })).body.json()) as { revision: number; snapshot: Snapshot };
  assert.equal(snap.revision, 1);
  assert.equal(markerOf(snap.snapshot), 'good');
  await sleep(300);
  assert.equal(a.got.length, 1, 'clients are not sent anything');

  cfg.write('fixed');
  await until('the fix is published', () => a.got.length === 2);
  assert.deepEqual([a.got[1]!.revision, a.got[1]!.marker], [2, 'fixed']);
});

test('the bootstrap token is required on every API but health and the CA root', async (t) => {
  const cfg = configDir(t, 'v1');
  const cp = await startCp(t, cfg.dir);
  const call = async (method: 'GET' | 'POST', path: string, authorization?: string): Promise<{ status: number; body: string; www?: string }> => {
    const res = await request(new URL(path, cp.url), {
      method,
      headers: { ...(authorization ? { authorization } : {}), ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
      body: method === 'POST' ? '{}' : undefined,
    });
    const body = await res.body.text();
    return { status: res.statusCode, body, www: res.headers['www-authenticate'] as string | undefined };
  };
  for (const [method, path] of [['GET', '/v1/snapshots/stream?node=x'], ['GET', '/v1/snapshot'], ['GET', '/v1/status'], ['POST', '/v1/certificates']] as const) {
    for (const auth of [undefined, 'Bearer wrong-token', `Bearer ${TOKEN}x`, `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}`, TOKEN]) {
      const r = await call(method, path, auth);
      assert.equal(r.status, 401, `${method} ${path} with ${auth ?? 'no token'}`);
      assert.match(r.body, /PORTICO_ERR_CP_UNAUTHORIZED/);
      assert.match(r.www ?? '', /^Bearer/);
      assert.ok(!r.body.includes(TOKEN));
    }
  }
  assert.equal((await call('GET', '/v1/snapshot', `Bearer ${TOKEN}`)).status, 200);
  assert.equal((await call('GET', '/v1/snapshot', `bearer  ${TOKEN}`)).status, 200, 'the scheme is case-insensitive (RFC 7235)');
  assert.equal((await call('GET', '/healthz')).status, 200);
  assert.equal((await call('GET', '/readyz')).status, 200);
  const caRes = await call('GET', '/v1/ca');
  assert.equal(caRes.status, 200);
  assert.equal(caRes.body, ca().certPem);

  // A client with the wrong token is told so and applies nothing.
  const wrong = client(t, cp.url, 'intruder', { token: 'nope' });
  await until('an error', () => wrong.errors.length > 0);
  assert.match(wrong.errors[0]!.message, /401/);
  assert.equal((wrong.errors[0] as { code?: string }).code, 'PORTICO_ERR_CP_UNAUTHORIZED');
  assert.equal(wrong.got.length, 0);
});

test('without a token the control plane listens on loopback only', async (t) => {
  const cfg = configDir(t, 'v1');
  await assert.rejects(
    startControlPlane({ config: [cfg.dir], port: 0, ca: ca(), host: '0.0.0.0' }),
    /refusing to listen on 0\.0\.0\.0 without a bootstrap token/,
  );
  const warnings: string[] = [];
  const cp = await startControlPlane({ config: [cfg.dir], port: 0, ca: ca(), logger: { info() {}, warn: (m) => void warnings.push(m), error() {} } });
  t.after(() => cp.close());
  assert.match(cp.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.ok(warnings.some((w) => /no bootstrap token/.test(w)));
  const res = await request(new URL('/v1/snapshot', cp.url));
  assert.equal(res.statusCode, 200);
  await res.body.dump();
});

test('a control plane started on an invalid config is not ready, then serves once the config is fixed', async (t) => {
  const cfg = configDir(t, 'v1');
  cfg.writeRaw('apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec: {hosts: 3}\n');
  const cp = await startCp(t, cfg.dir);
  const ready = await request(new URL('/readyz', cp.url));
  assert.equal(ready.statusCode, 503);
  await ready.body.dump();
  const snap = await request(new URL('/v1/snapshot', cp.url), { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(snap.statusCode, 503);
  assert.match(await snap.body.text(), /PORTICO_ERR_CP_NOT_READY/);
  const a = client(t, cp.url, 'early');
  await sleep(300);
  assert.equal(a.got.length, 0);
  cfg.write('now-valid');
  await until('the first snapshot', () => a.got.length === 1);
  assert.deepEqual([a.got[0]!.revision, a.got[0]!.marker], [1, 'now-valid']);
});
