import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  DETAILS_UNAVAILABLE,
  RATINGS_UNAVAILABLE,
  REVIEWS_UNAVAILABLE,
  startDetails,
  startProductpage,
  startRatings,
  startReviews,
} from '../../demo/bookinfo/index.ts';
import { startDemoUpstreams } from '../../demo/upstreams.ts';

type After = { after(fn: () => Promise<void> | void): void };

/** A stub server that records every request and answers with `reply`. */
async function stub(
  t: After,
  reply: (req: IncomingMessage, res: ServerResponse) => void | Promise<void>,
): Promise<{ url: string; seen: { method: string; url: string; headers: IncomingHttpHeaders }[] }> {
  const seen: { method: string; url: string; headers: IncomingHttpHeaders }[] = [];
  const server = createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    void reply(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

function json(res: ServerResponse, body: unknown, status = 200): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** A port nothing listens on (bound then released). */
async function deadUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

async function page(url: string, headers: Record<string, string> = {}): Promise<string> {
  const r = await fetch(`${url}/productpage`, { headers });
  assert.equal(r.status, 200);
  return r.text();
}

const fullStars = (html: string): number => (html.match(/glyphicon-star">/g) ?? []).length;

test('productpage renders details and reviews from real services (reviews v1: no stars)', async (t) => {
  const demo = await startDemoUpstreams({ ports: 'ephemeral' });
  t.after(() => demo.close());
  const html = await page(demo.urls.productpage);
  assert.match(html, /<title>Simple Bookstore App<\/title>/);
  assert.match(html, /The Comedy of Errors/);
  assert.match(html, /<th>Publisher:<\/th><td>PublisherA<\/td>/);
  assert.match(html, /<th>ISBN-13:<\/th><td>123-1234567890<\/td>/);
  assert.match(html, /An extremely entertaining play by Shakespeare/);
  assert.match(html, /<small>Reviewer2<\/small>/);
  assert.match(html, /reviews-v1/);
  assert.equal(fullStars(html), 0);
  assert.doesNotMatch(html, /<font color=/);
  assert.doesNotMatch(html, /Sorry/);
  assert.match(html, /href="\/login">Sign in/);

  const details = (await (await fetch(`${demo.urls.details}/details/0`)).json()) as Record<string, unknown>;
  assert.deepEqual(details, {
    id: 0,
    author: 'William Shakespeare',
    year: 1595,
    type: 'paperback',
    pages: 200,
    publisher: 'PublisherA',
    language: 'English',
    'ISBN-10': '1234567890',
    'ISBN-13': '123-1234567890',
  });
  assert.deepEqual(await (await fetch(`${demo.urls.ratings}/ratings/0`)).json(), {
    id: 0,
    ratings: { Reviewer1: 5, Reviewer2: 4 },
  });
});

test('reviews v2 shows black stars and v3 red stars on productpage', async (t) => {
  const demo = await startDemoUpstreams({ ports: 'ephemeral' });
  t.after(() => demo.close());
  for (const [version, color] of [
    ['reviewsV2', 'black'],
    ['reviewsV3', 'red'],
  ] as const) {
    const pp = await startProductpage({
      detailsUrl: demo.urls.details,
      reviewsUrl: demo.urls[version],
      httpProxy: null,
    });
    t.after(() => pp.close());
    const html = await page(pp.url);
    assert.equal(fullStars(html), 9, `${version}: 5 + 4 stars`);
    assert.equal((html.match(new RegExp(`<font color="${color}"`, 'g')) ?? []).length, 2, version);
    assert.doesNotMatch(html, new RegExp(`<font color="${color === 'red' ? 'black' : 'red'}"`));
    const reviews = (await (await fetch(`${demo.urls[version]}/reviews/0`)).json()) as {
      reviews: { rating: unknown }[];
    };
    assert.deepEqual(reviews.reviews[0]!.rating, { stars: 5, color });
  }
  const v1 = (await (await fetch(`${demo.urls.reviewsV1}/reviews/0`)).json()) as { reviews: object[] };
  assert.ok(v1.reviews.every((r) => !('rating' in r)));
});

test('ratings down: reviews v2 answers with the rating error and productpage shows it', async (t) => {
  const details = await startDetails();
  t.after(() => details.close());
  const reviews = await startReviews({ version: 'v2', ratingsUrl: await deadUrl(), httpProxy: null });
  t.after(() => reviews.close());
  const body = (await (await fetch(`${reviews.url}/reviews/0`)).json()) as { reviews: { rating: unknown }[] };
  assert.deepEqual(body.reviews[0]!.rating, { error: RATINGS_UNAVAILABLE });
  const pp = await startProductpage({ detailsUrl: details.url, reviewsUrl: reviews.url, httpProxy: null });
  t.after(() => pp.close());
  const html = await page(pp.url);
  assert.match(html, /Ratings service is currently unavailable/);
  assert.equal(fullStars(html), 0);
  assert.match(html, /An extremely entertaining play/);
});

test('reviews or details down: productpage says so and still renders the rest', async (t) => {
  const details = await startDetails();
  t.after(() => details.close());
  const noReviews = await startProductpage({ detailsUrl: details.url, reviewsUrl: await deadUrl(), httpProxy: null });
  t.after(() => noReviews.close());
  let html = await page(noReviews.url);
  assert.ok(html.includes(REVIEWS_UNAVAILABLE));
  assert.match(html, /PublisherA/);

  // A 503 from reviews counts as unavailable, as in productpage.py.
  const failing = await stub(t, (_req, res) => json(res, { error: 'boom' }, 503));
  const noDetails = await startProductpage({ detailsUrl: failing.url, reviewsUrl: failing.url, httpProxy: null });
  t.after(() => noDetails.close());
  html = await page(noDetails.url);
  assert.ok(html.includes(DETAILS_UNAVAILABLE));
  assert.ok(html.includes(REVIEWS_UNAVAILABLE));
  const api = await fetch(`${noDetails.url}/api/v1/products/0`);
  assert.equal(api.status, 503);
  assert.deepEqual(await api.json(), { error: DETAILS_UNAVAILABLE });
});

test('upstream calls time out instead of hanging the page', async (t) => {
  const details = await startDetails();
  t.after(() => details.close());
  const hang = await stub(t, () => undefined); // never answers
  const pp = await startProductpage({ detailsUrl: details.url, reviewsUrl: hang.url, httpProxy: null, timeoutMs: 200 });
  t.after(() => pp.close());
  const html = await page(pp.url);
  assert.ok(html.includes(REVIEWS_UNAVAILABLE));
  assert.equal(hang.seen.length, 1);
});

test('productpage forwards trace headers and end-user (from kubeflow-userid) to reviews and details', async (t) => {
  const reviewsStub = await stub(t, (_req, res) =>
    json(res, { id: '0', podname: 'stub', reviews: [{ reviewer: 'Reviewer1', text: 'ok' }] }),
  );
  const detailsStub = await stub(t, (_req, res) => json(res, { id: 0, type: 'paperback' }));
  const pp = await startProductpage({ detailsUrl: detailsStub.url, reviewsUrl: reviewsStub.url, httpProxy: null });
  t.after(() => pp.close());
  const sent = {
    'kubeflow-userid': 'jason',
    'x-request-id': 'req-123',
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    tracestate: 'congo=t61rcWkgMzE',
    'x-b3-traceid': '80f198ee56343ba864fe8b2a57d3eff7',
    'x-b3-spanid': 'e457b5a2e4d86bd1',
    'x-b3-parentspanid': '05e3ac9a4f6e3b90',
    'x-b3-sampled': '1',
    'x-b3-flags': '0',
    b3: '80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1',
    'x-ot-span-context': 'ot-ctx',
    'x-datadog-trace-id': '123',
    'x-datadog-parent-id': '456',
    cookie: 'other=1',
    authorization: 'Bearer abc',
    'user-agent': 'portico-test',
    'end-user': 'mallory',
    'x-not-propagated': 'secret',
  };
  const html = await page(pp.url, sent);
  assert.match(html, /Signed in as <b id="user">jason<\/b>/);
  for (const seen of [reviewsStub.seen, detailsStub.seen]) {
    assert.equal(seen.length, 1);
    const got = seen[0]!.headers;
    for (const name of [
      'x-request-id',
      'traceparent',
      'tracestate',
      'x-b3-traceid',
      'x-b3-spanid',
      'x-b3-parentspanid',
      'x-b3-sampled',
      'x-b3-flags',
      'b3',
      'x-ot-span-context',
      'x-datadog-trace-id',
      'x-datadog-parent-id',
      'cookie',
      'authorization',
      'user-agent',
    ] as const) {
      assert.equal(got[name], sent[name], name);
    }
    assert.equal(got['end-user'], 'jason', 'the signed-in user wins over a client-sent end-user');
    assert.equal(got['x-not-propagated'], undefined);
    assert.equal(got['kubeflow-userid'], undefined);
  }
  assert.equal(reviewsStub.seen[0]!.url, '/reviews/0');
  assert.equal(detailsStub.seen[0]!.url, '/details/0');
});

test('reviews forwards trace headers and end-user to ratings', async (t) => {
  const ratingsStub = await stub(t, (_req, res) => json(res, { id: 0, ratings: { Reviewer1: 3, Reviewer2: 1 } }));
  const reviews = await startReviews({ version: 'v3', ratingsUrl: ratingsStub.url, httpProxy: null });
  t.after(() => reviews.close());
  const r = await fetch(`${reviews.url}/reviews/0`, {
    headers: { 'end-user': 'jason', 'x-request-id': 'rid-9', 'x-b3-traceid': 'abc', 'x-other': 'no' },
  });
  const body = (await r.json()) as { reviews: { rating: unknown }[] };
  assert.deepEqual(body.reviews[1]!.rating, { stars: 1, color: 'red' });
  const got = ratingsStub.seen[0]!;
  assert.equal(got.url, '/ratings/0');
  assert.equal(got.headers['end-user'], 'jason');
  assert.equal(got.headers['x-request-id'], 'rid-9');
  assert.equal(got.headers['x-b3-traceid'], 'abc');
  assert.equal(got.headers['x-other'], undefined);
});

test('user comes from a configurable identity header, else from the session cookie', async (t) => {
  const reviewsStub = await stub(t, (_req, res) => json(res, { podname: 'stub', reviews: [] }));
  const pp = await startProductpage({
    detailsUrl: reviewsStub.url,
    reviewsUrl: reviewsStub.url,
    userIdHeader: 'X-Auth-User',
    httpProxy: null,
  });
  t.after(() => pp.close());
  await page(pp.url, { 'x-auth-user': 'alice', cookie: 'session=bob' });
  await page(pp.url, { cookie: 'session=bob' });
  await page(pp.url, { 'kubeflow-userid': 'eve' }); // not the configured header: ignored
  const endUsers = reviewsStub.seen.filter((s) => s.url.startsWith('/reviews')).map((s) => s.headers['end-user']);
  assert.deepEqual(endUsers, ['alice', 'bob', undefined]);
});

test('demo login: POST /login sets the session cookie, /logout clears it, names are escaped', async (t) => {
  const demo = await startDemoUpstreams({ ports: 'ephemeral' });
  t.after(() => demo.close());
  const pp = demo.urls.productpage;
  const form = await fetch(`${pp}/login`);
  assert.match(await form.text(), /<form method="post" action="\/login">/);

  const login = await fetch(`${pp}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'username=jason&passwd=whatever',
    redirect: 'manual',
  });
  assert.equal(login.status, 302);
  assert.equal(login.headers.get('location'), '/productpage');
  const cookie = login.headers.getSetCookie()[0]!;
  assert.match(cookie, /^session=jason; Path=\/; HttpOnly; SameSite=Lax$/);
  assert.match(await page(pp, { cookie: 'session=jason' }), /Signed in as <b id="user">jason<\/b>/);

  const logout = await fetch(`${pp}/logout`, { redirect: 'manual' });
  assert.equal(logout.status, 302);
  assert.match(logout.headers.getSetCookie()[0]!, /^session=; .*Max-Age=0/);

  const empty = await fetch(`${pp}/login`, { method: 'POST', body: 'username=', redirect: 'manual' });
  assert.equal(empty.status, 400);
  assert.match(await empty.text(), /username is required/);

  const xss = await page(pp, { cookie: `session=${encodeURIComponent('<script>alert(1)</script>')}` });
  assert.doesNotMatch(xss, /<script>alert/);
  assert.match(xss, /&#60;script&#62;alert\(1\)&#60;\/script&#62;/);

  const crlf = await page(pp, { cookie: `session=${encodeURIComponent('a\r\nx-evil: 1')}` });
  assert.match(crlf, /Sign in/, 'a name with control characters is ignored, not forwarded');
});

test('productpage API, static css and health', async (t) => {
  const demo = await startDemoUpstreams({ ports: 'ephemeral', reviewsUrl: undefined });
  t.after(() => demo.close());
  const pp = demo.urls.productpage;
  const products = (await (await fetch(`${pp}/api/v1/products`)).json()) as { id: number; title: string }[];
  assert.equal(products[0]!.title, 'The Comedy of Errors');
  const details = (await (await fetch(`${pp}/api/v1/products/0`)).json()) as { author: string };
  assert.equal(details.author, 'William Shakespeare');
  const reviews = (await (await fetch(`${pp}/api/v1/products/0/reviews`)).json()) as { reviews: unknown[] };
  assert.equal(reviews.reviews.length, 2);
  const ratings = await (await fetch(`${pp}/api/v1/products/0/ratings`)).json();
  assert.deepEqual(ratings, { id: 0, ratings: { Reviewer1: 5, Reviewer2: 4 } });
  const bad = await fetch(`${pp}/api/v1/products/..%2f..%2fadmin`);
  assert.equal(bad.status, 400);
  await bad.arrayBuffer();
  const css = await fetch(`${pp}/static/css/style.css`);
  assert.match(css.headers.get('content-type') ?? '', /^text\/css/);
  await css.arrayBuffer();
  assert.equal(await (await fetch(`${pp}/health`)).text(), 'Product page is healthy');
  const index = await fetch(`${pp}/`);
  assert.match(await index.text(), /href="\/productpage"/);
  const post = await fetch(`${pp}/productpage`, { method: 'POST' });
  assert.equal(post.status, 405);
  await post.arrayBuffer();
});

test('ratings accepts a valid POST and rejects a bad one', async (t) => {
  const ratings = await startRatings();
  t.after(() => ratings.close());
  const ok = await fetch(`${ratings.url}/ratings/7`, { method: 'POST', body: '{"Reviewer1":2,"Reviewer2":3}' });
  assert.equal(ok.status, 200);
  await ok.arrayBuffer();
  assert.deepEqual(await (await fetch(`${ratings.url}/ratings/7`)).json(), {
    id: 7,
    ratings: { Reviewer1: 2, Reviewer2: 3 },
  });
  for (const body of ['nope', '{"Reviewer1":9}', '[]']) {
    const r = await fetch(`${ratings.url}/ratings/7`, { method: 'POST', body });
    assert.equal(r.status, 400, body);
    await r.arrayBuffer();
  }
  const nonNumeric = await fetch(`${ratings.url}/ratings/x`);
  assert.equal(nonNumeric.status, 400);
  await nonNumeric.arrayBuffer();
});

test('HTTP_PROXY: upstream calls go to the proxy in absolute-form with the target Host', async (t) => {
  const details = await startDetails();
  t.after(() => details.close());
  const reviews = await startReviews({ version: 'v1', httpProxy: null });
  t.after(() => reviews.close());
  const routes: Record<string, string> = { 'details.mesh:9080': details.url, 'reviews.mesh:9080': reviews.url };
  // The stub plays a sidecar's outbound listener: route by Host, forward the path.
  const proxy = await stub(t, async (req, res) => {
    const base = routes[req.headers.host ?? ''];
    if (!base) return json(res, { error: 'unknown host' }, 502);
    const upstream = await fetch(`${base}${new URL(req.url ?? '/').pathname}`);
    json(res, await upstream.json(), upstream.status);
  });
  const pp = await startProductpage({
    detailsUrl: 'http://details.mesh:9080',
    reviewsUrl: 'http://reviews.mesh:9080',
    httpProxy: proxy.url,
  });
  t.after(() => pp.close());
  const html = await page(pp.url, { 'x-request-id': 'through-proxy' });
  assert.match(html, /PublisherA/);
  assert.match(html, /An extremely entertaining play/);
  const seen = proxy.seen.map((s) => `${s.method} ${s.url} host=${String(s.headers.host)}`).sort();
  assert.deepEqual(seen, [
    'GET http://details.mesh:9080/details/0 host=details.mesh:9080',
    'GET http://reviews.mesh:9080/reviews/0 host=reviews.mesh:9080',
  ]);
  assert.ok(proxy.seen.every((s) => s.headers['x-request-id'] === 'through-proxy'));

  // NO_PROXY bypasses it.
  const direct = await startProductpage({
    detailsUrl: details.url,
    reviewsUrl: reviews.url,
    httpProxy: proxy.url,
    noProxy: 'localhost,127.0.0.1',
  });
  t.after(() => direct.close());
  const before = proxy.seen.length;
  assert.match(await page(direct.url), /PublisherA/);
  assert.equal(proxy.seen.length, before);
});

test('HTTP_PROXY from the environment is honoured when no option is given', async (t) => {
  const proxy = await stub(t, (_req, res) => json(res, { id: 0, ratings: { Reviewer1: 1, Reviewer2: 2 } }));
  const saved = process.env.HTTP_PROXY;
  process.env.HTTP_PROXY = proxy.url;
  t.after(() => {
    if (saved === undefined) delete process.env.HTTP_PROXY;
    else process.env.HTTP_PROXY = saved;
  });
  const reviews = await startReviews({ version: 'v2', ratingsUrl: 'http://ratings.mesh:9080', noProxy: '' });
  t.after(() => reviews.close());
  const body = (await (await fetch(`${reviews.url}/reviews/0`)).json()) as { reviews: { rating: unknown }[] };
  assert.deepEqual(body.reviews[0]!.rating, { stars: 1, color: 'black' });
  assert.equal(proxy.seen[0]!.url, 'http://ratings.mesh:9080/ratings/0');
  assert.equal(proxy.seen[0]!.headers.host, 'ratings.mesh:9080');
});

test('bad options fail with a message naming the option', async () => {
  await assert.rejects(startProductpage({ detailsUrl: 'https://details:9080' }), /detailsUrl: only http:\/\//);
  await assert.rejects(startProductpage({ reviewsUrl: 'not a url' }), /reviewsUrl: not a URL/);
  await assert.rejects(startReviews({ version: 'v9' as 'v1' }), /version must be v1, v2 or v3/);
  await assert.rejects(startReviews({ version: 'v2', ratingsUrl: 'http://r:1', httpProxy: 'socks5://x:1' }), /HTTP_PROXY/);
  await assert.rejects(startDetails({ port: 70000 }), /port must be an integer/);
});

test('startDemoUpstreams closes what it started when one port is taken, naming the service', async (t) => {
  const busy = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => busy.close(() => resolve())));
  const busyPort = (busy.address() as AddressInfo).port;
  const free = await Promise.all(Array.from({ length: 6 }, () => deadUrl().then((u) => Number(new URL(u).port))));
  const ports = {
    productpage: busyPort,
    details: free[0]!,
    reviewsV1: free[1]!,
    reviewsV2: free[2]!,
    reviewsV3: free[3]!,
    ratings: free[4]!,
    httpbin: free[5]!,
  };
  await assert.rejects(startDemoUpstreams({ ports }), /demo upstreams: productpage: cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/);
  // Everything else was closed again: the same ports can be taken now.
  const again = await startDemoUpstreams({ ports: { ...ports, productpage: 0 } });
  assert.equal(again.ports.details, free[0]);
  await again.close();
});
