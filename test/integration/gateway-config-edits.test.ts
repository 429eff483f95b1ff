/**
 * Every config edit applies, however it is written: in place, `sed -i` (temp file renamed over the
 * original), an editor with swap and backup files, a file deleted and created again in a
 * subdirectory, and a Kubernetes ConfigMap volume whose `..data` symlink is swapped. 50 mixed
 * edits to a real `portico gateway` process under load; no request may fail meanwhile, and each
 * edit must be served before the next one is made (a lost event used to leave the old route
 * serving until some later file event). How many applied within 1 s is printed: on an idle
 * machine all of them (a few hundred ms each); the assertion allows a busy CI machine 10 s.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Agent, request } from 'undici';
import { freePort } from '../helpers/net.ts';
import { startEcho } from '../helpers/upstream.ts';

const ROOT = new URL('../..', import.meta.url).pathname;

const base = (port: number, upstream: number): string => `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: ${port}, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: up}
spec:
  hosts: [up.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${upstream}}}]
`;

const vs = (name: string, host: string, marker: string): string => `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ${name}}
spec:
  hosts: [${host}]
  gateways: [edge]
  http:
  - headers: {response: {set: {x-config: "${marker}"}}}
    route: [{destination: {host: up}}]
`;

/** What the kubelet does to a ConfigMap volume: a new timestamped copy, then `..data` swapped to it. */
function configMapSwap(dir: string, stamp: string, files: Record<string, string>): void {
  const copy = `..${stamp}`;
  mkdirSync(join(dir, copy));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, copy, name), text);
  symlinkSync(copy, join(dir, '..data_tmp'));
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
}

test('50 mixed config edits under load: each is served before the next, zero failed requests', async (t) => {
  const up = await startEcho(t, 'up');
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'portico-edits-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const conf = join(dir, 'conf');
  const cm = join(dir, 'configmap');
  mkdirSync(join(conf, 'sub'), { recursive: true });
  mkdirSync(cm);
  writeFileSync(join(conf, 'base.yaml'), base(port, up.port));
  writeFileSync(join(conf, 'app.yaml'), vs('app', 'app.example', 'v0'));
  writeFileSync(join(conf, 'sub', 'extra.yaml'), vs('extra', 'extra.example', 'v0'));
  configMapSwap(cm, '2026_01_01_00_00_00.0', { 'cm.yaml': vs('cm', 'cm.example', 'v0') });
  symlinkSync('..data/cm.yaml', join(cm, 'cm.yaml'));

  const child = spawn(process.execPath, ['--import', 'tsx', 'bin/portico.ts', 'gateway', '--config', conf, '--config', cm, '--workers', '1', '--admin-port', '-1', '--metrics-port', '-1'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c));
  child.stderr!.on('data', (c: Buffer) => (out += c));
  await new Promise<void>((resolve, reject) => {
    const check = (): void => (out.includes('gateway ready') ? resolve() : undefined);
    child.stderr!.on('data', check);
    child.once('exit', () => reject(new Error(`gateway exited:\n${out}`)));
  });

  const agent = new Agent({ connections: 4 });
  t.after(() => agent.close());
  const get = async (host: string): Promise<{ status: number; marker: string }> => {
    const res = await request(`http://127.0.0.1:${port}/`, { dispatcher: agent, headers: { host } });
    await res.body.dump();
    return { status: res.statusCode, marker: String(res.headers['x-config'] ?? '') };
  };

  // Load: the app and configmap hosts are always routed, whatever edit is in progress.
  const failures: string[] = [];
  let served = 0;
  let running = true;
  const loop = async (host: string): Promise<void> => {
    while (running) {
      try {
        const r = await get(host);
        if (r.status === 200) served++;
        else failures.push(`${host}: status ${r.status}`);
      } catch (err) {
        failures.push(`${host}: ${(err as Error).message}`);
      }
    }
  };
  const load = Promise.all([loop('app.example'), loop('app.example'), loop('cm.example')]);

  let swaps = 0;
  let extraPath = join(conf, 'sub', 'extra.yaml');
  let extraPresent = true;
  /** Each edit returns the host it changed and what that host must answer afterwards. */
  const edits: Array<(marker: string, i: number) => { host: string; want: { status: number; marker: string } }> = [
    (m) => {
      // In place: truncate and write the same inode.
      writeFileSync(join(conf, 'app.yaml'), vs('app', 'app.example', m));
      return { host: 'app.example', want: { status: 200, marker: m } };
    },
    (m, i) => {
      // sed -i: a temp file in the same directory renamed over the original.
      const tmp = join(conf, `sed${i.toString(36)}X9`);
      writeFileSync(tmp, vs('app', 'app.example', m));
      renameSync(tmp, join(conf, 'app.yaml'));
      return { host: 'app.example', want: { status: 200, marker: m } };
    },
    (m) => {
      // vim (backupcopy=no): swap file, write test file, original renamed to a backup, new
      // file written, backup and swap removed.
      const file = join(conf, 'app.yaml');
      writeFileSync(join(conf, '.app.yaml.swp'), 'swap');
      writeFileSync(join(conf, '4913'), '');
      unlinkSync(join(conf, '4913'));
      renameSync(file, `${file}~`);
      writeFileSync(file, vs('app', 'app.example', m));
      unlinkSync(`${file}~`);
      unlinkSync(join(conf, '.app.yaml.swp'));
      return { host: 'app.example', want: { status: 200, marker: m } };
    },
    (m, i) => {
      // A file deleted, or created again under another name in a subdirectory.
      if (extraPresent) {
        unlinkSync(extraPath);
        extraPresent = false;
        return { host: 'extra.example', want: { status: 404, marker: '' } };
      }
      extraPath = join(conf, 'sub', `extra-${i}.yaml`);
      writeFileSync(extraPath, vs('extra', 'extra.example', m));
      extraPresent = true;
      return { host: 'extra.example', want: { status: 200, marker: m } };
    },
    (m) => {
      // Kubernetes ConfigMap update.
      configMapSwap(cm, `2026_01_01_00_00_${String(++swaps).padStart(2, '0')}.${swaps}`, { 'cm.yaml': vs('cm', 'cm.example', m) });
      return { host: 'cm.example', want: { status: 200, marker: m } };
    },
  ];

  const slow: string[] = [];
  const lost: string[] = [];
  const latencies: number[] = [];
  let applied = 0;
  for (let i = 1; i <= 50; i++) {
    const kind = (i * 3) % edits.length; // mixes the kinds in a different order than declared
    const { host, want } = edits[kind]!(`v${i}`, i);
    const started = Date.now();
    let seen = { status: 0, marker: '' };
    while (Date.now() - started < 10_000) {
      seen = await get(host);
      if (seen.status === want.status && seen.marker === want.marker) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const took = Date.now() - started;
    latencies.push(took);
    if (seen.status !== want.status || seen.marker !== want.marker) lost.push(`edit ${i} (kind ${kind}, ${host}): want ${JSON.stringify(want)}, got ${JSON.stringify(seen)} after ${took} ms`);
    else if (took <= 1000) applied++;
    else slow.push(`edit ${i} (kind ${kind}, ${host}): want ${JSON.stringify(want)}, got ${JSON.stringify(seen)} after ${took} ms`);
  }
  running = false;
  await load;
  latencies.sort((a, b) => a - b);
  process.stderr.write(`config edits applied within 1 s: ${applied}/50 (median ${latencies[25]} ms, max ${latencies.at(-1)} ms); requests served under load: ${served}\n`);
  if (slow.length) process.stderr.write(`slower than 1 s:\n${slow.join('\n')}\n`);
  assert.deepEqual(lost, [], `${50 - lost.length}/50 edits applied`);
  assert.deepEqual(failures, []);
  assert.ok(served > 50, `only ${served} requests served`);
});
