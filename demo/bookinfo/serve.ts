/**
 * The small amount of plumbing every demo upstream shares: listen on a port (0 = pick one),
 * report the URL, close fast (idle keep-alive sockets included), write JSON/text, read a
 * bounded body, and the standalone-entry helpers (`--port`, `--host`, signals).
 * Plain `node:http` on purpose: the demo services must be cheap enough to sit behind the
 * gateway in benchmarks without becoming the bottleneck, and they log nothing per request.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';

/** What every `startX()` resolves to. */
export interface ServiceHandle {
  /** The port actually bound (useful when 0 was asked for). */
  port: number;
  /** Base URL without trailing slash, e.g. `http://127.0.0.1:19080`. */
  url: string;
  /** Stops accepting, drops idle and in-flight connections, resolves when the socket is closed. */
  close(): Promise<void>;
}

export interface ListenOptions {
  /** 0 (the default) lets the OS pick. */
  port?: number;
  /** Defaults to 127.0.0.1: a demo service should not be reachable from the network by accident. */
  host?: string;
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/**
 * Starts `handler` on a fresh server. `name` is only used in error messages. `onClose` runs
 * before the sockets are torn down (to stop timers, close websocket clients, agents...).
 */
export async function listen(
  name: string,
  handler: Handler,
  opts: ListenOptions,
  hooks: { onClose?: () => void | Promise<void>; setup?: (server: Server) => void } = {},
): Promise<ServiceHandle & { server: Server }> {
  const port = opts.port ?? 0;
  const host = opts.host ?? '127.0.0.1';
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`${name}: port must be an integer 0..65535, got ${String(port)}`);
  }
  const server = createServer((req, res) => {
    let result: void | Promise<void>;
    try {
      result = handler(req, res);
    } catch (err) {
      internalError(res, err);
      return;
    }
    if (result) result.catch((err: unknown) => internalError(res, err));
  });
  hooks.setup?.(server);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new Error(`${name}: cannot listen on ${host}:${port}: ${err.code ?? err.message}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    server,
    port: bound,
    url: `http://${urlHost(host)}:${bound}`,
    close() {
      closing ??= (async () => {
        await hooks.onClose?.();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
      })();
      return closing;
    },
  };
}

function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

function internalError(res: ServerResponse, err: unknown): void {
  if (res.headersSent) {
    res.destroy(err instanceof Error ? err : undefined);
    return;
  }
  sendJson(res, 500, { error: 'internal error' });
}

/** JSON the way httpbin writes it: two-space indent and a trailing newline. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

export function sendText(
  res: ServerResponse,
  status: number,
  body: string,
  contentType = 'text/plain; charset=utf-8',
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { ...headers, 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`request body exceeds ${limit} bytes`);
  }
}

/** Reads the whole request body, refusing more than `limit` bytes. */
export async function readBody(req: IncomingMessage, limit = 1024 * 1024): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw new BodyTooLargeError(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new BodyTooLargeError(limit);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Splits `req.url` into a pathname and its query without trusting the Host header. */
export function parseRequestUrl(req: IncomingMessage): URL {
  const raw = req.url ?? '/';
  // Concatenate rather than resolve: `new URL('//x/y', base)` would read `x` as a host.
  if (raw.startsWith('/')) return new URL(`http://localhost${raw}`);
  // Absolute-form (a proxy-style request) is accepted too; only path and query are used.
  try {
    const abs = new URL(raw);
    return new URL(`http://localhost${abs.pathname}${abs.search}`);
  } catch {
    return new URL('http://localhost/');
  }
}

/** Parses a Cookie header into name → value (first occurrence wins, values percent-decoded when valid). */
export function parseCookies(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!header) return out;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    if (!name || Object.hasOwn(out, name)) continue;
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    try {
      out[name] = decodeURIComponent(value);
    } catch {
      out[name] = value;
    }
  }
  return out;
}

/** True when `moduleUrl` is the file node was started with (the standalone-entry check). */
export function isMain(moduleUrl: string): boolean {
  const entry = process.argv[1];
  return entry !== undefined && moduleUrl === pathToFileURL(entry).href;
}

/** Parses `--port N` style values with a clear message on nonsense. */
export function parsePort(value: string | undefined, fallback: number, where: string): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535) throw new RangeError(`${where}: port must be an integer 0..65535, got '${value}'`);
  return n;
}

/** Keeps a standalone service running until SIGINT/SIGTERM, then closes it. */
export function closeOnSignals(handle: ServiceHandle): void {
  const stop = (): void => {
    handle.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
