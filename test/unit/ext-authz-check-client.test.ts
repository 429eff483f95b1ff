/**
 * The ext_authz check client (dataplane/filters/check-client.ts) against real servers on port 0:
 * Node's HTTP server for the ordinary answers, raw TCP servers for the framings and failures
 * Node would not produce.
 */
import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { CheckClient, type CheckAnswerHandler } from '../../dataplane/filters/check-client.ts';

interface Answer {
  status: number;
  headers: Record<string, string | string[]>;
  body: string | undefined;
}

function ask(client: CheckClient, path: string, headers: string[] = [], opts: { method?: string; timeoutMs?: number; wantBody?: boolean } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let head: Omit<Answer, 'body'> | undefined;
    const handler: CheckAnswerHandler = {
      onHead(status, h) {
        head = { status, headers: h };
        return opts.wantBody ?? true;
      },
      onEnd(body) {
        resolve({ ...head!, body: body?.toString('latin1') });
      },
      onError: reject,
    };
    client.check(opts.method ?? 'GET', path, ['host', 'gw.example', ...headers], opts.timeoutMs ?? 5000, handler);
  });
}

function client(t: TestContext, port: number, pipelining = 16, maxRequestsPerConnection = 0): CheckClient {
  const c = new CheckClient({ address: '127.0.0.1', port, connectTimeoutMs: 5000, idleTimeoutMs: 60_000, maxConnections: 64, pipelining, maxRequestsPerConnection, maxBodyBytes: 1024 });
  t.after(() => c.close());
  return c;
}

async function listen(t: TestContext, server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as { port: number }).port;
}

/** A raw server: `answer(requestHead, socket, index)` is called per request head received. */
async function raw(t: TestContext, answer: (head: string, socket: Socket, n: number) => void): Promise<{ port: number; connections: () => number }> {
  let connections = 0;
  let n = 0;
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let buf = '';
    socket.on('data', (b) => {
      buf += b.toString('latin1');
      let i: number;
      while ((i = buf.indexOf('\r\n\r\n')) >= 0) {
        const head = buf.slice(0, i);
        buf = buf.slice(i + 4);
        answer(head, socket, n++);
      }
    });
    socket.on('error', () => undefined);
  });
  t.after(() => {
    for (const s of sockets) s.destroy();
  });
  return { port: await listen(t, server), connections: () => connections };
}

test('checks issued in one turn share one connection and each gets its own answer, in order', async (t) => {
  let connections = 0;
  const server = createHttpServer((req, res) => {
    // Answers out of arrival time order would mix identities up: delay the early ones most.
    const n = Number(req.headers['x-n']);
    setTimeout(() => {
      res.writeHead(200, { 'kubeflow-userid': `user-${n}@example.com`, 'content-length': '0' });
      res.end();
    }, 20 - n);
  });
  server.on('connection', () => connections++);
  const port = await listen(t, server);
  t.after(() => server.closeAllConnections());
  const c = client(t, port);
  const answers = await Promise.all(Array.from({ length: 12 }, (_, n) => ask(c, `/check/${n}`, ['x-n', String(n)])));
  answers.forEach((a, n) => {
    assert.equal(a.status, 200);
    assert.equal(a.headers['kubeflow-userid'], `user-${n}@example.com`);
  });
  assert.equal(connections, 1, 'one turn, one connection');
  // The next turn reuses it.
  assert.equal((await ask(c, '/again')).status, 200);
  assert.equal(connections, 1);
});

test('pipelining 1 opens a connection per concurrent check', async (t) => {
  let connections = 0;
  const server = createHttpServer((_req, res) => setTimeout(() => res.end('ok'), 5));
  server.on('connection', () => connections++);
  const port = await listen(t, server);
  t.after(() => server.closeAllConnections());
  const c = client(t, port, 1);
  const answers = await Promise.all(Array.from({ length: 4 }, () => ask(c, '/')));
  assert.deepEqual(answers.map((a) => a.body), ['ok', 'ok', 'ok', 'ok']);
  assert.equal(connections, 4);
});

test('maxRequestsPerConnection closes a connection after that many checks', async (t) => {
  const perConnection: number[] = [];
  const server = createHttpServer((req, res) => {
    const i = (req.socket as Socket & { index?: number }).index!;
    perConnection[i] = (perConnection[i] ?? 0) + 1;
    res.end('ok');
  });
  server.on('connection', (s: Socket & { index?: number }) => (s.index = perConnection.push(0) - 1));
  const port = await listen(t, server);
  t.after(() => server.closeAllConnections());
  const c = client(t, port, 16, 2);
  await Promise.all(Array.from({ length: 5 }, () => ask(c, '/')));
  await ask(c, '/');
  assert.deepEqual(perConnection, [2, 2, 2]);
});

test('bodies framed by Content-Length, chunked (with extensions and trailers) and the close; answers split byte by byte', async (t) => {
  const answers = [
    'HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\nX-Reason: a\r\nX-Reason: b\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\ndenied',
    'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\nWWW-Authenticate: Basic\r\n\r\n4;ext=1\r\nno, \r\n3\r\nyou\r\n0\r\nX-Trailer: t\r\n\r\n',
  ];
  const { port } = await raw(t, (_head, socket, n) => {
    const text = answers[n]!;
    // One byte per write, each flushed on its own.
    let i = 0;
    const next = (): void => {
      if (i < text.length) socket.write(text[i++]!, 'latin1', () => setImmediate(next));
    };
    next();
  });
  const c = client(t, port, 1);
  const a = await ask(c, '/one');
  assert.equal(a.status, 403);
  assert.equal(a.body, 'denied');
  assert.equal(a.headers['x-reason'], 'a, b');
  assert.deepEqual(a.headers['set-cookie'], ['a=1', 'b=2']);
  const b = await ask(c, '/two');
  assert.equal(b.status, 401, 'the 100 is skipped');
  assert.equal(b.body, 'no, you');
  assert.equal(b.headers['www-authenticate'], 'Basic');

  const { port: closing } = await raw(t, (_head, socket) => socket.end('HTTP/1.1 403 Forbidden\r\n\r\nread to the end'));
  const c2 = client(t, closing);
  assert.equal((await ask(c2, '/')).body, 'read to the end');
});

test('HEAD, 204 and 304 answers have no body even with a Content-Length', async (t) => {
  const { port } = await raw(t, (head, socket) => {
    const status = head.startsWith('HEAD') ? '200 OK' : head.includes('/204') ? '204 No Content' : '304 Not Modified';
    socket.write(`HTTP/1.1 ${status}\r\nContent-Length: 5\r\n\r\n`);
  });
  const c = client(t, port, 1);
  assert.equal((await ask(c, '/', [], { method: 'HEAD' })).status, 200);
  assert.equal((await ask(c, '/204')).status, 204);
  assert.equal((await ask(c, '/304')).status, 304);
});

test('malformed answers fail the check and close the connection', async (t) => {
  const bad = [
    'HTTP/2 200 OK\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx',
    'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n',
    'HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\n\r\n',
    'HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
    'HTTP/1.1 101 Switching Protocols\r\n\r\n',
    `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(70 * 1024)}`,
    'HTTP/1.1 403 Forbidden\r\nContent-Length: 2000\r\n\r\n' + 'x'.repeat(2000),
  ];
  for (const text of bad) {
    let connections = 0;
    const { port } = await raw(t, (_head, socket) => {
      connections++;
      socket.write(text);
    });
    const c = client(t, port);
    await assert.rejects(ask(c, '/'), (err: Error) => err.name === 'CheckClientError', `rejected: ${JSON.stringify(text.slice(0, 60))}`);
    assert.equal(connections, 1);
  }
});

test('a connection the server closed while idle is replaced, and the check crossing the close is sent again', async (t) => {
  // Answers once per connection without saying Connection: close, then closes when the next
  // request arrives: the keep-alive race every pooled client meets.
  const seen: number[] = [];
  let perConn = new WeakMap<Socket, number>();
  const { port, connections } = await raw(t, (_head, socket) => {
    const k = perConn.get(socket) ?? 0;
    perConn.set(socket, k + 1);
    if (k >= 1) {
      socket.destroy();
      return;
    }
    seen.push(1);
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  });
  const c = client(t, port);
  assert.equal((await ask(c, '/first')).body, 'ok');
  assert.equal((await ask(c, '/second')).body, 'ok', 'resent on a new connection');
  assert.equal(connections(), 2);
  assert.equal(seen.length, 2);
  perConn = new WeakMap();
});

test('a failure on a fresh connection is not retried; one that got part of its answer is not resent', async (t) => {
  let requests = 0;
  const { port } = await raw(t, (_head, socket) => {
    requests++;
    socket.end('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nonly');
  });
  const c = client(t, port);
  await assert.rejects(ask(c, '/'), /closed/);
  assert.equal(requests, 1);
});

test('Connection: close and HTTP/1.0 answers are not reused', async (t) => {
  const { port, connections } = await raw(t, (head, socket) => {
    socket.write(head.includes('/close') ? 'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n' : 'HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n');
  });
  const c = client(t, port);
  await ask(c, '/close');
  await ask(c, '/ten');
  await ask(c, '/close');
  assert.equal(connections(), 3);
});

test('a check past its timeout fails; the checks pipelined behind it still get their answers', async (t) => {
  // A conforming server answers in order: nothing behind the unanswered check on its connection.
  const stuck = new WeakSet<Socket>();
  const { port, connections } = await raw(t, (head, socket) => {
    if (head.includes('/slow')) stuck.add(socket);
    if (stuck.has(socket)) return;
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfast');
  });
  const c = client(t, port);
  const slow = ask(c, '/slow', [], { timeoutMs: 50 });
  const fast = ask(c, '/fast', [], { timeoutMs: 5000 });
  await assert.rejects(slow, /timed out/);
  assert.equal((await fast).body, 'fast');
  assert.equal(connections(), 2, 'the timed-out connection is closed, the other check resent');
});

test('values that would end a header line are refused before anything is written', async (t) => {
  let requests = 0;
  const { port } = await raw(t, (_head, socket) => {
    requests++;
    socket.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
  });
  const c = client(t, port);
  await assert.rejects(ask(c, '/', ['x-evil', 'a\r\nkubeflow-userid: admin']), /cannot be sent/);
  await assert.rejects(ask(c, '/a b'), /cannot be sent/);
  await assert.rejects(ask(c, '/', ['x-wide', 'ü€']), /cannot be sent/);
  assert.equal((await ask(c, '/', ['x-latin1', 'café'])).status, 200);
  assert.equal(requests, 1);
});

test('a refused connection fails the check', async (t) => {
  const server = createServer();
  const port = await listen(t, server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const c = client(t, port);
  await assert.rejects(ask(c, '/'), (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED');
});
