/**
 * Benchmark upstream: a plain `node:http` server answering every request with a fixed small body.
 * Runs as its own process (spawned by bench/run.ts with an IPC channel) so it never competes with
 * the harness's event loop.
 *
 *   node --import tsx bench/upstream.ts --name v1 [--tls-cert F --tls-key F]
 *
 * Listens on 127.0.0.1 port 0 (plus a TLS port when a cert is given) and reports
 * `{ type: 'ready', http, https? }` over IPC. Answers `{ type: 'stats' }` with the request count
 * since the last `{ type: 'reset' }`, which lets the harness check a weighted split really split.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    name: { type: 'string', default: 'upstream' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
  },
});

const name = args.name ?? 'upstream';
const body = Buffer.from(`hello from ${name}\n`);
let count = 0;

function handle(req: IncomingMessage, res: ServerResponse): void {
  count++;
  // Drain any request body before answering so keep-alive stays usable.
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length, 'x-upstream': name });
  res.end(body);
}

function listen(server: ReturnType<typeof createServer>): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

const plain = createServer({ keepAliveTimeout: 60_000 }, handle);
const servers: ReturnType<typeof createServer>[] = [plain];
const http = await listen(plain);
let https: number | undefined;
if (args['tls-cert'] && args['tls-key']) {
  const tls = createTlsServer({ cert: readFileSync(args['tls-cert']), key: readFileSync(args['tls-key']), keepAliveTimeout: 60_000 }, handle);
  servers.push(tls);
  https = await listen(tls);
}

process.on('message', (msg: unknown) => {
  const type = (msg as { type?: unknown } | null)?.type;
  if (type === 'stats') process.send?.({ type: 'stats', name, count });
  else if (type === 'reset') {
    count = 0;
    process.send?.({ type: 'reset', name });
  }
});
// The harness going away (even by SIGKILL) closes the IPC channel: exit with it, never linger.
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => {
  for (const s of servers) s.closeAllConnections();
  process.exit(0);
});
process.send?.({ type: 'ready', name, http, https });
