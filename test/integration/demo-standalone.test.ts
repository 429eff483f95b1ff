import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
type After = { after(fn: () => Promise<void> | void): void };

/** Spawns a demo entry point and resolves with its URL once it prints `... listening on URL`. */
async function spawnService(t: After, args: string[], env: Record<string, string> = {}): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
    cwd: root,
    env: { ...process.env, HTTP_PROXY: '', http_proxy: '', NO_PROXY: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const m = / listening on (http:\/\/\S+)\n/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}: ${err}`)));
  });
  return { url, child };
}

test('httpbin runs standalone and exits cleanly on SIGTERM', async (t) => {
  const { url, child } = await spawnService(t, ['demo/httpbin.ts', '--port', '0']);
  const r = await fetch(`${url}/status/418`);
  assert.equal(r.status, 418);
  await r.arrayBuffer();
  child.kill('SIGTERM');
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(code, 0);
});

test('bookinfo standalone: reviews v2 finds ratings through env wiring and HTTP_PROXY', async (t) => {
  const ratings = await spawnService(t, ['demo/bookinfo/index.ts', 'ratings', '--port', '0']);
  const seen: string[] = [];
  const proxy = createServer((req, res) => {
    seen.push(`${req.method} ${req.url} host=${req.headers.host} end-user=${req.headers['end-user']}`);
    fetch(`${ratings.url}${new URL(req.url ?? '/').pathname}`).then(
      async (up) => {
        const body = await up.text();
        res.writeHead(up.status, { 'content-type': 'application/json' });
        res.end(body);
      },
      () => {
        res.writeHead(502);
        res.end();
      },
    );
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => {
    proxy.close(() => resolve());
    proxy.closeAllConnections();
  }));
  const reviews = await spawnService(t, ['demo/bookinfo/index.ts', 'reviews', '--version', 'v2', '--port', '0'], {
    RATINGS_HOSTNAME: 'ratings',
    SERVICES_DOMAIN: 'bookinfo.svc',
    RATINGS_SERVICE_PORT: '9080',
    HTTP_PROXY: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
  });
  const body = (await (await fetch(`${reviews.url}/reviews/0`, { headers: { 'end-user': 'jason' } })).json()) as {
    reviews: { rating: unknown }[];
  };
  assert.deepEqual(body.reviews[0]!.rating, { stars: 5, color: 'black' });
  assert.deepEqual(seen, ['GET http://ratings.bookinfo.svc:9080/ratings/0 host=ratings.bookinfo.svc:9080 end-user=jason']);
});

test('bookinfo standalone rejects an unknown service with usage', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'demo/bookinfo/index.ts', 'catalog'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(code, 2);
  assert.match(err, /unknown service 'catalog'/);
  assert.match(err, /usage: /);
});
