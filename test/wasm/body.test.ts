/**
 * Body and trailer callbacks through a real gateway, on HTTP/1.1 and h2, with a plugin built
 * from the AssemblyScript SDK (test/wasm-plugins/assemblyscript/body.ts): the request body is
 * buffered to its end (headers StopIteration, body StopIterationAndBuffer, then Continue),
 * rewritten or rejected; the response body rewritten (proxy_set_buffer_bytes) with the right
 * content-length; request trailers read, response trailers added; Envoy's 413/500 past the
 * buffer limit. Body callbacks that continue (the SDK default) leave the response streaming.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { request as h1request, type IncomingHttpHeaders } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';
import { startEcho, type Upstream } from '../helpers/upstream.ts';
import { bookinfoYaml, pluginPath, wasmPluginYaml, type PluginName } from '../helpers/wasm.ts';
import { WasmManager } from '../../wasm/plugins.ts';
import { ModuleCache } from '../../wasm/fetch.ts';

const BODY = `  pluginName: body
  pluginConfig: {reject: forbidden, find: productpage, replace: "PRODUCTPAGE (via wasm)"}`;

interface Answer {
  status: number;
  headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>;
  body: string;
  trailers: Record<string, string | string[] | undefined>;
}

interface Send {
  method?: string;
  body?: string | Buffer;
  headers?: Record<string, string>;
  trailers?: Record<string, string>;
}

type Client = (port: number, path: string, s?: Send) => Promise<Answer>;

const h1: Client = (port, path, s = {}) =>
  new Promise((resolve, reject) => {
    const chunked = s.trailers !== undefined;
    const headers: Record<string, string> = { ...s.headers, ...(chunked ? { 'transfer-encoding': 'chunked', trailer: Object.keys(s.trailers!).join(', ') } : {}) };
    if (s.body !== undefined && !chunked) headers['content-length'] = String(Buffer.byteLength(s.body));
    const req = h1request({ host: '127.0.0.1', port, path, method: s.method ?? 'GET', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString(), trailers: res.trailers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (s.body !== undefined) req.write(s.body);
    if (s.trailers) req.addTrailers(s.trailers);
    req.end();
  });

const h2: Client = (port, path, s = {}) =>
  new Promise((resolve, reject) => {
    const session = h2connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request({ ':path': path, ':method': s.method ?? 'GET', ...s.headers }, { endStream: s.body === undefined && !s.trailers, waitForTrailers: s.trailers !== undefined });
    let headers: Record<string, string | string[] | undefined> = {};
    let trailers: Record<string, string | string[] | undefined> = {};
    const chunks: Buffer[] = [];
    req.on('response', (h) => (headers = h));
    req.on('trailers', (t) => (trailers = t));
    req.on('wantTrailers', () => req.sendTrailers(s.trailers ?? {}));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      session.close();
      resolve({ status: Number(headers[':status']), headers, body: Buffer.concat(chunks).toString(), trailers });
    });
    req.on('error', reject);
    if (s.body !== undefined) req.end(s.body);
    else if (s.trailers) req.end();
  });

async function setup(t: TestContext, plugin: PluginName, spec: string, proto: 'HTTP/1.1' | 'h2'): Promise<{ port: number; app: Upstream } | undefined> {
  const file = pluginPath(t, plugin);
  if (!file) return undefined;
  const app = await startEcho(t, 'productpage', (req, res) => {
    if (req.url === '/x/trailers') {
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-up' });
      res.write('productpage ');
      res.addTrailers({ 'x-up': '1' });
      res.end('with trailers');
      return true;
    }
    if (req.url === '/x/big') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(Buffer.alloc(1536 * 1024, 'a'));
      return true;
    }
    return false;
  });
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'portico-wasm-body-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const wasm = new WasmManager({ cache: new ModuleCache(dir), retireMs: 50, log: process.env.DEBUG_WASM ? { info: console.error, warn: console.error, error: console.error } : undefined });
  t.after(() => wasm.close());
  // h2: an HTTP2 port speaks h2c with prior knowledge.
  const gw = bookinfoYaml(port, app.port).replace('protocol: HTTP}', proto === 'h2' ? 'protocol: HTTP2}' : 'protocol: HTTP}');
  await startGateway(t, gw + wasmPluginYaml('body', file, spec), { wasm });
  await Promise.all(wasm.handles().map((h) => h.loaded));
  return { port, app };
}

for (const [proto, client] of [['HTTP/1.1', h1], ['h2', h2]] as const) {
  test(`${proto}: the request body is buffered to its end, rewritten, and headers added from the body callback go upstream`, async (t) => {
    const s = await setup(t, 'as-body', BODY, proto);
    if (!s) return;
    // Two writes on HTTP/1.1 would be one chunk; the point is the buffer reaching the plugin at the end.
    const r = await client(s.port, '/productpage', { method: 'POST', body: 'upper:hello body' });
    assert.equal(r.status, 200, r.body);
    const seen = s.app.seen.at(-1)!;
    assert.equal(seen.body, 'UPPER:HELLO BODY');
    assert.equal(seen.headers['x-request-body-size'], '16');
    assert.equal(seen.headers['content-length'], '16');
    // The echo's JSON names "productpage"; the response body callback replaced every one.
    assert.match(r.body, /PRODUCTPAGE \(via wasm\)/);
    assert.doesNotMatch(r.body, /productpage/);
    assert.equal(r.headers['content-length'], String(Buffer.byteLength(r.body)));
  });

  test(`${proto}: a body the plugin rejects is answered 403 by proxy_send_local_response and never reaches the upstream`, async (t) => {
    const s = await setup(t, 'as-body', BODY, proto);
    if (!s) return;
    const r = await client(s.port, '/productpage', { method: 'POST', body: 'this is forbidden text' });
    assert.equal(r.status, 403);
    assert.equal(r.body, 'body rejected by wasm\n');
    assert.equal(s.app.seen.length, 0);
  });

  test(`${proto}: request trailers reach proxy_on_request_trailers; response trailers get the plugin's addition`, async (t) => {
    const s = await setup(t, 'as-body', BODY, proto);
    if (!s) return;
    const r = await client(s.port, '/productpage', { method: 'POST', body: 'some body', trailers: { 'x-checksum': 'abc123' } });
    assert.equal(r.status, 200, r.body);
    assert.equal(s.app.seen.at(-1)?.headers['x-trailer-checksum'], 'abc123');
    assert.equal(s.app.seen.at(-1)?.body, 'some body');

    const t2 = await client(s.port, '/x/trailers');
    assert.equal(t2.status, 200);
    assert.equal(t2.body, 'PRODUCTPAGE (via wasm) with trailers');
    assert.equal(t2.trailers['x-up'], '1');
    assert.equal(t2.trailers['x-wasm-trailer'], 'seen');
  });

  test(`${proto}: past the buffer limit a request is answered 413 and a response 500, as Envoy`, async (t) => {
    const s = await setup(t, 'as-body', BODY, proto);
    if (!s) return;
    const big = await client(s.port, '/productpage', { method: 'POST', body: Buffer.alloc(1100 * 1024, 'b') });
    assert.equal(big.status, 413);
    assert.equal(s.app.seen.length, 0);
    const resp = await client(s.port, '/x/big');
    assert.equal(resp.status, 500);
  });
}

test('body callbacks that continue (the SDK default) leave the response streaming: headers before the upstream ends its body', async (t) => {
  const file = pluginPath(t, 'as-header');
  if (!file) return;
  let release: () => void = () => undefined;
  const app = await startEcho(t, 'productpage', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('first ');
    release = () => res.end('last');
    return true;
  });
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'portico-wasm-body-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const wasm = new WasmManager({ cache: new ModuleCache(dir), retireMs: 50 });
  t.after(() => wasm.close());
  await startGateway(t, bookinfoYaml(port, app.port) + wasmPluginYaml('hdr', file, '  pluginName: add_header\n  pluginConfig: {header: x-h, value: "1"}'), { wasm });
  await Promise.all(wasm.handles().map((h) => h.loaded));
  const body = await new Promise<string>((resolve, reject) => {
    h1request({ host: '127.0.0.1', port, path: '/productpage' }, (res) => {
      assert.equal(res.headers['x-h'], '1');
      // Only now does the upstream finish: a held response would never get here.
      release();
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve(text));
    })
      .on('error', reject)
      .end();
  });
  assert.equal(body, 'first last');
});
