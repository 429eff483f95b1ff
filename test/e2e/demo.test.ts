/**
 * `portico demo` (what `npm start` runs), as a real process on its real ports: Bookinfo over
 * HTTPS with Istio's reviews routing through the mesh listener, httpbin by SNI, the HTTP
 * redirect, and a clear message when a second demo finds the ports taken.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Agent, request } from 'undici';
import { fillIdpLogin, launchChromium, screenshotDir } from '../helpers/browser.ts';

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

/** Linux: every TCP socket that process `pid` or its descendants listen on, as `addr:port` (hex addresses decoded). */
function listeningSockets(pid: number): string[] {
  const pids = [pid];
  for (let i = 0; i < pids.length; i++) {
    for (const task of readdirSync(`/proc/${pids[i]}/task`)) {
      const children = readFileSync(`/proc/${pids[i]}/task/${task}/children`, 'utf8').trim();
      if (children) pids.push(...children.split(/\s+/).map(Number));
    }
  }
  const inodes = new Set<string>();
  for (const p of pids) {
    for (const fd of readdirSync(`/proc/${p}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${p}/fd/${fd}`));
        if (m) inodes.add(m[1]!);
      } catch {
        // closed meanwhile
      }
    }
  }
  const out: string[] = [];
  for (const [file, v6] of [['/proc/net/tcp', false], ['/proc/net/tcp6', true]] as const) {
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A' || !inodes.has(f[9]!)) continue; // 0A = LISTEN
      const [addrHex, portHex] = f[1]!.split(':') as [string, string];
      const words = addrHex.match(/.{8}/g)!.map((w) => w.match(/../g)!.reverse().join(''));
      const addr = v6 ? (words.join('') === '00000000000000000000000000000001' ? '::1' : words.join('') === '0'.repeat(32) ? '::' : `[${words.join('')}]`) : words[0]!.match(/../g)!.map((b) => parseInt(b, 16)).join('.');
      out.push(`${addr}:${parseInt(portHex, 16)}`);
    }
  }
  return out;
}

test('npm start: Bookinfo behind the login over HTTPS, httpbin by SNI, HTTP redirect, ports-taken message, clean Ctrl-C', async (t) => {
  const certsDir = mkdtempSync(join(tmpdir(), 'portico-demo-'));
  t.after(() => rmSync(certsDir, { recursive: true, force: true }));
  const demo = startDemo(certsDir);
  t.after(() => demo.child.kill('SIGKILL'));
  await demo.ready;

  // The demo's users have public passwords: nothing it (or the Dex it runs) listens on may be
  // reachable from another machine.
  if (existsSync('/proc/net/tcp')) {
    const sockets = listeningSockets(demo.child.pid!);
    for (const want of [8080, 8443]) assert.ok(sockets.some((s) => s.endsWith(`:${want}`)), `demo listens on ${want}: ${sockets.join(', ')}`);
    if (/dex \(/.test(demo.output())) assert.ok(sockets.includes('127.0.0.1:5556'), `real Dex on loopback: ${sockets.join(', ')}`);
    const exposed = sockets.filter((s) => !s.startsWith('127.') && !s.startsWith('::1:'));
    assert.deepEqual(exposed, [], 'every demo listener is bound to loopback');
  }

  const ca = readFileSync(join(certsDir, 'example.com.crt'));
  const localhost = new Agent({ connect: { ca, servername: 'localhost' } });
  const httpbin = new Agent({ connect: { ca, servername: 'httpbin.example.com' } });
  t.after(() => Promise.all([localhost.close(), httpbin.close()]));

  // Bookinfo sits behind the login: browsers are sent to the IdP (through the gateway's /dex
  // route), scripts get 401.
  const anon = await request('https://127.0.0.1:8443/productpage', { dispatcher: localhost, headers: { host: 'localhost:8443', accept: 'text/html' } });
  await anon.body.dump();
  assert.equal(anon.statusCode, 302);
  assert.match(String(anon.headers.location), /^https:\/\/localhost:8443\/dex\/auth\?/);
  const api = await request('https://127.0.0.1:8443/api/v1/products', { dispatcher: localhost, headers: { host: 'localhost:8443', accept: 'application/json' } });
  await api.body.dump();
  assert.equal(api.statusCode, 401);
  const discovery = await request('https://127.0.0.1:8443/dex/.well-known/openid-configuration', { dispatcher: localhost, headers: { host: 'localhost:8443' } });
  assert.equal(discovery.statusCode, 200, 'the IdP is reachable through the gateway without a session');
  await discovery.body.dump();

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
  assert.match(second.output(), /port \d+ (of \S+ )?is already in use/);

  demo.child.kill('SIGINT');
  assert.equal(await demo.exited, 0, `demo did not stop cleanly:\n${demo.output()}`);
});

test('npm start in Chromium: log in as jason through the IdP, reviews v2 (black stars), sign out', async (t) => {
  const browser = await launchChromium(t);
  if (!browser) return;
  const certsDir = mkdtempSync(join(tmpdir(), 'portico-demo-browser-'));
  t.after(() => rmSync(certsDir, { recursive: true, force: true }));
  const demo = startDemo(certsDir);
  t.after(() => demo.child.kill('SIGKILL'));
  await demo.ready;

  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto('https://localhost:8443/productpage');
  await page.waitForURL(/\/dex\/auth/);
  await fillIdpLogin(page, 'jason@example.com', 'password');
  await page.waitForURL('https://localhost:8443/productpage');
  assert.equal(await page.locator('#user').textContent(), 'jason');
  const html = await page.content();
  assert.match(html, /The Comedy of Errors/);
  assert.match(html, /color="black"/, 'jason is routed to reviews v2 by Istio\'s VirtualService');
  await page.screenshot({ path: join(screenshotDir('demo'), 'productpage-jason.png'), fullPage: true });

  // One page load is one trace: the gateway, the authservice's check and the mesh hops.
  const adminPort = /admin\s+http:\/\/127\.0\.0\.1:(\d+)\//.exec(demo.output())?.[1];
  assert.ok(adminPort, 'the demo prints its admin URL');
  const deadline = Date.now() + 5000;
  let services: string[] = [];
  let trace: { spans: { processID: string; references: unknown[] }[]; processes: Record<string, { serviceName: string }> } | undefined;
  while (Date.now() < deadline) {
    services = ((await (await fetch(`http://127.0.0.1:${adminPort}/api/services`)).json()) as { data: string[] }).data;
    if (services.includes('authservice.istio-system')) {
      const traces = (await (await fetch(`http://127.0.0.1:${adminPort}/api/traces?service=authservice.istio-system&limit=20`)).json()) as { data: NonNullable<typeof trace>[] };
      trace = traces.data.find((t) => new Set(Object.values(t.processes).map((p) => p.serviceName)).size >= 3);
      if (trace) break;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(services.includes('authservice.istio-system'), `authservice spans reach the trace store (services: ${services.join(', ')})`);
  assert.ok(trace, 'a trace joins the gateway, the authservice check and the mesh');
  const names = new Set(Object.values(trace.processes).map((p) => p.serviceName));
  assert.ok(names.has('istio-ingressgateway.istio-system'));

  await page.locator('#signout').click();
  // After logout the app is protected again: the next visit goes back to the IdP.
  await page.waitForURL(/\/dex\/auth/);
  const cookies = await context.cookies('https://localhost:8443');
  assert.equal(cookies.find((c) => c.name.includes('session'))?.value ?? '', '', 'the session cookie is cleared');
  assert.deepEqual(errors, []);
  demo.child.kill('SIGINT');
  assert.equal(await demo.exited, 0);
});
