/**
 * Threat: ReDoS. A VirtualService header regex with nested alternation, `(a|aa)+`, fed `a…ab`,
 * makes a backtracking engine (JavaScript's RegExp) take exponential time: 39 `a`s stalled a
 * worker for 8.9 s, delaying every other request on it. Istio/Envoy use RE2, which matches in time
 * linear in the input; so must Portico.
 *
 * The gateway runs as a real `portico gateway` process, so that a stalled worker cannot stall the
 * test itself: with RegExp the pathological requests below never finish (64 `a`s is centuries of
 * backtracking) and the test fails at its timeout; with RE2 every request is answered, and a
 * request sent after the hostile ones on the same worker is answered too.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { request } from 'undici';
import { freePort } from '../helpers/net.ts';
import { startEcho } from '../helpers/upstream.ts';

const ROOT = new URL('../..', import.meta.url).pathname;

function config(port: number, upstream: number): string {
  return `
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
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app}
spec:
  hosts: ["*"]
  gateways: [edge]
  http:
  - match: [{headers: {x-user: {regex: "(a|aa)+"}}}]
    headers: {response: {set: {x-route: evil}}}
    route: [{destination: {host: up}}]
  - headers: {response: {set: {x-route: default}}}
    route: [{destination: {host: up}}]
`;
}

async function spawnGateway(t: TestContext, dir: string): Promise<void> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bin/portico.ts', 'gateway', '--config', dir, '--admin-port', '-1', '--metrics-port', '-1'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c));
  child.stderr!.on('data', (c: Buffer) => (out += c));
  t.after(() => child.kill('SIGKILL'));
  // If this file is killed at its timeout (a stalled gateway never answers), take the gateway along.
  process.once('exit', () => child.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    const onData = (): void => {
      if (out.includes('gateway ready')) resolve();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`gateway exited with ${code}:\n${out}`)));
  });
}

/** Sends one request on its own connection and resolves once the bytes are handed to the kernel. */
function sendRaw(port: number, headers: string): Promise<{ response: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let data = '';
    const response = new Promise<string>((res, rej) => {
      sock.on('data', (c: Buffer) => {
        data += c.toString('latin1');
        if (/\r\n\r\n/.test(data)) {
          sock.destroy();
          res(data);
        }
      });
      sock.on('error', rej);
    });
    sock.once('error', reject);
    sock.once('connect', () => {
      sock.write(`GET /probe HTTP/1.1\r\nhost: app\r\n${headers}connection: close\r\n\r\n`, () => resolve({ response }));
    });
  });
}

test('a ReDoS header regex answers, and does not hold up the requests behind it', { timeout: 90_000 }, async (t) => {
  const up = await startEcho(t, 'up');
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'portico-redos-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'config.yaml'), config(port, up.port));
  await spawnGateway(t, dir);
  const base = `http://127.0.0.1:${port}`;

  // The case: 39 a's and a b does not match (full match), 40 a's does.
  const miss = await request(`${base}/probe`, { headers: { 'x-user': `${'a'.repeat(39)}b` } });
  await miss.body.dump();
  assert.equal(miss.statusCode, 200);
  assert.equal(miss.headers['x-route'], 'default');
  const hit = await request(`${base}/probe`, { headers: { 'x-user': 'a'.repeat(40) } });
  await hit.body.dump();
  assert.equal(hit.headers['x-route'], 'evil');

  // Hostile requests first, each fully written before the next goes out; then an ordinary request
  // on another connection to the same (only) worker. A backtracking engine is still inside the
  // first hostile match when the ordinary request arrives, and never gets to it.
  const hostile = [];
  for (const n of [64, 200, 4000]) hostile.push(await sendRaw(port, `x-user: ${'a'.repeat(n)}b\r\n`));
  const ordinary = await request(`${base}/probe`, { headers: { 'x-user': 'nobody' } });
  await ordinary.body.dump();
  assert.equal(ordinary.statusCode, 200);
  assert.equal(ordinary.headers['x-route'], 'default');
  for (const h of hostile) {
    const head = await h.response;
    assert.match(head, /^HTTP\/1\.1 200 /);
    assert.match(head, /\r\nx-route: default\r\n/i);
  }
});
