/**
 * WasmPlugins in the gateway's HTTP filter chain, end to end: the seed's Bookinfo scenario with
 * Istio's basic-auth plugin, phase/priority ordering of two header plugins, failure strategies
 * with plugins that trap or loop, and the EnvoyFilter form.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request } from 'undici';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';
import { startEcho, type Upstream } from '../helpers/upstream.ts';
import { bookinfoYaml as bookinfo, pluginPath, wasmPluginYaml as plugin, type PluginName } from '../helpers/wasm.ts';
import { WasmManager, type WasmManagerOptions } from '../../wasm/plugins.ts';
import { ModuleCache } from '../../wasm/fetch.ts';
import { Registry } from '../../lib/metrics.ts';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

interface Setup {
  base: string;
  app: Upstream;
  wasm: WasmManager;
}

async function setup(
  t: TestContext,
  plugins: (p: (n: PluginName) => string) => string | undefined,
  vm: { callBudgetMs?: number; isolation?: 'worker' | 'inline' } = {},
  more: Partial<WasmManagerOptions> = {},
): Promise<Setup | undefined> {
  let missingPlugin = false;
  const path = (n: PluginName): string => {
    const p = pluginPath(t, n);
    if (!p) missingPlugin = true;
    return p ?? '/missing';
  };
  const extra = plugins(path);
  if (missingPlugin || extra === undefined) return undefined;
  const app = await startEcho(t, 'productpage');
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'portico-wasm-gw-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const wasm = new WasmManager({ cache: new ModuleCache(dir), vm, retireMs: 50, ...more });
  t.after(() => wasm.close());
  await startGateway(t, bookinfo(port, app.port) + extra, { wasm });
  // The modules load off the request path; wait for them before asserting on traffic.
  await Promise.all(wasm.handles().map((h) => h.loaded));
  return { base: `http://127.0.0.1:${port}`, app, wasm };
}

async function get(url: string, headers: Record<string, string> = {}) {
  const r = await request(url, { headers });
  return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
}

const BASIC_AUTH = `  pluginName: basic_auth
  phase: AUTHN
  pluginConfig:
    basic_auth_rules:
    - prefix: /productpage
      request_methods: [GET, POST]
      credentials: ["ok:test", "YWRtaW4zOmFkbWluMw=="]
    - prefix: /api
      request_methods: [GET]
      credentials: ["admin3:admin3"]`;

test('Bookinfo behind the gateway with the basic-auth WasmPlugin: admin3:admin3 passes, none or wrong gets 401', async (t) => {
  const s = await setup(t, (p) => plugin('basic-auth', p('as-basic-auth'), BASIC_AUTH));
  if (!s) return;
  const ok = await get(`${s.base}/productpage`, { authorization: 'Basic YWRtaW4zOmFkbWluMw==' });
  assert.equal(ok.status, 200);
  assert.equal(JSON.parse(ok.body).url, '/productpage');
  assert.equal(s.app.seen.at(-1)?.headers.authorization, 'Basic YWRtaW4zOmFkbWluMw==');

  const none = await get(`${s.base}/productpage`);
  assert.equal(none.status, 401);
  assert.equal(none.headers['www-authenticate'], 'Basic realm=istio');
  const wrong = await get(`${s.base}/productpage`, { authorization: `Basic ${Buffer.from('admin3:nope').toString('base64')}` });
  assert.equal(wrong.status, 401);
  assert.equal((await get(`${s.base}/api/v1/products`, { authorization: `Basic ${Buffer.from('admin3:admin3').toString('base64')}` })).status, 200);
  assert.equal((await get(`${s.base}/static/x.css`)).status, 200, 'no rule for /static');
  const seen = s.app.seen.length;
  assert.equal((await get(`${s.base}/api/v1/products`)).status, 401);
  assert.equal(s.app.seen.length, seen, 'a 401 never reaches the upstream');
});

test('two header plugins: phase and priority order on the request, reverse order on the response', async (t) => {
  const s = await setup(t, (p) =>
    plugin('late', p('as-header'), `  pluginName: add_header\n  priority: 100\n  pluginConfig: {header: x-wasm-order, value: unset-phase}`) +
    plugin('authz-low', p('go-header'), `  phase: AUTHZ\n  priority: 1\n  pluginConfig: {header: x-wasm-order, value: authz-1}`) +
    plugin('authz-high', p('as-header'), `  pluginName: add_header\n  phase: AUTHZ\n  priority: 10\n  pluginConfig: {header: x-wasm-order, value: authz-10}`) +
    plugin('authn', p('go-header'), `  phase: AUTHN\n  priority: -5\n  pluginConfig: {header: x-wasm-order, value: authn}`),
  );
  if (!s) return;
  const r = await get(`${s.base}/productpage`);
  assert.equal(r.status, 200);
  const upstream = s.app.seen.at(-1)?.headers['x-wasm-order'];
  assert.equal(upstream, 'authn, authz-10, authz-1, unset-phase');
  assert.deepEqual(String(r.headers['x-wasm-order']).split(/,\s*/), ['unset-phase', 'authz-1', 'authz-10', 'authn']);
});

test('FAIL_CLOSE: a trapping plugin answers 503 (wasm_fail_stream), and so does every later request it covers', async (t) => {
  const s = await setup(t, (p) =>
    plugin('trap-closed', p('go-misbehave'), `  phase: AUTHN\n  match: [{mode: CLIENT}]\n  pluginConfig: {at: request_headers, do: trap, path: /x/closed}`) +
    plugin('trap-open', p('go-misbehave'), `  failStrategy: FAIL_OPEN\n  pluginConfig: {at: request_headers, do: trap, path: /x/open}`),
  );
  if (!s) return;
  assert.equal((await get(`${s.base}/x/fine`)).status, 200);
  assert.equal((await get(`${s.base}/x/closed`)).status, 503);
  // the closed plugin's VM is dead: everything it covers now fails closed
  assert.equal((await get(`${s.base}/x/fine`)).status, 503);
  assert.equal(s.wasm.failures.get('WasmPlugin/istio-system/trap-closed'), 1);
});

test('FAIL_OPEN skips a failed plugin; FAIL_RELOAD starts a fresh VM', async (t) => {
  const s = await setup(t, (p) =>
    plugin('open', p('go-misbehave'), `  failStrategy: FAIL_OPEN\n  pluginConfig: {at: request_headers, do: trap, path: /x/open}`) +
    plugin('reload', p('go-misbehave'), `  failStrategy: FAIL_RELOAD\n  phase: STATS\n  pluginConfig: {at: request_headers, do: trap, path: /x/reload}`),
  );
  if (!s) return;
  const r = await get(`${s.base}/x/open`);
  assert.equal(r.status, 200, 'the FAIL_OPEN plugin trapped and was skipped');
  // FAIL_RELOAD: the trap kills the VM, a fresh one runs the request again (and traps again: 503)
  assert.equal((await get(`${s.base}/x/reload`)).status, 503);
  const handle = s.wasm.handles().find((h) => h.cfg.id.endsWith('/reload'))!;
  assert.ok(handle.restarts >= 1);
  // the next request gets a fresh VM and passes; both plugins add x-misbehave: passed
  const ok = await get(`${s.base}/x/fine`);
  assert.equal(ok.status, 200);
  // the FAIL_OPEN plugin's VM stays failed and skipped: only the reloaded one adds its header
  assert.equal(s.app.seen.at(-1)?.headers['x-misbehave'], 'passed');
});

test('a plugin that loops forever costs one call budget, then FAIL_CLOSE answers 503 and the gateway keeps serving', async (t) => {
  const s = await setup(t, (p) => plugin('loop', p('go-misbehave'), `  pluginConfig: {at: request_headers, do: loop, path: /x/loop}`), { callBudgetMs: 300 });
  if (!s) return;
  const looping = get(`${s.base}/x/loop`);
  assert.equal((await looping).status, 503);
  assert.equal((await get(`${s.base}/static/ok`)).status, 503, 'the VM is gone: fail closed');
});

test('a module that cannot be fetched or fails its sha256 under FAIL_CLOSE answers 403; FAIL_OPEN passes', async (t) => {
  const s = await setup(t, (p) => {
    const file = p('go-header');
    return (
      plugin('badsum', file, `  sha256: "${'0'.repeat(64)}"\n  match: [{mode: CLIENT, ports: [{number: 1}]}]\n  pluginConfig: {}`) +
      plugin('missing', '/nonexistent/plugin.wasm', `  pluginConfig: {}\n  phase: STATS`) +
      plugin('missing-open', '/nonexistent/plugin.wasm', `  failStrategy: FAIL_OPEN\n  pluginConfig: {}`)
    );
  });
  if (!s) return;
  // badsum only covers listener port 1: not this one
  const r = await get(`${s.base}/productpage`);
  assert.equal(r.status, 403, 'missing module, FAIL_CLOSE');
  assert.ok(s.wasm.handles().every((h) => h.state.kind === 'fetch-failed'));
});

test('sha256 of the module bytes accepted for file://; the EnvoyFilter Wasm form runs the same plugin', async (t) => {
  const s = await setup(t, (p) => {
    const file = p('as-basic-auth');
    const hdr = p('go-header');
    return `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: basic-auth, namespace: istio-system}
spec:
  workloadSelector: {labels: {istio: ingressgateway}}
  configPatches:
  - applyTo: HTTP_FILTER
    match: {context: GATEWAY, listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager}}}}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.wasm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
          config:
            root_id: basic_auth
            configuration:
              "@type": type.googleapis.com/google.protobuf.StringValue
              value: '{"basic_auth_rules":[{"prefix":"/productpage","request_methods":["GET"],"credentials":["admin3:admin3"]}]}'
            vm_config: {vm_id: basic_auth, runtime: envoy.wasm.runtime.v8, code: {local: {filename: ${file}}}}
---
` + plugin('hdr', hdr, `  sha256: ${createHash('sha256').update(readFileSync(hdr)).digest('hex')}\n  pluginConfig: {header: x-checked, value: "yes"}`);
  });
  if (!s) return;
  assert.equal((await get(`${s.base}/productpage`)).status, 401);
  const ok = await get(`${s.base}/productpage`, { authorization: `Basic ${Buffer.from('admin3:admin3').toString('base64')}` });
  assert.equal(ok.status, 200);
  assert.equal(s.app.seen.at(-1)?.headers['x-checked'], 'yes');
});


test('while a FAIL_CLOSE module is still being fetched, the requests it covers are refused; other config applies at once', async (t) => {
  const bytes = pluginPath(t, 'go-header');
  if (!bytes) return;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const server = createServer((_req, res) => void gate.then(() => res.end(readFileSync(bytes))));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => { server.closeAllConnections(); server.close(); });
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/plugin.wasm`;
  const app = await startEcho(t, 'productpage');
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'portico-wasm-gw-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const wasm = new WasmManager({ cache: new ModuleCache(dir) });
  t.after(() => wasm.close());
  const yaml = bookinfo(port, app.port) + plugin('slow', '/unused', '  pluginConfig: {header: x-slow, value: "1"}').replace('file:///unused', url);
  await startGateway(t, yaml, { wasm });
  const base = `http://127.0.0.1:${port}`;
  assert.equal((await get(`${base}/productpage`)).status, 403, 'module not there yet: refused, never passed');
  assert.equal(app.seen.length, 0);
  release();
  await Promise.all(wasm.handles().map((h) => h.loaded));
  assert.equal((await get(`${base}/productpage`)).status, 200);
  assert.equal(app.seen.at(-1)?.headers['x-slow'], '1');
});

test('plugin metrics and VM memory are exposed through the Prometheus registry', async (t) => {
  const s = await setup(t, (p) => plugin('stateful', p('go-stateful'), '  pluginConfig: {}'));
  if (!s) return;
  const registry = new Registry();
  s.wasm.register(registry);
  assert.equal((await get(`${s.base}/productpage`)).status, 200);
  assert.equal((await get(`${s.base}/productpage`)).status, 200);
  const text = registry.render();
  assert.match(text, /portico_wasm_plugin_metric\{wasm_plugin="WasmPlugin\/istio-system\/stateful",name="stateful_requests"\} 2/);
  assert.match(text, /portico_wasm_vm_memory_bytes\{wasm_plugin="WasmPlugin\/istio-system\/stateful"\} \d+/);
});

for (const isolation of ['worker', 'inline'] as const) {
  test(`every stream's context is ended in the plugin (proxy_on_done/log/delete), so the SDK's context map stays flat (${isolation})`, async (t) => {
    // proxy-runtime logs its whole context map at debug level on every context creation; before
    // the gateway ran the chain's onDone, no stream ever ended: the map held one context per
    // request served (a leak, and a per-request cost that grew with every request).
    const maps: string[] = [];
    const log = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: (m: string) => void (m.startsWith('Current context_map: ') && maps.push(m)) };
    const s = await setup(t, (p) => plugin('hdr', p('as-header'), '  pluginName: add_header\n  pluginConfig: {header: x-h, value: "1"}'), { isolation }, { log, logLevel: 'debug' });
    if (!s) return;
    const N = 40;
    for (let i = 0; i < N; i++) assert.equal((await get(`${s.base}/productpage`)).status, 200);
    const last = maps.at(-1);
    assert.ok(last, 'the SDK logged its context map');
    const ids = last.slice('Current context_map: '.length).split(', ');
    // the root context, and at most the few streams whose end is still batched (wasm/vm.ts)
    assert.ok(ids.length <= 10, `the SDK holds ${ids.length} contexts after ${N} sequential requests: ${last}`);
  });
}

test('header removals and replacements by a plugin reach the upstream; untouched and repeated headers stay as sent', async (t) => {
  const s = await setup(t, (p) =>
    plugin('edit', p('go-header'), '  pluginName: h\n  pluginConfig: {header: x-added, value: "1", remove: [x-drop], replace: {x-swap: new}}'));
  if (!s) return;
  const r = await request(`${s.base}/productpage`, { headers: ['x-drop', 'a', 'x-swap', 'old', 'x-keep', 'k', 'x-multi', '1', 'x-multi', '2'] });
  assert.equal(r.statusCode, 200);
  await r.body.dump();
  const h = s.app.seen.at(-1)!.headers;
  assert.equal(h['x-drop'], undefined);
  assert.equal(h['x-swap'], 'new');
  assert.equal(h['x-keep'], 'k');
  assert.equal(h['x-added'], '1');
  assert.equal(h['x-multi'], '1, 2');
});
