/**
 * A tiny real upstream for gateway tests: echoes what it received as JSON, with a name so tests
 * can tell which upstream (or subset) answered. Listens on port 0.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { TestContext } from 'node:test';

export interface Echo {
  name: string;
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface Upstream {
  readonly port: number;
  readonly server: Server;
  /** Requests received, oldest first. */
  readonly seen: Echo[];
}

export async function startEcho(t: TestContext, name: string, handler?: (req: Echo, res: import('node:http').ServerResponse) => boolean | void): Promise<Upstream> {
  const seen: Echo[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const echo: Echo = { name, method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() };
      seen.push(echo);
      if (handler?.(echo, res)) return;
      const body = JSON.stringify(echo);
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }));
  const addr = server.address();
  return { port: typeof addr === 'object' && addr ? addr.port : 0, server, seen };
}
