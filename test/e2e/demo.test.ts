/**
 * `portico demo` (what `npm start` runs), as a real process on its real ports: Bookinfo over
 * HTTPS with Istio's reviews routing through the mesh listener, httpbin by SNI, the HTTP
 * redirect, and a clear message when a second demo finds the ports taken.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Agent, request } from 'undici';

const ROOT = new URL('../..', import.meta.url).pathname;

function startDemo(certsDir: string): { child: ChildProcess; output: () => string; ready: Promise<void>; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bin/portico.ts', 'demo', '--certs-dir', certsDir, '--admin-port', '0', '--metrics-port', '0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c));
  child.stderr!.on('data', (c: Buffer) => (out += c));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => {
      if (out.includes('Portico demo is running')) {
        clearInterval(timer);
        resolve();
      }
    }, 50);
    void exited.then((code) => {
      clearInterval(timer);
      reject(new Error(`demo exited with ${code}:\n${out}`));
    });
  });
  ready.catch(() => undefined);
  return { child, output: () => out, ready, exited };
}

test('npm start: Bookinfo and httpbin over HTTPS, jason routed to reviews v2, ports-taken message, clean Ctrl-C', async (t) => {
  const certsDir = mkdtempSync(join(tmpdir(), 'portico-demo-'));
  t.after(() => rmSync(certsDir, { recursive: true, force: true }));
  const demo = startDemo(certsDir);
  t.after(() => demo.child.kill('SIGKILL'));
  await demo.ready;

  const ca = readFileSync(join(certsDir, 'example.com.crt'));
  const localhost = new Agent({ connect: { ca, servername: 'localhost' } });
  const httpbin = new Agent({ connect: { ca, servername: 'httpbin.example.com' } });
  t.after(() => Promise.all([localhost.close(), httpbin.close()]));

  const anon = await request('https://127.0.0.1:8443/productpage', { dispatcher: localhost, headers: { host: 'localhost:8443' } });
  const anonPage = await anon.body.text();
  assert.equal(anon.statusCode, 200);
  assert.match(anonPage, /The Comedy of Errors/);
  assert.doesNotMatch(anonPage, /glyphicon-star/, 'anonymous users get reviews v1 (no stars)');

  const login = await request('https://127.0.0.1:8443/login', {
    method: 'POST',
    dispatcher: localhost,
    headers: { host: 'localhost:8443', 'content-type': 'application/x-www-form-urlencoded' },
    body: 'username=jason&passwd=jason',
  });
  await login.body.dump();
  const cookie = String(login.headers['set-cookie']).split(';')[0]!;
  const jason = await request('https://127.0.0.1:8443/productpage', { dispatcher: localhost, headers: { host: 'localhost:8443', cookie } });
  const jasonPage = await jason.body.text();
  assert.match(jasonPage, /color="black"/, 'jason gets reviews v2 (black stars) via the mesh VirtualService');

  const teapot = await request('https://127.0.0.1:8443/status/418', { dispatcher: httpbin, headers: { host: 'httpbin.example.com' } });
  await teapot.body.dump();
  assert.equal(teapot.statusCode, 418);

  const redirect = await request('http://127.0.0.1:8080/productpage', { headers: { host: 'localhost:8080' } });
  await redirect.body.dump();
  assert.equal(redirect.statusCode, 301);
  assert.equal(redirect.headers.location, 'https://localhost:8443/productpage');

  const second = startDemo(certsDir);
  t.after(() => second.child.kill('SIGKILL'));
  const code = await second.exited;
  assert.notEqual(code, 0);
  assert.match(second.output(), /port \d+ is already in use/);

  demo.child.kill('SIGINT');
  assert.equal(await demo.exited, 0, `demo did not stop cleanly:\n${demo.output()}`);
});
