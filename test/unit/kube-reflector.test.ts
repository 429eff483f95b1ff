/**
 * kube/reflector.ts against a small HTTP server speaking the API server's list/watch protocol
 * (the outside world's boundary; test/kube/ runs the real kube-apiserver): the watch asks for
 * bookmarks from the list's resourceVersion, bookmarks move the resume point, a 410 Gone
 * re-lists (dropping objects deleted meanwhile), and a refused first list rejects start().
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { test, type TestContext } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeApi } from '../../kube/api.ts';
import { Reflector } from '../../kube/reflector.ts';

interface Fake {
  url: string;
  requests: URL[];
  onList: (u: URL, res: ServerResponse) => void;
  onWatch: (u: URL, res: ServerResponse) => void;
}

async function fakeApi(t: TestContext): Promise<Fake> {
  const fake: Fake = { url: '', requests: [], onList: () => undefined, onWatch: () => undefined };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const u = new URL(req.url ?? '/', 'http://x');
    fake.requests.push(u);
    if (u.searchParams.get('watch') === 'true') fake.onWatch(u, res);
    else fake.onList(u, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => {
    server.closeAllConnections();
    server.close(() => r());
  }));
  const addr = server.address();
  fake.url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  return fake;
}

function api(url: string): KubeApi {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: url, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'x' }],
    contexts: [{ name: 'c', cluster: 'c', user: 'u' }],
    currentContext: 'c',
  });
  return new KubeApi(kc);
}

const obj = (name: string, rv: string) => ({ metadata: { name, namespace: 'ns', resourceVersion: rv } });
const line = (type: string, o: unknown): string => `${JSON.stringify({ type, object: o })}\n`;

async function until(what: string, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('list, then watch with bookmarks from its resourceVersion; a 410 re-lists and drops deleted objects', async (t) => {
  const fake = await fakeApi(t);
  let lists = 0;
  fake.onList = (_u, res) => {
    lists++;
    const items = lists === 1 ? [obj('a', '5'), obj('b', '5')] : [obj('b', '20')];
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ metadata: { resourceVersion: lists === 1 ? '5' : '20' }, items }));
  };
  let watches = 0;
  fake.onWatch = (_u, res) => {
    watches++;
    res.writeHead(200, { 'content-type': 'application/json' });
    if (watches === 1) {
      res.write(line('ADDED', obj('c', '6')));
      res.write(line('BOOKMARK', { metadata: { resourceVersion: '9' } }));
      res.end();
    } else if (watches === 2) {
      res.end(line('ERROR', { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version: 9 (15)' }));
    }
    // later watches stay open
  };
  let changes = 0;
  const r = new Reflector({ api: api(fake.url), path: '/apis/x/v1/things', apiVersion: 'x/v1', kind: 'Thing', onChange: () => void changes++ });
  t.after(() => r.stop());
  await r.start();
  await until('the re-list after 410', () => lists === 2 && watches >= 3);
  await until('objects replaced', () => r.objects.size === 1);
  const watchParams = fake.requests.filter((u) => u.searchParams.get('watch') === 'true');
  assert.equal(watchParams[0].searchParams.get('resourceVersion'), '5', 'the first watch starts at the list version');
  assert.equal(watchParams[0].searchParams.get('allowWatchBookmarks'), 'true');
  assert.equal(watchParams[1].searchParams.get('resourceVersion'), '9', 'resumes from the bookmark, not the last object');
  assert.equal(watchParams[2].searchParams.get('resourceVersion'), '20', 'after the 410: a fresh list, then a watch from it');
  assert.deepEqual([...r.objects.keys()], ['ns/b'], 'a and c were deleted while the watch was gone');
  assert.equal(r.objects.get('ns/b')?.kind, 'Thing');
  assert.ok(changes >= 3);
});

test('a refused first list (403) rejects start(), so a missing permission is reported', async (t) => {
  const fake = await fakeApi(t);
  fake.onList = (_u, res) => res.writeHead(403, { 'content-type': 'application/json' }).end(JSON.stringify({ kind: 'Status', code: 403, message: 'things is forbidden' }));
  const r = new Reflector({ api: api(fake.url), path: '/apis/x/v1/things', apiVersion: 'x/v1', kind: 'Thing', onChange: () => undefined });
  t.after(() => r.stop());
  await assert.rejects(r.start(), /403 things is forbidden/);
});
