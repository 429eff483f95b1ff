import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { httpbinHeaders, startHttpbin, titleCase } from '../../demo/httpbin.ts';
import type { HttpbinHandle } from '../../demo/httpbin.ts';

async function httpbin(t: { after(fn: () => Promise<void>): void }): Promise<HttpbinHandle> {
  const h = await startHttpbin();
  t.after(() => h.close());
  return h;
}

/** Raw node:http GET so repeated headers and Host can be controlled exactly. */
function rawGet(url: string, headers: Record<string, string | string[]>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('titleCase gives httpbin header names', () => {
  assert.equal(titleCase('x-forwarded-client-cert'), 'X-Forwarded-Client-Cert');
  assert.equal(titleCase('KUBEFLOW-USERID'), 'Kubeflow-Userid');
  assert.equal(titleCase('x-b3-traceid'), 'X-B3-Traceid');
  assert.deepEqual(httpbinHeaders(['x-dup', 'a', 'X-Dup', 'b', 'host', 'h']), { 'X-Dup': 'a,b', Host: 'h' });
});

test('/status/418 is the teapot; other codes are echoed; nonsense is 400', async (t) => {
  const h = await httpbin(t);
  const tea = await fetch(`${h.url}/status/418`);
  assert.equal(tea.status, 418);
  assert.equal(tea.headers.get('x-more-info'), 'http://tools.ietf.org/html/rfc2324');
  assert.match(await tea.text(), /-=\[ teapot \]=-/);
  for (const code of [200, 204, 404, 503]) {
    const r = await fetch(`${h.url}/status/${code}`);
    assert.equal(r.status, code);
    await r.arrayBuffer();
  }
  const weighted = await fetch(`${h.url}/status/201:0,202:1`);
  assert.equal(weighted.status, 202);
  const unauthorized = await fetch(`${h.url}/status/401`);
  assert.equal(unauthorized.headers.get('www-authenticate'), 'Basic realm="Fake Realm"');
  const redirect = await fetch(`${h.url}/status/302`, { redirect: 'manual' });
  assert.equal(redirect.headers.get('location'), '/redirect/1');
  for (const bad of ['abc', '99', '600', '200,x']) {
    const r = await fetch(`${h.url}/status/${bad}`);
    assert.equal(r.status, 400, bad);
    assert.match(await r.text(), /Invalid status code/);
  }
});

test('/headers echoes request headers in Title-Case, repeated ones joined', async (t) => {
  const h = await httpbin(t);
  const r = await rawGet(`${h.url}/headers`, {
    'x-forwarded-client-cert': 'By=spiffe://cluster.local/ns/default/sa/httpbin;Hash=abc',
    'kubeflow-userid': 'alice@example.com',
    'x-dup': ['one', 'two'],
  });
  assert.equal(r.status, 200);
  const { headers } = JSON.parse(r.body) as { headers: Record<string, string> };
  assert.equal(headers['X-Forwarded-Client-Cert'], 'By=spiffe://cluster.local/ns/default/sa/httpbin;Hash=abc');
  assert.equal(headers['Kubeflow-Userid'], 'alice@example.com');
  assert.equal(headers['X-Dup'], 'one,two');
  assert.equal(headers.Host, `127.0.0.1:${h.port}`);
  assert.equal(headers['kubeflow-userid'], undefined);
});

test('/anything echoes method, url, args, headers and the body as data/json/form', async (t) => {
  const h = await httpbin(t);
  const json = await fetch(`${h.url}/anything/deep/path?a=1&a=2&b=x`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', 'x-forwarded-proto': 'https' },
    body: JSON.stringify({ hello: 'world', n: [1, 2] }),
  });
  assert.equal(json.status, 200);
  const body = (await json.json()) as Record<string, unknown>;
  assert.equal(body.method, 'PUT');
  assert.equal(body.url, `https://127.0.0.1:${h.port}/anything/deep/path?a=1&a=2&b=x`);
  assert.deepEqual(body.args, { a: ['1', '2'], b: 'x' });
  assert.equal(body.data, '{"hello":"world","n":[1,2]}');
  assert.deepEqual(body.json, { hello: 'world', n: [1, 2] });
  assert.deepEqual(body.form, {});
  assert.equal((body.headers as Record<string, string>)['Content-Type'], 'application/json');
  assert.deepEqual(Object.keys(body), [...Object.keys(body)].sort(), 'keys sorted like httpbin');

  const form = await fetch(`${h.url}/anything`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'user=jason&tag=a&tag=b',
  });
  const f = (await form.json()) as Record<string, unknown>;
  assert.deepEqual(f.form, { user: 'jason', tag: ['a', 'b'] });
  assert.equal(f.data, '');
  assert.equal(f.json, null);

  const binary = await fetch(`${h.url}/anything`, { method: 'POST', body: new Uint8Array([0xff, 0x00, 0xfe]) });
  const b = (await binary.json()) as Record<string, unknown>;
  assert.equal(b.data, 'data:application/octet-stream;base64,/wD+');

  const huge = await fetch(`${h.url}/anything`, { method: 'POST', body: 'x'.repeat(1024 * 1024 + 1) });
  assert.equal(huge.status, 413);
});

test('/get, /post and friends enforce their method', async (t) => {
  const h = await httpbin(t);
  const get = await fetch(`${h.url}/get?q=1`);
  assert.deepEqual(((await get.json()) as { args: unknown }).args, { q: '1' });
  const wrong = await fetch(`${h.url}/get`, { method: 'POST', body: 'x' });
  assert.equal(wrong.status, 405);
  await wrong.arrayBuffer();
  const post = await fetch(`${h.url}/post`, { method: 'POST', body: '{"a":1}' });
  assert.deepEqual(((await post.json()) as { json: unknown }).json, { a: 1 });
  const del = await fetch(`${h.url}/delete`, { method: 'DELETE' });
  assert.equal(del.status, 200);
  await del.arrayBuffer();
});

test('/delay waits, and a client that goes away cancels the timer', async (t) => {
  const h = await httpbin(t);
  const quick = await fetch(`${h.url}/delay/0.05?x=1`);
  assert.equal(quick.status, 200);
  assert.deepEqual(((await quick.json()) as { args: unknown }).args, { x: '1' });
  assert.equal(h.activeDelays(), 0);

  const ac = new AbortController();
  const pending = fetch(`${h.url}/delay/10`, { signal: ac.signal }).catch((err: unknown) => err);
  for (let i = 0; i < 200 && h.activeDelays() === 0; i++) await sleep(10);
  assert.equal(h.activeDelays(), 1, 'the delay timer should be pending');
  ac.abort();
  assert.ok((await pending) instanceof Error);
  // Without the close listener the timer would stay pending for ~10 s.
  for (let i = 0; i < 300 && h.activeDelays() > 0; i++) await sleep(10);
  assert.equal(h.activeDelays(), 0, 'aborting the client must clear the timer');

  const bad = await fetch(`${h.url}/delay/soon`);
  assert.equal(bad.status, 400);
  await bad.arrayBuffer();
});

test('close() does not wait for an in-flight /delay', async () => {
  const h = await startHttpbin();
  const pending = fetch(`${h.url}/delay/10`).catch((err: unknown) => err);
  for (let i = 0; i < 200 && h.activeDelays() === 0; i++) await sleep(10);
  assert.equal(h.activeDelays(), 1);
  const closed = h.close().then(() => 'closed');
  const winner = await Promise.race([closed, sleep(5000, undefined, { ref: false }).then(() => 'hung')]);
  assert.equal(winner, 'closed');
  assert.ok((await pending) instanceof Error);
});

test('/ip uses X-Forwarded-For first hop, else the peer address', async (t) => {
  const h = await httpbin(t);
  const direct = await fetch(`${h.url}/ip`);
  assert.deepEqual(await direct.json(), { origin: '127.0.0.1' });
  const viaProxy = await fetch(`${h.url}/ip`, { headers: { 'x-forwarded-for': '203.0.113.7, 10.0.0.1' } });
  assert.deepEqual(await viaProxy.json(), { origin: '203.0.113.7' });
});

test('/uuid, /bytes, /stream, /user-agent', async (t) => {
  const h = await httpbin(t);
  const { uuid } = (await (await fetch(`${h.url}/uuid`)).json()) as { uuid: string };
  assert.match(uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  const bytes = await fetch(`${h.url}/bytes/1000`);
  assert.equal(bytes.headers.get('content-type'), 'application/octet-stream');
  assert.equal((await bytes.arrayBuffer()).byteLength, 1000);
  const capped = await fetch(`${h.url}/bytes/999999999`);
  assert.equal((await capped.arrayBuffer()).byteLength, 100 * 1024);
  const stream = await fetch(`${h.url}/stream/3`);
  const lines = (await stream.text()).trim().split('\n').map((l) => JSON.parse(l) as { id: number });
  assert.deepEqual(
    lines.map((l) => l.id),
    [0, 1, 2],
  );
  const ua = await fetch(`${h.url}/user-agent`, { headers: { 'user-agent': 'portico-test/1' } });
  assert.deepEqual(await ua.json(), { 'user-agent': 'portico-test/1' });
});

test('/cookies, /cookies/set and /cookies/delete', async (t) => {
  const h = await httpbin(t);
  const r = await fetch(`${h.url}/cookies`, { headers: { cookie: 'a=1; b=hello%20world' } });
  assert.deepEqual(await r.json(), { cookies: { a: '1', b: 'hello world' } });
  const set = await fetch(`${h.url}/cookies/set?k=v&n=2`, { redirect: 'manual' });
  assert.equal(set.status, 302);
  assert.equal(set.headers.get('location'), '/cookies');
  assert.deepEqual(set.headers.getSetCookie(), ['k=v; Path=/', 'n=2; Path=/']);
  const del = await fetch(`${h.url}/cookies/delete?k`, { redirect: 'manual' });
  assert.deepEqual(del.headers.getSetCookie(), ['k=; Path=/; Max-Age=0']);
  const bad = await fetch(`${h.url}/cookies/set?${encodeURIComponent('a b')}=1`, { redirect: 'manual' });
  assert.equal(bad.status, 400);
  await bad.arrayBuffer();
});

test('/response-headers sets what the query asks, but not framing headers', async (t) => {
  const h = await httpbin(t);
  const r = await fetch(`${h.url}/response-headers?X-Custom=1&X-Custom=2&Content-Length=5&Server=httpbin`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('x-custom'), '1, 2');
  assert.equal(r.headers.get('server'), 'httpbin');
  const body = (await r.json()) as Record<string, unknown>;
  assert.deepEqual(body['X-Custom'], ['1', '2']);
  assert.equal(body['Content-Length'], undefined);
  const typed = await fetch(`${h.url}/response-headers?Content-Type=text/plain`);
  assert.equal(typed.headers.get('content-type'), 'text/plain');
  await typed.arrayBuffer();
  const bad = await fetch(`${h.url}/response-headers?X-Bad=${encodeURIComponent('a\r\nInjected: 1')}`);
  assert.equal(bad.status, 400);
  assert.equal(bad.headers.get('injected'), null);
  await bad.arrayBuffer();
});

test('/redirect/:n walks down to /get', async (t) => {
  const h = await httpbin(t);
  const first = await fetch(`${h.url}/redirect/3`, { redirect: 'manual' });
  assert.equal(first.status, 302);
  assert.equal(first.headers.get('location'), '/relative-redirect/2');
  const last = await fetch(`${h.url}/relative-redirect/1`, { redirect: 'manual' });
  assert.equal(last.headers.get('location'), '/get');
  const followed = await fetch(`${h.url}/redirect/3`);
  assert.equal(followed.status, 200);
  assert.equal(new URL(followed.url).pathname, '/get');
  await followed.arrayBuffer();
  const bad = await fetch(`${h.url}/redirect/0`, { redirect: 'manual' });
  assert.equal(bad.status, 400);
  await bad.arrayBuffer();
});

test('/basic-auth checks the credentials', async (t) => {
  const h = await httpbin(t);
  const ok = await fetch(`${h.url}/basic-auth/user/pass`, {
    headers: { authorization: `Basic ${Buffer.from('user:pass').toString('base64')}` },
  });
  assert.deepEqual(await ok.json(), { authenticated: true, user: 'user' });
  const wrong = await fetch(`${h.url}/basic-auth/user/pass`, {
    headers: { authorization: `Basic ${Buffer.from('user:nope').toString('base64')}` },
  });
  assert.equal(wrong.status, 401);
  await wrong.arrayBuffer();
  const none = await fetch(`${h.url}/basic-auth/user/pass`);
  assert.equal(none.status, 401);
  await none.arrayBuffer();
});

test('unknown paths are 404', async (t) => {
  const h = await httpbin(t);
  const r = await fetch(`${h.url}/nope`);
  assert.equal(r.status, 404);
  await r.arrayBuffer();
});

test('/ws echoes text and binary frames; other upgrade paths are refused', async (t) => {
  const h = await httpbin(t);
  const ws = new WebSocket(`${h.url.replace('http', 'ws')}/ws`);
  t.after(() => ws.terminate());
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const next = (): Promise<{ data: Buffer; isBinary: boolean }> =>
    new Promise((resolve) => ws.once('message', (data, isBinary) => resolve({ data: data as Buffer, isBinary })));
  let reply = next();
  ws.send('hello mesh');
  let got = await reply;
  assert.equal(got.isBinary, false);
  assert.equal(got.data.toString('utf8'), 'hello mesh');
  reply = next();
  ws.send(Buffer.from([1, 2, 3]));
  got = await reply;
  assert.equal(got.isBinary, true);
  assert.deepEqual([...got.data], [1, 2, 3]);

  const other = new WebSocket(`${h.url.replace('http', 'ws')}/not-ws`);
  const status = await new Promise<number>((resolve) => {
    other.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    other.once('error', () => resolve(-1));
  });
  other.terminate();
  assert.equal(status, 404);
});
