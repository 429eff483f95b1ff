/**
 * The proxy-wasm host (wasm/engine.ts behind wasm/vm.ts) driven with plugins built from real
 * SDKs by scripts/build-wasm-plugins.sh: AssemblyScript + @solo-io/proxy-runtime, and Go's
 * standard toolchain on the raw ABI.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startVm, type Vm, type VmHost, type VmOptions, type HttpCallAnswer } from '../../wasm/vm.ts';
import { SharedStore } from '../../wasm/shared.ts';
import { WasmVmError, abiCoverage, type EngineSettings, type HttpCallRequest, type MetricValue } from '../../wasm/engine.ts';
import { HOST_FUNCTIONS } from '../../wasm/abi.ts';
import { decodePairs, encodePairs } from '../../wasm/pairs.ts';
import { limitMemory } from '../../wasm/memory-limit.ts';
import type { StreamInfo } from '../../wasm/properties.ts';
import { pluginBytes, type PluginName } from '../helpers/wasm.ts';
import type { TestContext } from 'node:test';

const INFO: StreamInfo = {
  path: '/productpage?u=1', method: 'GET', authority: 'bookinfo.example', scheme: 'http', protocol: 'HTTP/1.1', timeMs: 1_700_000_000_000,
  sourceAddress: '10.1.2.3', sourcePort: 40000, destinationPort: 8080, mtls: false,
};

interface Recorder extends VmHost {
  logs: [string, string][];
  metricValues: Map<string, number>;
  calls: HttpCallRequest[];
  failures: string[];
}

function recorder(store = new SharedStore(), answer?: (r: HttpCallRequest) => Promise<HttpCallAnswer>): Recorder {
  const r: Recorder = {
    logs: [],
    metricValues: new Map(),
    calls: [],
    failures: [],
    services: store.services((name) => name === 'outbound|8080||echo.default.svc.cluster.local'),
    httpCall: (req) => {
      r.calls.push(req);
      return answer ? answer(req) : Promise.resolve({ headers: [[':status', '200']], body: new TextEncoder().encode('pong') });
    },
    log: (level, _p, msg) => r.logs.push([level, msg]),
    metrics: (_p, values: readonly MetricValue[]) => {
      for (const v of values) r.metricValues.set(v.name, v.value);
    },
    failed: (_p, reason) => r.failures.push(reason),
  };
  return r;
}

function settings(rootId: string, config: unknown, extra: Partial<EngineSettings> = {}): EngineSettings {
  return {
    rootId, vmId: `vm-${rootId}`, pluginName: `default.${rootId}`, pluginConfig: Buffer.from(JSON.stringify(config)), vmConfig: new Uint8Array(0),
    env: {}, logLevel: 2, node: { id: 'router~10.0.0.1~gw.istio-system~istio-system.svc.cluster.local', cluster: 'istio-ingressgateway', metadata: { NAME: 'gw-1' } },
    memoryLimitBytes: 64 << 20, ...extra,
  };
}

async function vmFor(t: TestContext, name: PluginName, s: EngineSettings, host: VmHost, opts?: VmOptions): Promise<Vm | undefined> {
  const bytes = pluginBytes(t, name);
  if (!bytes) return undefined;
  const vm = await startVm(bytes, s, host, opts);
  t.after(() => vm.kill());
  return vm;
}

const get = (pairs: [string, string][] | undefined, k: string): string[] => (pairs ?? []).filter((p) => p[0] === k).map((p) => p[1]);

for (const isolation of ['worker', 'inline'] as const) {
  test(`AssemblyScript header plugin adds the pluginConfig value on request and response (${isolation})`, async (t) => {
    const host = recorder();
    const vm = await vmFor(t, 'as-header', settings('add_header', { header: 'x-wasm-order', value: 'as' }), host, { isolation });
    if (!vm) return;
    const r = vm.requestHeaders(INFO, [[':path', '/productpage'], [':method', 'GET'], ['x-wasm-order', 'client']], true);
    assert.equal(r.status, 'continue');
    assert.deepEqual(get(r.headers, 'x-wasm-order'), ['client', 'as']);
    const resp = vm.responseHeaders(r.ctx, { code: 200 }, [[':status', '200']], false);
    assert.deepEqual(get(resp.headers, 'x-wasm-order'), ['as']);
    vm.streamDone(r.ctx);
    // the VM is reused: a second stream on the same VM
    const r2 = vm.requestHeaders(INFO, [[':path', '/'], [':method', 'GET']], true);
    assert.deepEqual(get(r2.headers, 'x-wasm-order'), ['as']);
    assert.ok(r2.ctx > r.ctx);
  });
}

test('Go header plugin (wasip1 c-shared, //go:wasmexport) declares ABI 0.2.1 and adds its header', async (t) => {
  const host = recorder();
  const vm = await vmFor(t, 'go-header', settings('hdr', { header: 'x-go', value: 'yes' }), host);
  if (!vm) return;
  const r = vm.requestHeaders(INFO, [[':path', '/'], [':method', 'GET']], true);
  assert.deepEqual(get(r.headers, 'x-go'), ['yes']);
  const resp = vm.responseHeaders(r.ctx, { code: 404 }, [[':status', '404']], true);
  assert.deepEqual(get(resp.headers, 'x-go'), ['yes']);
});

const BASIC = {
  basic_auth_rules: [
    { prefix: '/productpage', request_methods: ['GET', 'POST'], credentials: ['admin3:admin3', 'b2s6dGVzdA=='] },
    { exact: '/api/v1/products', request_methods: ['GET'], credentials: ['ok:test'] },
    { suffix: '.secret', request_methods: [], credentials: ['s:s'] },
  ],
};

test('basic-auth plugin: Istio basic_auth_rules (prefix/exact/suffix, methods, plain and base64 credentials), 401 via send_local_response', async (t) => {
  const host = recorder();
  const vm = await vmFor(t, 'as-basic-auth', settings('basic_auth', BASIC), host);
  if (!vm) return;
  const call = (path: string, method: string, auth?: string) => {
    const h: [string, string][] = [[':path', path], [':method', method]];
    if (auth) h.push(['authorization', auth]);
    const r = vm.requestHeaders(INFO, h, true);
    vm.streamDone(r.ctx);
    return r;
  };
  const b64 = (s: string) => `Basic ${Buffer.from(s).toString('base64')}`;
  assert.equal(call('/productpage', 'GET', 'Basic YWRtaW4zOmFkbWluMw==').status, 'continue');
  assert.equal(call('/productpage?x=1', 'GET', b64('ok:test')).status, 'continue', 'base64 credential in config');
  const none = call('/productpage', 'GET');
  assert.equal(none.status, 'reply');
  assert.equal(none.reply?.status, 401);
  assert.deepEqual(none.reply?.headers, [['www-authenticate', 'Basic realm=istio']]);
  assert.equal(call('/productpage', 'GET', b64('admin3:wrong')).reply?.status, 401);
  assert.equal(call('/productpage', 'DELETE').status, 'continue', 'method not in the rule');
  assert.equal(call('/api/v1/products', 'GET').reply?.status, 401);
  assert.equal(call('/api/v1/products/1', 'GET').status, 'continue', 'exact does not match a longer path');
  assert.equal(call('/x/y.secret', 'PUT').reply?.status, 401, 'suffix, empty methods = any');
  assert.equal(call('/x/y.secret', 'PUT', b64('s:s')).status, 'continue');
  assert.equal(call('/reviews', 'GET').status, 'continue');
});

test('stateful plugin: shared data (CAS), tick timer, metrics, shared queue, http_call pausing the stream, properties', async (t) => {
  const store = new SharedStore();
  const host = recorder(store);
  const cfg = { tick_ms: 10, cluster: 'outbound|8080||echo.default.svc.cluster.local', call_path: '/call' };
  const vm = await vmFor(t, 'go-stateful', settings('stateful', cfg), host);
  if (!vm) return;
  store.onQueueReady('vm-stateful', (token) => vm.queueReady(token));
  assert.ok(host.logs.some(([l, m]) => l === 'info' && m === 'stateful: configured'), 'proxy_log reaches the host log');

  // ticks: wait until the timer has fired a few times (shared data is host-side)
  const services = host.services;
  await waitFor(() => Number(Buffer.from(services.sharedGet('vm-stateful', 'stateful.ticks')?.value ?? []).toString() || 0) >= 3);

  const r = vm.requestHeaders(INFO, [[':path', '/plain'], [':method', 'GET'], ['x-request-id', 'rid-1']], true);
  assert.equal(r.status, 'continue');
  const resp = vm.responseHeaders(r.ctx, { code: 201 }, [[':status', '201']], false);
  assert.ok(Number(get(resp.headers, 'x-stateful-ticks')[0]) >= 3);
  assert.deepEqual(get(resp.headers, 'x-stateful-requests'), ['1']);
  assert.deepEqual(get(resp.headers, 'x-stateful-metric'), ['1']);
  assert.equal(get(resp.headers, 'x-stateful-props')[0], 'default.stateful;stateful;/productpage?u=1;GET;10.1.2.3:40000;201;40000;gw-1;!1;');
  vm.streamDone(r.ctx);
  assert.equal(host.metricValues.get('stateful_requests'), 1);
  await waitFor(() => (host.metricValues.get('stateful_ticks') ?? 0) >= 3);

  // the queue: every request enqueued its path; on_queue_ready drained it
  await waitFor(() => Buffer.from(services.sharedGet('vm-stateful', 'stateful.dequeued')?.value ?? []).toString() === '1');

  // http_call: the request pauses, the call goes to the named cluster, the answer resumes it
  const paused = vm.requestHeaders(INFO, [[':path', '/call'], [':method', 'GET']], true);
  assert.equal(paused.status, 'stop');
  const resumed = await vm.waitResume(paused.ctx, 10_000);
  assert.equal(resumed.kind, 'continue');
  assert.ok(resumed.kind === 'continue');
  assert.deepEqual(get(resumed.requestHeaders, 'x-call-status'), ['200']);
  assert.deepEqual(get(resumed.requestHeaders, 'x-call-body'), ['pong']);
  assert.equal(host.calls[0]?.cluster, cfg.cluster);
  assert.deepEqual(get(host.calls[0]?.headers, ':path'), ['/echo']);
});

test('http_call to a cluster the snapshot does not have answers BadArgument (the plugin sees the failure)', async (t) => {
  const host = recorder();
  const vm = await vmFor(t, 'go-stateful', settings('stateful', { cluster: 'outbound|1||nope', call_path: '/call' }), host);
  if (!vm) return;
  const r = vm.requestHeaders(INFO, [[':path', '/call'], [':method', 'GET']], true);
  assert.equal(r.status, 'continue');
  assert.deepEqual(get(r.headers, 'x-call-status'), ['failed-2']);
  assert.equal(host.calls.length, 0);
});

test('a trapping plugin fails its VM with a WasmVmError; the host survives and reports it', async (t) => {
  const host = recorder();
  const vm = await vmFor(t, 'go-misbehave', settings('m', { at: 'request_headers', do: 'trap', path: '/boom' }), host);
  if (!vm) return;
  assert.equal(vm.requestHeaders(INFO, [[':path', '/fine'], [':method', 'GET']], true).status, 'continue');
  assert.throws(() => vm.requestHeaders(INFO, [[':path', '/boom'], [':method', 'GET']], true), WasmVmError);
  assert.ok(vm.failed);
  assert.equal(host.failures.length, 1);
  assert.throws(() => vm.requestHeaders(INFO, [[':path', '/fine'], [':method', 'GET']], true), /VM failed/);
});

test('a wasm engine trap (call through a nil function) fails the VM', async (t) => {
  const host = recorder();
  const vm = await vmFor(t, 'go-misbehave', settings('m', { at: 'request_headers', do: 'unreachable' }), host);
  if (!vm) return;
  assert.throws(() => vm.requestHeaders(INFO, [[':path', '/'], [':method', 'GET']], true), WasmVmError);
});

for (const isolation of ['inline', 'worker'] as const) {
  test(`a plugin that loops forever is stopped after its call budget and its VM failed (${isolation})`, async (t) => {
    const host = recorder();
    const vm = await vmFor(t, 'go-misbehave', settings('m', { at: 'request_headers', do: 'loop' }), host, { callBudgetMs: 300, isolation });
    if (!vm) return;
    assert.throws(() => vm.requestHeaders(INFO, [[':path', '/'], [':method', 'GET']], true), /exceeded its 300 ms budget/);
    assert.ok(vm.failed);
    assert.deepEqual(host.failures.length, 1);
    // the event loop is free again: timers run
    await new Promise((r) => setTimeout(r, 1));
  });

  test(`a WASI sleep within the budget is slept, one past it fails the call as over budget (${isolation})`, async (t) => {
    const nap = await vmFor(t, 'go-misbehave', settings('m', { at: 'request_headers', do: 'nap' }), recorder(), { callBudgetMs: 300, isolation });
    if (!nap) return;
    assert.deepEqual(get(nap.requestHeaders(INFO, [[':path', '/']], true).headers, 'x-misbehave'), ['passed']);
    // time.Sleep(1 minute): inline VMs refuse the wait at once (wasm/engine.ts pollOneoff), workers are stopped after the budget
    const sleep = await vmFor(t, 'go-misbehave', settings('m', { at: 'request_headers', do: 'sleep' }), recorder(), { callBudgetMs: 300, isolation });
    assert.throws(() => sleep!.requestHeaders(INFO, [[':path', '/']], true), /exceeded its 300 ms budget/);
  });
}

test('a plugin that grows memory without bound hits the per-VM memory limit and fails', async (t) => {
  const host = recorder();
  const vm = await vmFor(t, 'go-misbehave', settings('m', { at: 'request_headers', do: 'grow' }, { memoryLimitBytes: 48 << 20 }), host);
  if (!vm) return;
  assert.throws(() => vm.requestHeaders(INFO, [[':path', '/'], [':method', 'GET']], true), WasmVmError);
  assert.ok(vm.memoryBytes <= 48 << 20);
});

test('proxy_on_configure returning false is a VM start failure', async (t) => {
  const bytes = pluginBytes(t, 'go-misbehave');
  if (!bytes) return;
  await assert.rejects(startVm(bytes, settings('m', { at: 'configure', do: 'reject' }), recorder()), /proxy_on_configure returned false/);
  await assert.rejects(startVm(bytes, settings('m', { at: 'configure', do: 'trap' }), recorder()), WasmVmError);
});

test('a module whose minimum memory is above the limit does not start', async (t) => {
  const bytes = pluginBytes(t, 'go-header');
  if (!bytes) return;
  await assert.rejects(startVm(bytes, settings('h', {}, { memoryLimitBytes: 1 << 20 }), recorder(), { isolation: 'inline' }), /above the limit/);
});

test('every import a module names exists at instantiation: unknown env calls answer Unimplemented', async () => {
  // A tiny module importing an unknown host call and a gRPC call; built with the binary format
  // here because no SDK emits an unknown import. It returns what the host answered.
  const mod = wasmModule([
    ['env', 'proxy_made_up_call'],
    ['env', 'proxy_grpc_call'],
  ]);
  const { Engine } = await import('../../wasm/engine.ts');
  const e = new Engine(new WebAssembly.Module(mod), settings('x', {}), recorder().services);
  assert.equal(e.abi, '0.2.1');
  const exports = (e as unknown as { instance: WebAssembly.Instance }).instance.exports;
  assert.equal((exports.call0 as () => number)(), 12);
  assert.equal((exports.call1 as () => number)(), 12);
});

test('ABI coverage: every host function is bound, the Unimplemented ones are listed', () => {
  const c = abiCoverage();
  assert.equal(c.implemented.length + c.unimplemented.length, HOST_FUNCTIONS.length);
  assert.ok(c.unimplemented.includes('proxy_grpc_call'));
  assert.ok(c.implemented.includes('proxy_http_call'));
});

test('header pairs round-trip in the ABI encoding', () => {
  const p: [string, string][] = [[':path', '/a'], ['x-ü', 'wert'], ['empty', '']];
  assert.deepEqual(decodePairs(encodePairs(p)), p);
  assert.throws(() => decodePairs(Uint8Array.of(5, 0, 0, 0)), RangeError);
});

test('limitMemory caps a defined memory maximum and refuses a larger minimum', () => {
  const m = wasmModule([], { min: 2 });
  const capped = new WebAssembly.Instance(new WebAssembly.Module(limitMemory(m, 4 * 65536)), { env: { proxy_made_up_call: () => 0 } });
  const mem = capped.exports.memory as WebAssembly.Memory;
  assert.equal(mem.grow(2), 2);
  assert.throws(() => mem.grow(1), RangeError);
  assert.throws(() => limitMemory(m, 65536), /above the limit/);
});

async function waitFor(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}

/**
 * A minimal proxy-wasm-shaped module: exports memory, proxy_abi_version_0_2_1, malloc, and
 * callN() calling import N with no arguments (imports typed () -> i32).
 */
function wasmModule(imports: [string, string][], mem: { min: number } = { min: 1 }): Uint8Array {
  const u = (n: number): number[] => {
    const out: number[] = [];
    do {
      let b = n & 0x7f;
      n >>>= 7;
      if (n) b |= 0x80;
      out.push(b);
    } while (n);
    return out;
  };
  const str = (s: string): number[] => [...u(s.length), ...Buffer.from(s)];
  const section = (id: number, body: number[]): number[] => [id, ...u(body.length), ...body];
  const vec = (items: number[][]): number[] => [...u(items.length), ...items.flat()];
  const nImp = imports.length;
  // types: 0 = () -> i32, 1 = () -> (), 2 = (i32) -> i32
  const types = vec([[0x60, 0, 1, 0x7f], [0x60, 0, 0], [0x60, 1, 0x7f, 1, 0x7f]]);
  const imps = vec(imports.map(([m, n]) => [...str(m), ...str(n), 0, 0]));
  const funcs = vec([[1], [2], ...imports.map(() => [0])]);
  const memory = vec([[0, ...u(mem.min)]]);
  const exps = vec([
    [...str('memory'), 2, 0],
    [...str('proxy_abi_version_0_2_1'), 0, ...u(nImp)],
    [...str('malloc'), 0, ...u(nImp + 1)],
    ...imports.map((_, i) => [...str(`call${i}`), 0, ...u(nImp + 2 + i)]),
  ]);
  const bodies = vec([
    [...u(2), 0, 0x0b],
    [...u(4), 0, 0x41, 0x10, 0x0b], // malloc: return 16
    ...imports.map((_, i) => {
      const b = [0, 0x10, ...u(i), 0x0b];
      return [...u(b.length), ...b];
    }),
  ]);
  return Uint8Array.from([
    0, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, types), ...(nImp ? section(2, imps) : []), ...section(3, funcs), ...section(5, memory), ...section(7, exps), ...section(10, bodies),
  ]);
}
