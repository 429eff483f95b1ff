/**
 * The web dashboard in real headless Chromium (playwright-core + Debian's chromium) over a real
 * Bookinfo mesh: the page loads with no console errors, draws the Bookinfo graph after traffic,
 * shows live route hits and upstream health, opens a trace as a waterfall from the list and from
 * the slow-requests link, renders hostile text as text, and says "telemetry is off" without it.
 * Screenshots go to test-results/dashboard/ (git-ignored).
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { request } from 'undici';
import { launchChromium } from '../helpers/browser.ts';
import { startBookinfoMesh } from './dashboard-bookinfo.ts';

const SHOTS = join(new URL('../..', import.meta.url).pathname, 'test-results', 'dashboard');
mkdirSync(SHOTS, { recursive: true });

async function traffic(port: number, n: number, path = '/productpage'): Promise<void> {
  for (let i = 0; i < n; i++) {
    const res = await request(`http://127.0.0.1:${port}${path}`, { headers: { host: 'bookinfo.example.com' } });
    await res.body.dump();
  }
}

/** Sends one GET with the request target exactly as given; resolves to the status line. */
function rawGet(port: number, target: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1', () => sock.write(`GET ${target} HTTP/1.1\r\nhost: bookinfo.example.com\r\nconnection: close\r\n\r\n`));
    let got = '';
    sock.on('data', (c: Buffer) => (got += c.toString('latin1')));
    sock.on('end', () => resolve(got.split('\r\n')[0] ?? ''));
    sock.on('error', reject);
  });
}

/** Reads attributes of every element matching `selector` (no DOM types needed on this side). */
async function attrs<T>(page: Page, selector: string, pick: (get: (name: string) => string) => T): Promise<T[]> {
  const out: T[] = [];
  for (const el of await page.locator(selector).all()) {
    const values = new Map<string, string>();
    for (const name of ['data-source', 'data-target', 'data-hits', 'style']) values.set(name, (await el.getAttribute(name)) ?? '');
    out.push(pick((name) => values.get(name) ?? ''));
  }
  return out;
}

/** A page that records console errors and uncaught exceptions. */
async function openDashboard(browser: Browser, url: string): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') errors.push(`console.${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  await page.goto(url);
  await page.waitForFunction("Number(document.body.dataset.loaded || '0') >= 1", undefined, { timeout: 10_000 });
  return { page, errors };
}

test('dashboard in Chromium: Bookinfo graph, live route hits, upstream health, trace waterfall, no console errors', async (t) => {
  const browser = await launchChromium(t);
  if (!browser) return;
  const mesh = await startBookinfoMesh(t);
  await traffic(mesh.edgePort, 12);
  await traffic(mesh.edgePort, 2, '/nowhere'); // 404 NR: answered by the gateway, not an edge
  // Hostile text in a span's URL: must show as text, never become markup.
  // (a raw socket: HTTP clients would percent-encode it).
  const head = await rawGet(mesh.edgePort, '/productpage?q=<img/src=x/onerror=window.__pwned=1>');
  assert.match(head, /^HTTP\/1\.1 200 /);

  const { page, errors } = await openDashboard(browser, `http://127.0.0.1:${mesh.admin.port()}/dashboard`);

  // 1. Service graph: who calls whom, each edge labelled.
  const edges = await attrs(page, 'svg g.edge', (get) => `${get('data-source')}→${get('data-target')}`);
  for (const e of ['istio-ingressgateway→productpage', 'productpage→details', 'productpage→reviews', 'reviews→ratings']) assert.ok(edges.includes(e), `graph edge ${e} in ${edges.join(', ')}`);
  const label = await page.locator('g.edge-tag[data-source="istio-ingressgateway"][data-target="productpage"]').textContent();
  assert.match(label ?? '', /rps · p99 [\d.]+ (ms|s)/);
  assert.match(label ?? '', /0% 5xx/);
  assert.equal(await page.locator('svg g.node').count(), 5);

  // 2. Routes: the rule as written, with hits.
  const ppRule = page.locator('tr.route[data-vs="default/bookinfo"][data-index="0"]');
  assert.equal(await ppRule.getAttribute('data-hits'), '13');
  const ppText = (await ppRule.textContent()) ?? '';
  assert.match(ppText, /uri = \/productpage/);
  assert.match(ppText, /productpage\.default\.svc\.cluster\.local:9080/);
  assert.match(ppText, /bookinfo-dashboard\.yaml:\d+/);
  const splitHits = await attrs(page, 'tr.route[data-vs="default/reviews"][data-index="1"]', (get) => Number(get('data-hits')));
  assert.ok(splitHits.some((h) => h === 13), `reviews split rule hits per proxy: ${splitHits}`);

  // 3. Upstream health.
  const v3 = page.locator('tr.cluster[data-cluster="outbound|9080|v3|reviews.default.svc.cluster.local"]').first();
  assert.match((await v3.textContent()) ?? '', /healthy/);
  assert.equal(await page.locator('.ep[data-health="EJECTED"]').count(), 0);

  // 4. Traces: the slowest is highlighted; clicking a trace opens its waterfall.
  assert.equal(await page.locator('.tr-row').count(), 15, '13 page loads and 2 unrouted requests, all sampled');
  assert.equal(await page.locator('.tr-row.slowest').count(), 1);
  const first = page.locator('.tr-row').first();
  const firstId = await first.getAttribute('data-trace');
  await first.click();
  await page.waitForSelector('.wf-bar');
  const bars = await page.locator('.wf-bar').count();
  assert.ok(bars >= 2, `waterfall spans: ${bars}`);
  assert.match((await page.locator('.wf-head').textContent()) ?? '', new RegExp(firstId!));
  const services = await page.locator('.wf-label .svc').allTextContents();
  assert.equal(services[0], 'istio-ingressgateway.istio-system');
  assert.ok(services.includes('productpage.default'));
  const lefts = await attrs(page, '.wf-bar', (get) => parseFloat(/left:\s*([\d.]+)%/.exec(get('style'))?.[1] ?? 'NaN'));
  assert.equal(lefts[0], 0, 'the root span starts the waterfall');
  assert.ok(lefts.slice(1).every((l) => l > 0 && l < 100), `child bars are positioned by start time: ${lefts}`);
  assert.equal(await page.locator('.tr-row.selected').getAttribute('data-trace'), firstId);

  // The slow-requests list links to the trace.
  const slowLink = page.locator('.slow a').first();
  const slowId = await slowLink.getAttribute('data-trace');
  assert.equal(slowId, await page.locator('.tr-row.slowest').getAttribute('data-trace'));
  await slowLink.click();
  await page.locator('.wf-head', { hasText: slowId! }).waitFor();
  assert.equal(new URL(page.url()).hash, `#trace=${slowId}`);

  // Hostile text stayed text.
  assert.equal(await page.evaluate('typeof window.__pwned'), 'undefined');
  assert.equal(await page.locator('main img').count(), 0);
  const reqs = await page.locator('.tr-row .req').allTextContents();
  assert.ok(reqs.some((r) => r.includes('<img/src=x/onerror=')), `the hostile URL is listed as text: ${reqs.slice(0, 3).join(' | ')}`);

  // Live: new traffic shows up on the next poll.
  await traffic(mesh.edgePort, 3);
  await page.locator('tr.route[data-vs="default/bookinfo"][data-index="0"][data-hits="16"]').waitFor({ timeout: 10_000 });

  await page.screenshot({ path: join(SHOTS, 'dashboard-bookinfo.png'), fullPage: true });
  process.stderr.write(`dashboard screenshot: ${join(SHOTS, 'dashboard-bookinfo.png')}\n`);
  assert.deepEqual(errors, []);
});

test('dashboard in Chromium with telemetry off: sections say so, routes and upstreams still render', async (t) => {
  const browser = await launchChromium(t);
  if (!browser) return;
  const mesh = await startBookinfoMesh(t, { telemetry: false });
  await traffic(mesh.edgePort, 2);
  const { page, errors } = await openDashboard(browser, `http://127.0.0.1:${mesh.admin.port()}/dashboard`);
  assert.match((await page.locator('#graph').textContent()) ?? '', /telemetry is off/);
  assert.match((await page.locator('#traces').textContent()) ?? '', /telemetry is off/);
  assert.equal(await page.locator('tr.route[data-vs="default/bookinfo"][data-index="0"]').getAttribute('data-hits'), '2');
  assert.ok((await page.locator('tr.cluster').count()) > 0);
  await page.screenshot({ path: join(SHOTS, 'dashboard-telemetry-off.png'), fullPage: true });
  assert.deepEqual(errors, []);
});
