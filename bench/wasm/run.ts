/**
 * `BENCH_SCENARIOS=wasm npm run bench`: the cost of WasmPlugins.
 *
 * 1. Host level: CPU per request for a plugin's request + response header callbacks (plus the
 *    stream's done/log/delete), with the VM inline on the main thread (the default, metered by
 *    wasm/meter.ts) and in a worker thread; process CPU time, so the worker thread's share is
 *    counted. A reference row runs the same module unmetered on the engine directly (what the
 *    meter costs).
 * 2. Gateway level: wrk against `portico gateway` in this process, same route without plugins,
 *    with the header plugin and with the basic-auth plugin: req/s and gateway CPU per request.
 * 3. Memory per VM: process RSS growth per started VM (inline and worker), and its linear memory.
 *
 * Plugins come from scripts/build-wasm-plugins.sh. Env: BENCH_DURATION (s, default 10).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildSnapshotFromText } from '../../config/index.ts';
import { GatewayRuntime } from '../../gateway/runtime.ts';
import { ModuleCache } from '../../wasm/fetch.ts';
import { WasmManager } from '../../wasm/plugins.ts';
import { SharedStore } from '../../wasm/shared.ts';
import { startVm, type Vm } from '../../wasm/vm.ts';
import { Engine } from '../../wasm/engine.ts';
import type { StreamInfo } from '../../wasm/properties.ts';

const PLUGINS = join(process.env.PORTICO_CACHE ?? join(homedir(), '.cache/portico'), 'wasm/plugins');
const duration = Number(process.env.BENCH_DURATION ?? 10);

const BASIC = { basic_auth_rules: [{ prefix: '/productpage', request_methods: ['GET'], credentials: ['admin3:admin3'] }] };
const HEADER = { header: 'x-wasm', value: 'bench' };
const INFO: StreamInfo = { path: '/productpage', method: 'GET', authority: 'bench', scheme: 'http', protocol: 'HTTP/1.1', timeMs: 0, sourceAddress: '127.0.0.1', destinationPort: 8080, mtls: false };

function settings(rootId: string, cfg: unknown) {
  return { rootId, vmId: rootId, pluginName: `bench.${rootId}`, pluginConfig: Buffer.from(JSON.stringify(cfg)), vmConfig: new Uint8Array(0), env: {}, logLevel: 2, node: { id: 'bench', cluster: 'bench', metadata: {} }, memoryLimitBytes: 256 << 20 };
}

const host = { services: new SharedStore().services(() => false), httpCall: () => Promise.reject(new Error('none')), log: () => undefined, metrics: () => undefined };

async function hostLevel(): Promise<void> {
  console.log('\n== host level: CPU per request (request + response headers callbacks, stream end)');
  for (const [file, root, cfg] of [['as-header', 'add_header', HEADER], ['go-header', 'h', HEADER], ['as-basic-auth', 'basic_auth', BASIC]] as const) {
    for (const isolation of ['inline', 'worker', 'unmetered'] as const) {
      const bytes = readFileSync(join(PLUGINS, `${file}.wasm`));
      // A generous budget: this measures cost; a loaded host can delay the VM thread (see docs/wasm.md).
      let once: () => void;
      let stop: () => void;
      if (isolation === 'unmetered') {
        const e = Engine.create(bytes, settings(root, cfg), host.services);
        e.start();
        once = () => {
          const r = e.requestHeaders(INFO, REQUEST, true);
          e.responseHeaders(r.ctx, { code: 200 }, RESPONSE, false);
          e.streamDone(r.ctx);
        };
        stop = () => undefined;
      } else {
        const vm = await startVm(bytes, settings(root, cfg), host, { isolation, callBudgetMs: 10_000 });
        once = () => {
          const r = vm.requestHeaders(INFO, REQUEST, true);
          vm.responseHeaders(r.ctx, { code: 200 }, RESPONSE, false);
          vm.streamDone(r.ctx);
        };
        stop = () => vm.kill();
      }
      // V8 runs wasm first in its baseline tier and optimises hot functions later (in the
      // background): measure the steady state a long-running gateway is in, not the warm-up.
      const onThread = isolation !== 'worker';
      const warm = onThread ? 20_000 : 2_000;
      for (let i = 0; i < warm; i++) {
        once();
        if (i % 500 === 0) await new Promise((r) => setImmediate(r));
      }
      await new Promise((r) => setImmediate(r));
      const n = onThread ? 200_000 : 20_000;
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        once();
        if (i % 500 === 0) await new Promise((r) => setImmediate(r)); // let deferred stream ends flush
      }
      const c = process.cpuUsage(c0);
      const wall = performance.now() - t0;
      const label = isolation === 'unmetered' ? 'no meter' : isolation;
      console.log(`${file.padEnd(14)} ${label.padEnd(8)} cpu ${((c.user + c.system) / n).toFixed(2).padStart(7)} µs/req   wall ${((wall * 1000) / n).toFixed(2).padStart(7)} µs/req`);
      stop();
    }
  }
}

const REQUEST: [string, string][] = [[':path', '/productpage'], [':method', 'GET'], ['authorization', 'Basic YWRtaW4zOmFkbWluMw==']];
const RESPONSE: [string, string][] = [[':status', '200']];

async function memoryPerVm(): Promise<void> {
  console.log('\n== memory per VM');
  for (const isolation of ['inline', 'worker'] as const) {
    for (const [file, root, cfg] of [['as-header', 'add_header', HEADER], ['go-header', 'h', HEADER]] as const) {
      const bytes = readFileSync(join(PLUGINS, `${file}.wasm`));
      // The first VM of a module also compiles it (inline VMs share the compiled code): not counted.
      const first = await startVm(bytes, settings(root, cfg), host, { isolation });
      const vms: Vm[] = [];
      global.gc?.();
      const before = process.memoryUsage().rss;
      const N = 4;
      for (let i = 0; i < N; i++) vms.push(await startVm(bytes, settings(root, cfg), host, { isolation }));
      await new Promise((r) => setTimeout(r, 200));
      const after = process.memoryUsage().rss;
      const what = isolation === 'worker' ? 'worker thread + engine' : 'instance + engine';
      console.log(`${file.padEnd(14)} ${isolation.padEnd(7)} RSS +${((after - before) / N / 1048576).toFixed(1)} MiB per VM (${what}), linear memory ${(vms[0]!.memoryBytes / 1048576).toFixed(1)} MiB`);
      for (const v of [first, ...vms]) v.kill();
    }
  }
}

function gatewayYaml(port: number, app: number, plugin: string): string {
  return `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: ${port}, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http: [{route: [{destination: {host: app.default.svc.cluster.local, port: {number: 80}}}]}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app, namespace: default}
spec:
  hosts: [app.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${app}}}]
---
${plugin}`;
}

async function gatewayLevel(): Promise<void> {
  if (spawnSync('wrk', ['--version']).error) {
    console.log('\n== gateway level: skipped (wrk not installed)');
    return;
  }
  console.log(`\n== gateway level: wrk -c 20 -d ${duration}s, same route (CPU = this process: gateway + VM worker threads)`);
  const app = spawn(process.execPath, ['-e', "require('http').createServer((q,s)=>s.end('ok')).listen(0,'127.0.0.1',function(){console.log(this.address().port)})"], { stdio: ['ignore', 'pipe', 'inherit'] });
  const appPort = await new Promise<number>((r) => app.stdout.once('data', (d: Buffer) => r(Number(String(d).trim()))));
  const auth = { authorization: 'Basic YWRtaW4zOmFkbWluMw==' };
  const cases: [string, string, Record<string, string>, 'worker' | 'inline'][] = [
    ['no plugin', '', {}, 'inline'],
    ['header (Go) inline', plugin('go-header', 'h', HEADER), {}, 'inline'],
    ['header (AS) inline', plugin('as-header', 'add_header', HEADER), {}, 'inline'],
    ['basic-auth inline', plugin('as-basic-auth', 'basic_auth', BASIC), auth, 'inline'],
    ['header (Go) worker', plugin('go-header', 'h', HEADER), {}, 'worker'],
    ['header (AS) worker', plugin('as-header', 'add_header', HEADER), {}, 'worker'],
    ['basic-auth worker', plugin('as-basic-auth', 'basic_auth', BASIC), auth, 'worker'],
  ];
  let port = 18_480;
  for (const [name, yaml, headers, isolation] of cases) {
    port++;
    const built = await buildSnapshotFromText(gatewayYaml(port, appPort, yaml), '/bench/wasm.yaml');
    if (!built.ok) throw new Error(JSON.stringify(built.issues));
    const wasm = new WasmManager({ cache: new ModuleCache(mkdtempSync(join(tmpdir(), 'bench-wasm-'))), vm: { isolation, callBudgetMs: 10_000 } });
    const gw = new GatewayRuntime(built.snapshot, { wasm });
    await gw.start();
    await Promise.all(wasm.handles().map((h) => h.loaded));
    const args = ['-t', '2', '-c', '20', '-d', `${duration}s`, ...Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]), `http://127.0.0.1:${port}/productpage`];
    const c0 = process.cpuUsage();
    const out = await new Promise<string>((resolve) => {
      const w = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'inherit'] });
      let s = '';
      w.stdout.on('data', (d: Buffer) => (s += d));
      w.on('exit', () => resolve(s));
    });
    const c = process.cpuUsage(c0);
    const reqs = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
    const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
    const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1];
    console.log(`${name.padEnd(20)} ${rps.toFixed(0).padStart(7)} req/s   cpu ${reqs ? ((c.user + c.system) / reqs).toFixed(1).padStart(6) : '-'} µs/req${non2xx ? `   (non-2xx: ${non2xx})` : ''}`);
    await gw.close(100);
    wasm.close();
  }
  app.kill();
}

function plugin(file: string, root: string, cfg: unknown): string {
  return `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: ${file}, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  url: file://${join(PLUGINS, `${file}.wasm`)}
  pluginName: ${root}
  pluginConfig: ${JSON.stringify(cfg)}
`;
}

await hostLevel();
await memoryPerVm();
await gatewayLevel();
process.exit(0);
