/**
 * Istio's Bookinfo with a sidecar per workload, under mesh-wide PeerAuthentication STRICT, on
 * real sockets: every hop between services is mTLS between sidecars. The `sleep` client's
 * sidecar is a real `portico sidecar` process; the others run in-process to keep this fast.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Pool, request } from 'undici';
import { loadOrCreateCa } from '../../certs/index.ts';
import { startDetails, startProductpage, startRatings, startReviews, RATINGS_UNAVAILABLE, type ServiceHandle } from '../../demo/bookinfo/index.ts';
import { startHttpbin } from '../../demo/httpbin.ts';
import { startSidecar, type SidecarHandle } from '../../bin/commands/sidecar.ts';
import { silentLogger } from '../../gateway/runtime.ts';
import { freePort } from '../helpers/net.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const EX = join(ROOT, 'config/examples/bookinfo');
/** The mesh variants (STRICT mTLS, httpbin and its clients, the deny policy, the ratings fault). */
const MESH = join(ROOT, 'config/examples/bookinfo-mesh');

/** The example registry ports, replaced by free ones (sidecar inbound ports). */
const FIXED = { 'productpage-v1': 19080, 'details-v1': 19081, 'reviews-v1': 19082, 'reviews-v2': 19083, 'reviews-v3': 19084, 'ratings-v1': 19085, 'httpbin-v1': 18000, sleep: 18100, notsleep: 18101 } as const;
type Wl = keyof typeof FIXED;

async function meshConfig(dir: string): Promise<Record<Wl, number>> {
  const ports = {} as Record<Wl, number>;
  let registry = readFileSync(join(EX, 'registry.yaml'), 'utf8') + '\n---\n' + readFileSync(join(MESH, 'httpbin.yaml'), 'utf8');
  for (const [wl, port] of Object.entries(FIXED) as [Wl, number][]) {
    ports[wl] = await freePort();
    registry = registry.replace(new RegExp(`(\\n\\s+http: )${port}\\n`), `$1${ports[wl]}\n`);
  }
  writeFileSync(join(dir, 'registry.yaml'), registry);
  for (const f of ['destination-rule-all.yaml', 'virtual-service-reviews-test-v2.yaml']) copyFileSync(join(EX, f), join(dir, f));
  copyFileSync(join(MESH, 'peer-authentication-strict.yaml'), join(dir, 'peer-authentication-strict.yaml'));
  copyFileSync(join(MESH, 'authorization-policy-deny-headers.yaml'), join(dir, 'deny.yaml'));
  return ports;
}

function spawnSidecar(args: string[]): { child: ChildProcess; ready: Promise<string> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bin/portico.ts', 'sidecar', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const ready = new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (c: Buffer) => {
      out += c;
      const line = /sidecar ready .*\n/.exec(out);
      if (line) resolve(line[0]);
    });
    child.stderr!.on('data', (c: Buffer) => (out += c));
    child.once('exit', (code) => reject(new Error(`sidecar exited ${code}: ${out}`)));
  });
  return { child, ready };
}

/** A meshed client: absolute-form requests to a sidecar's outbound listener, as HTTP_PROXY clients send. */
async function send(proxy: Pool, url: string, init: { method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  const res = await proxy.request({ path: url, method: init.method ?? 'GET', headers: { host: new URL(url).host, ...init.headers }, body: init.body });
  return { status: res.statusCode, body: await res.body.text(), headers: res.headers };
}

function get(proxy: Pool, url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return send(proxy, url, { headers });
}

async function loginJason(proxy: Pool): Promise<string> {
  const login = await send(proxy, 'http://productpage:9080/login', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'username=jason&passwd=jason' });
  return String(login.headers['set-cookie']).split(';')[0]!;
}

async function waitFor(what: string, check: () => Promise<boolean>, ms = 5_000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}

test('Bookinfo with sidecars under STRICT mTLS: routing, faults, XFCC, RBAC, plaintext refused, rotation under load', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-mesh-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cfg = join(dir, 'config');
  const caDir = join(dir, 'ca');
  mkdirSync(cfg);
  const inbound = await meshConfig(cfg);
  const ca = loadOrCreateCa(caDir);

  const handles: SidecarHandle[] = [];
  const apps: ServiceHandle[] = [];
  t.after(async () => {
    await Promise.allSettled(handles.map((h) => h.close()));
    await Promise.allSettled(apps.map((a) => a.close()));
  });
  const appPorts = {} as Record<Wl, number>;
  for (const wl of Object.keys(FIXED) as Wl[]) appPorts[wl] = await freePort();
  // httpbin's certificate lives 3 s, so it rotates (at half-life) during the load below.
  const sidecars = await Promise.all(
    (Object.keys(FIXED) as Wl[])
      .filter((wl) => wl !== 'sleep')
      .map((wl) =>
        startSidecar({ workload: `default/${wl}`, config: [cfg], ca, appPort: appPorts[wl], outboundPort: 0, logger: silentLogger, drainMs: 200, certTtlHours: wl === 'httpbin-v1' ? 3 / 3600 : undefined }).then((h) => {
          handles.push(h);
          return [wl, h] as const;
        }),
      ),
  );
  const sc = Object.fromEntries(sidecars) as Record<Exclude<Wl, 'sleep'>, SidecarHandle>;
  const proxyOf = (wl: Exclude<Wl, 'sleep'>): string => `http://127.0.0.1:${sc[wl].sidecar.outboundPort()}`;

  apps.push(await startRatings({ port: appPorts['ratings-v1'] }));
  apps.push(await startDetails({ port: appPorts['details-v1'] }));
  apps.push(await startHttpbin({ port: appPorts['httpbin-v1'] }));
  for (const v of ['v1', 'v2', 'v3'] as const) {
    apps.push(await startReviews({ version: v, port: appPorts[`reviews-${v}`], ratingsUrl: 'http://ratings:9080', podname: `reviews-${v}`, httpProxy: proxyOf(`reviews-${v}`) }));
  }
  apps.push(await startProductpage({ port: appPorts['productpage-v1'], detailsUrl: 'http://details:9080', reviewsUrl: 'http://reviews:9080', ratingsUrl: 'http://ratings:9080', httpProxy: proxyOf('productpage-v1') }));

  // The meshed client `sleep` is a real `portico sidecar` process.
  const sleepOut = await freePort();
  const proc = spawnSidecar(['--config', cfg, '--workload', 'default/sleep', '--app-port', String(appPorts.sleep), '--outbound-port', String(sleepOut), '--ca-dir', caDir, '--metrics-port', '0']);
  t.after(() => proc.child.kill('SIGKILL'));
  const line = await proc.ready;
  assert.match(line, /spiffe=spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/);
  const sleep = new Pool(`http://127.0.0.1:${sleepOut}`);
  const notsleep = new Pool(proxyOf('notsleep'));
  t.after(() => Promise.all([sleep.close(), notsleep.close()]));

  await t.test('anonymous users see reviews v1, jason reviews v2 (black stars)', async () => {
    const anon = await get(sleep, 'http://productpage:9080/productpage');
    assert.equal(anon.status, 200, anon.body);
    assert.match(anon.body, /The Comedy of Errors/);
    assert.doesNotMatch(anon.body, /glyphicon-star/);
    const cookie = await loginJason(sleep);
    const jason = await get(sleep, 'http://productpage:9080/productpage', { cookie });
    assert.match(jason.body, /color="black"/);
    assert.ok(sc['reviews-v2'].sidecar.stats.inboundRequests > 0);
    assert.equal(sc['reviews-v3'].sidecar.stats.inboundRequests, 0);
  });

  await t.test('a plaintext request to a STRICT sidecar is refused', async () => {
    const before = sc['details-v1'].sidecar.stats.plaintextRefused;
    await assert.rejects(request(`http://127.0.0.1:${inbound['details-v1']}/details/0`));
    assert.equal(sc['details-v1'].sidecar.stats.plaintextRefused, before + 1);
  });

  await t.test('httpbin /headers shows XFCC with the client SPIFFE URI; DENY policy hits sleep only', async () => {
    const ok = await get(notsleep, 'http://httpbin:8000/headers', { 'x-forwarded-client-cert': 'By=forged' });
    assert.equal(ok.status, 200, ok.body);
    const xfcc = (JSON.parse(ok.body) as { headers: Record<string, string> }).headers['X-Forwarded-Client-Cert']!;
    assert.match(xfcc, /^By=spiffe:\/\/cluster\.local\/ns\/default\/sa\/httpbin;Hash=[0-9a-f]{64};Subject="";URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/notsleep$/);
    const denied = await get(sleep, 'http://httpbin:8000/headers');
    assert.equal(denied.status, 403);
    assert.equal(denied.body, 'RBAC: access denied');
    const other = await get(sleep, 'http://httpbin:8000/ip');
    assert.equal(other.status, 200);
  });

  await t.test('certificate rotation during bounded load loses no request', async () => {
    const id = sc['httpbin-v1'].identity;
    const before = id.rotations;
    let sent = 0;
    const failures: string[] = [];
    const until = Date.now() + 3_500;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (Date.now() < until || id.rotations === before) {
          if (Date.now() > until + 5_000) break;
          sent++;
          try {
            const r = await get(notsleep, 'http://httpbin:8000/get');
            if (r.status !== 200) failures.push(String(r.status));
          } catch (err) {
            failures.push((err as Error).message);
          }
        }
      }),
    );
    assert.ok(id.rotations > before, 'httpbin rotated its certificate');
    assert.deepEqual(failures, [], `of ${sent}`);
  });

  await t.test('a config change (ratings abort for jason) reaches the sidecars; jason sees ratings unavailable', async () => {
    copyFileSync(join(MESH, 'virtual-service-ratings-test-abort.yaml'), join(cfg, 'ratings-abort.yaml'));
    const cookie = await loginJason(notsleep);
    await waitFor('the abort to apply', async () => (await get(notsleep, 'http://productpage:9080/productpage', { cookie })).body.includes(RATINGS_UNAVAILABLE));
    const anon = await get(notsleep, 'http://productpage:9080/productpage');
    assert.doesNotMatch(anon.body, new RegExp(RATINGS_UNAVAILABLE));
  });
});
