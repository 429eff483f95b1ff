/**
 * HTTP/2 and gRPC end to end: h2c from the client, h2c to a GRPC-protocol upstream, trailers
 * (grpc-status) relayed, gRPC retries on `unavailable`, and HTTP/1.1 clients reaching an HTTP/2
 * upstream through the gateway.
 */
import assert from 'node:assert/strict';
import { connect, createServer, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { test, type TestContext } from 'node:test';
import { request } from 'undici';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';

/** A gRPC-shaped h2c server: answers with a length-prefixed message and grpc-status trailers. */
async function startGrpcUpstream(t: TestContext, behave: (n: number, headers: IncomingHttpHeaders, stream: ServerHttp2Stream) => void): Promise<{ port: number; calls: () => number }> {
  let n = 0;
  const server = createServer();
  const sessions = new Set<import('node:http2').ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.once('close', () => sessions.delete(s));
  });
  server.on('stream', (stream, headers) => {
    n++;
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => behave(n, headers, stream));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sessions) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as { port: number }).port, calls: () => n };
}

function grpcFrame(payload: string): Buffer {
  const body = Buffer.from(payload);
  const out = Buffer.alloc(5 + body.length);
  out.writeUInt32BE(body.length, 1);
  body.copy(out, 5);
  return out;
}

function yaml(port: number, upstream: number, http = ''): string {
  return `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: grpc-gw}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ${port}, name: grpc, protocol: GRPC}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: greeter}
spec:
  hosts: ["*"]
  gateways: [grpc-gw]
  http:
  - match: [{uri: {prefix: /helloworld.Greeter/}}]
${http || '    route: [{destination: {host: greeter.default.svc.cluster.local}}]'}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: greeter}
spec:
  hosts: [greeter.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 50051, name: grpc, protocol: GRPC}]
  endpoints: [{address: 127.0.0.1, ports: {grpc: ${upstream}}}]
`;
}

async function unary(port: number, path: string): Promise<{ status: number; headers: IncomingHttpHeaders; trailers: IncomingHttpHeaders; body: Buffer }> {
  const session = connect(`http://127.0.0.1:${port}`);
  try {
    return await new Promise((resolve, reject) => {
      const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
      let headers: IncomingHttpHeaders = {};
      let trailers: IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      stream.on('response', (h) => (headers = h));
      stream.on('trailers', (h) => (trailers = h));
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => resolve({ status: Number(headers[':status']), headers, trailers, body: Buffer.concat(chunks) }));
      stream.on('error', reject);
      stream.end(grpcFrame('world'));
    });
  } finally {
    session.close();
  }
}

test('gRPC over h2c end to end: message and grpc-status trailers relayed', async (t) => {
  const up = await startGrpcUpstream(t, (_n, headers, stream) => {
    assert.equal(headers['content-type'], 'application/grpc');
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'OK' }));
    stream.end(grpcFrame('hello world'));
  });
  const port = await freePort();
  await startGateway(t, yaml(port, up.port));
  const r = await unary(port, '/helloworld.Greeter/SayHello');
  assert.equal(r.status, 200);
  assert.equal(r.body.subarray(5).toString(), 'hello world');
  assert.equal(r.trailers['grpc-status'], '0');
  assert.equal(r.trailers['grpc-message'], 'OK');
});

test('gRPC retries on unavailable (trailers-only 14) when retryOn names it', async (t) => {
  const up = await startGrpcUpstream(t, (n, _h, stream) => {
    if (n === 1) {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14', 'grpc-message': 'try again' }, { endStream: true });
      return;
    }
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(grpcFrame('second time lucky'));
  });
  const port = await freePort();
  await startGateway(t, yaml(port, up.port, `    route: [{destination: {host: greeter.default.svc.cluster.local}}]\n    retries: {attempts: 2, retryOn: unavailable}`));
  const r = await unary(port, '/helloworld.Greeter/SayHello');
  assert.equal(r.trailers['grpc-status'], '0');
  assert.equal(r.body.subarray(5).toString(), 'second time lucky');
  assert.equal(up.calls(), 2);
});

test('gateway-made errors to gRPC clients carry grpc-status (no upstream → UNAVAILABLE)', async (t) => {
  const dead = await freePort();
  const port = await freePort();
  await startGateway(t, yaml(port, dead));
  const r = await unary(port, '/helloworld.Greeter/SayHello');
  assert.equal(r.status, 200);
  assert.equal(r.headers['grpc-status'], '14');
});

test('an HTTP/1.1 client reaches an HTTP2 upstream through the gateway', async (t) => {
  const up = await startGrpcUpstream(t, (_n, headers, stream) => {
    stream.respond({ ':status': 200, 'content-type': 'text/plain' });
    stream.end(`over h2 for ${headers[':path']}`);
  });
  const port = await freePort();
  const cfg = yaml(port, up.port)
    .replace('name: grpc, protocol: GRPC}\n    hosts', 'name: http, protocol: HTTP}\n    hosts')
    .replace('prefix: /helloworld.Greeter/', 'prefix: /')
    .replace('name: grpc, protocol: GRPC}]', 'name: http2, protocol: HTTP2}]')
    .replace('{grpc: ', '{http2: ');
  await startGateway(t, cfg);
  const res = await request(`http://127.0.0.1:${port}/x`);
  assert.equal(res.statusCode, 200);
  assert.equal(await res.body.text(), 'over h2 for /x');
});
