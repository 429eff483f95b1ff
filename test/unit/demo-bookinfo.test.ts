import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PROPAGATED_HEADERS, baseUrl, propagatedHeaders, urlFromEnv } from '../../demo/bookinfo/upstream.ts';
import { esc, renderProductPage, PRODUCTS } from '../../demo/bookinfo/html.ts';
import { parseCookies } from '../../demo/bookinfo/serve.ts';

test('propagatedHeaders keeps Istio\'s list and x-datadog-*, drops the rest', () => {
  const out = propagatedHeaders({
    'x-request-id': 'r',
    traceparent: 't',
    'x-datadog-sampling-priority': '1',
    'end-user': 'jason',
    cookie: 'a=1',
    'kubeflow-userid': 'x',
    host: 'h',
    'content-length': '3',
  });
  assert.deepEqual(out, {
    'x-request-id': 'r',
    traceparent: 't',
    'x-datadog-sampling-priority': '1',
    'end-user': 'jason',
    cookie: 'a=1',
  });
  for (const name of ['b3', 'x-b3-flags', 'x-ot-span-context', 'authorization', 'user-agent']) {
    assert.ok(PROPAGATED_HEADERS.includes(name), name);
  }
});

test('urlFromEnv follows the Istio sample variables', () => {
  assert.equal(urlFromEnv('details', {}), 'http://details:9080');
  assert.equal(
    urlFromEnv('reviews', { REVIEWS_HOSTNAME: 'rv', SERVICES_DOMAIN: 'ns.svc', REVIEWS_SERVICE_PORT: '9090' }),
    'http://rv.ns.svc:9090',
  );
  assert.throws(() => urlFromEnv('ratings', { RATINGS_SERVICE_PORT: 'x y' }), /RATINGS_HOSTNAME\/RATINGS_SERVICE_PORT/);
  assert.equal(baseUrl('http://a:1/', 'opt'), 'http://a:1');
  assert.throws(() => baseUrl('http://a:1/?q', 'opt'), /opt: base URL must not have a query/);
});

test('renderProductPage escapes every dynamic value', () => {
  const html = renderProductPage({
    user: '"><img src=x>',
    product: PRODUCTS[0]!,
    details: { ok: true, data: { type: '<b>x</b>' } },
    reviews: {
      ok: true,
      podname: '<pod>',
      reviews: [{ reviewer: '<r>', text: '<t>', rating: { stars: 3, color: 'red" onload="x' } }],
    },
  });
  for (const raw of ['"><img', '<b>x</b>', '<pod>', '<r>', '<t>', 'onload']) assert.ok(!html.includes(raw), raw);
  assert.match(html, /<font color="black" class="stars" data-stars="3">/);
  assert.equal(esc(`&<>"'`), '&#38;&#60;&#62;&#34;&#39;');
});

test('parseCookies takes the first occurrence and tolerates bad escapes', () => {
  assert.deepEqual(parseCookies('session=jason; session=eve; x=%E0%A4%A; q="quoted"'), {
    session: 'jason',
    x: '%E0%A4%A',
    q: 'quoted',
  });
  assert.deepEqual(parseCookies(undefined), {});
});
