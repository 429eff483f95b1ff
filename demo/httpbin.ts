/**
 * An httpbin-like upstream for gateway tests and demos (after httpbin.org / kennethreitz/httpbin,
 * which Istio's samples use). Plain node:http, no per-request logging.
 *
 * One deliberate difference from httpbin: `/headers` and friends show every request header,
 * including X-Forwarded-For / X-Request-Id / Via that httpbin hides unless `?show_env=1` —
 * here the point is to see what the gateway sent.
 *
 * Standalone: node --import tsx demo/httpbin.ts [--port 8000] [--host 127.0.0.1]
 */
import { randomBytes, randomUUID, createHash, timingSafeEqual } from 'node:crypto';
import { validateHeaderName, validateHeaderValue } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseArgs } from 'node:util';
import { WebSocketServer } from 'ws';
import {
  BodyTooLargeError,
  closeOnSignals,
  isMain,
  listen,
  parseCookies,
  parsePort,
  parseRequestUrl,
  readBody,
  sendJson,
  sendText,
} from './bookinfo/serve.ts';
import type { ListenOptions, ServiceHandle } from './bookinfo/serve.ts';

export interface HttpbinOptions extends ListenOptions {
  /** Upper bound for `/delay/:s`, seconds. Default 10, as httpbin. */
  maxDelaySeconds?: number;
  /** Largest request body accepted by /anything, /post, ... Default 1 MiB. */
  maxBodyBytes?: number;
}

export interface HttpbinHandle extends ServiceHandle {
  /** How many `/delay` timers are pending (lets tests see that a client abort cancelled one). */
  activeDelays(): number;
}

const TEAPOT = `
    -=[ teapot ]=-

       _...._
     .'  _ _ \`.
    | ."\` ^ \`". _,
    \\_;\`"---"\`|//
      |       ;/
      \\_     _/
        \`"""\`
`;

const MAX_BYTES = 100 * 1024;
const MAX_STREAM = 100;
const MAX_REDIRECTS = 100;

/** httpbin's header-name form: each dash-separated word capitalised (`x-b3-traceid` → `X-B3-Traceid`). */
export function titleCase(name: string): string {
  return name
    .split('-')
    .map((w) => (w ? w[0]!.toUpperCase() + w.slice(1).toLowerCase() : w))
    .join('-');
}

/** Request headers in httpbin's shape: Title-Case names, repeated headers joined with ','. */
export function httpbinHeaders(rawHeaders: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = titleCase(rawHeaders[i]!);
    const value = rawHeaders[i + 1]!;
    out[name] = Object.hasOwn(out, name) ? `${out[name]},${value}` : value;
  }
  return out;
}

function multiDict(params: URLSearchParams): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const key of new Set(params.keys())) {
    const all = params.getAll(key);
    out[key] = all.length === 1 ? all[0]! : all;
  }
  return out;
}

/** The client address: X-Forwarded-For's first hop when present, else the socket peer. */
function origin(req: IncomingMessage): string {
  const xff = req.headers['x-forwarded-for'];
  const first = (Array.isArray(xff) ? xff[0] : xff)?.split(',')[0]?.trim();
  if (first) return first;
  const addr = req.socket.remoteAddress ?? '';
  return addr.startsWith('::ffff:') ? addr.slice(7) : addr;
}

function fullUrl(req: IncomingMessage): string {
  const raw = req.url ?? '/';
  if (!raw.startsWith('/')) return raw;
  const proto = String(req.headers['x-forwarded-proto'] ?? '').split(',')[0]!.trim().toLowerCase();
  const scheme = proto === 'https' ? 'https' : 'http';
  return `${scheme}://${req.headers.host ?? 'localhost'}${raw}`;
}

interface BodyFields {
  data: string;
  files: Record<string, string>;
  form: Record<string, string | string[]>;
  json: unknown;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function bodyFields(req: IncomingMessage, body: Buffer): BodyFields {
  const type = String(req.headers['content-type'] ?? '').toLowerCase();
  if (type.startsWith('application/x-www-form-urlencoded')) {
    return { data: '', files: {}, form: multiDict(new URLSearchParams(body.toString('utf8'))), json: null };
  }
  let data: string;
  try {
    data = utf8.decode(body);
  } catch {
    data = `data:application/octet-stream;base64,${body.toString('base64')}`;
  }
  let json: unknown = null;
  if (data) {
    try {
      json = JSON.parse(data);
    } catch {
      json = null;
    }
  }
  return { data, files: {}, form: {}, json };
}

function basicInfo(req: IncomingMessage, url: URL): Record<string, unknown> {
  return {
    args: multiDict(url.searchParams),
    headers: httpbinHeaders(req.rawHeaders),
    origin: origin(req),
    url: fullUrl(req),
  };
}

/** httpbin (Flask's jsonify) sorts top-level keys; do the same so output diffs cleanly against it. */
function sorted(obj: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function sameSecret(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

function pickStatus(spec: string): number | undefined {
  const choices: { code: number; weight: number }[] = [];
  for (const part of spec.split(',')) {
    const [c, w] = part.split(':');
    if (!/^\d{3}$/.test(c ?? '')) return undefined;
    const code = Number(c);
    const weight = w === undefined ? 1 : Number(w);
    if (code < 200 || code > 599 || !Number.isFinite(weight) || weight < 0) return undefined;
    choices.push({ code, weight });
  }
  const total = choices.reduce((s, c) => s + c.weight, 0);
  if (choices.length === 0) return undefined;
  if (total <= 0) return choices[0]!.code;
  let r = Math.random() * total;
  for (const c of choices) {
    r -= c.weight;
    if (r < 0) return c.code;
  }
  return choices[choices.length - 1]!.code;
}

function sendStatus(res: ServerResponse, code: number): void {
  switch (code) {
    case 418:
      sendText(res, 418, TEAPOT, 'text/plain; charset=utf-8', { 'x-more-info': 'http://tools.ietf.org/html/rfc2324' });
      return;
    case 301:
    case 302:
    case 303:
    case 305:
    case 307:
      res.writeHead(code, { location: '/redirect/1', 'content-length': 0 });
      res.end();
      return;
    case 401:
      sendText(res, 401, '', 'text/html; charset=utf-8', { 'www-authenticate': 'Basic realm="Fake Realm"' });
      return;
    case 407:
      sendText(res, 407, '', 'text/html; charset=utf-8', { 'proxy-authenticate': 'Basic realm="Fake Realm"' });
      return;
    case 406:
      sendJson(res, 406, {
        message: 'Client did not request a supported media type.',
        accept: ['image/webp', 'image/svg+xml', 'image/jpeg', 'image/png', 'image/*'],
      });
      return;
    default:
      sendText(res, code, '', 'text/html; charset=utf-8');
  }
}

/** Response headers /response-headers may not set: framing and hop-by-hop headers are ours. */
const RESERVED_RESPONSE_HEADERS = new Set([
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'proxy-connection',
]);

const METHOD_ROUTES: Record<string, string> = {
  '/get': 'GET',
  '/post': 'POST',
  '/put': 'PUT',
  '/patch': 'PATCH',
  '/delete': 'DELETE',
};

/** Starts httpbin. See the module comment for the endpoint list. */
export async function startHttpbin(opts: HttpbinOptions = {}): Promise<HttpbinHandle> {
  const maxDelay = opts.maxDelaySeconds ?? 10;
  const maxBody = opts.maxBodyBytes ?? 1024 * 1024;
  const delays = new Set<NodeJS.Timeout>();
  const wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('error', () => ws.terminate());
  });

  const readFields = async (req: IncomingMessage, res: ServerResponse): Promise<BodyFields | undefined> => {
    try {
      return bodyFields(req, await readBody(req, maxBody));
    } catch (err) {
      if (!(err instanceof BodyTooLargeError)) throw err;
      sendJson(res, 413, { error: err.message });
      return undefined;
    }
  };

  const handler = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = parseRequestUrl(req);
    const path = url.pathname;
    const method = req.method ?? 'GET';
    const segs = path.split('/');
    const head = `/${segs[1] ?? ''}`;

    if (Object.hasOwn(METHOD_ROUTES, path)) {
      const want = METHOD_ROUTES[path]!;
      if (method !== want && !(want === 'GET' && method === 'HEAD')) {
        sendJson(res, 405, { error: `method ${method} not allowed` }, { allow: want === 'GET' ? 'GET, HEAD' : want });
        return;
      }
      if (want === 'GET') {
        sendJson(res, 200, basicInfo(req, url));
        return;
      }
      const fields = await readFields(req, res);
      if (fields) sendJson(res, 200, sorted({ ...basicInfo(req, url), ...fields }));
      return;
    }

    switch (head) {
      case '/': {
        if (path !== '/') break;
        sendText(
          res,
          200,
          'portico demo httpbin: /status/:code /headers /anything[/*] /delay/:s /ip /get /post /put /patch /delete ' +
            '/uuid /user-agent /bytes/:n /stream/:n /cookies[/set|/delete] /response-headers /redirect/:n ' +
            '/basic-auth/:user/:passwd /ws (websocket echo)\n',
        );
        return;
      }
      case '/anything': {
        const fields = await readFields(req, res);
        if (fields) sendJson(res, 200, sorted({ ...basicInfo(req, url), ...fields, method }));
        return;
      }
      case '/status': {
        const code = segs.length === 3 ? pickStatus(segs[2]!) : undefined;
        if (code === undefined) {
          sendText(res, 400, 'Invalid status code\n');
          return;
        }
        sendStatus(res, code);
        return;
      }
      case '/headers':
        if (segs.length !== 2) break;
        sendJson(res, 200, { headers: httpbinHeaders(req.rawHeaders) });
        return;
      case '/ip':
        if (segs.length !== 2) break;
        sendJson(res, 200, { origin: origin(req) });
        return;
      case '/uuid':
        if (segs.length !== 2) break;
        sendJson(res, 200, { uuid: randomUUID() });
        return;
      case '/user-agent':
        if (segs.length !== 2) break;
        sendJson(res, 200, { 'user-agent': req.headers['user-agent'] ?? null });
        return;
      case '/delay': {
        const raw = segs.length === 3 ? segs[2]! : '';
        const seconds = /^\d+(\.\d+)?$/.test(raw) ? Math.min(Number(raw), maxDelay) : NaN;
        if (Number.isNaN(seconds)) {
          sendJson(res, 400, { error: `delay must be a number of seconds (max ${maxDelay}), got '${raw}'` });
          return;
        }
        const fields = await readFields(req, res);
        if (!fields) return;
        const completed = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => {
            delays.delete(timer);
            res.off('close', onClose);
            resolve(true);
          }, seconds * 1000);
          // The client went away (or we are closing): stop waiting instead of holding a timer for up to 10 s.
          const onClose = (): void => {
            clearTimeout(timer);
            delays.delete(timer);
            resolve(false);
          };
          delays.add(timer);
          res.once('close', onClose);
        });
        if (completed) sendJson(res, 200, sorted({ ...basicInfo(req, url), ...fields }));
        return;
      }
      case '/bytes': {
        const raw = segs.length === 3 ? segs[2]! : '';
        if (!/^\d{1,9}$/.test(raw)) {
          sendJson(res, 400, { error: `bytes needs a count, got '${raw}'` });
          return;
        }
        const buf = randomBytes(Math.min(Number(raw), MAX_BYTES));
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': buf.length });
        res.end(buf);
        return;
      }
      case '/stream': {
        const raw = segs.length === 3 ? segs[2]! : '';
        if (!/^\d{1,9}$/.test(raw)) {
          sendJson(res, 400, { error: `stream needs a line count, got '${raw}'` });
          return;
        }
        const n = Math.min(Number(raw), MAX_STREAM);
        const info = basicInfo(req, url);
        res.writeHead(200, { 'content-type': 'application/json' });
        for (let id = 0; id < n; id++) res.write(`${JSON.stringify({ ...info, id })}\n`);
        res.end();
        return;
      }
      case '/cookies': {
        const sub = segs[2];
        if (segs.length === 2) {
          sendJson(res, 200, { cookies: parseCookies(req.headers.cookie) });
          return;
        }
        if (segs.length === 3 && (sub === 'set' || sub === 'delete')) {
          const cookies: string[] = [];
          for (const [name, value] of url.searchParams) {
            if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/.test(name)) {
              sendJson(res, 400, { error: `invalid cookie name '${name}'` });
              return;
            }
            cookies.push(
              sub === 'set' ? `${name}=${encodeURIComponent(value)}; Path=/` : `${name}=; Path=/; Max-Age=0`,
            );
          }
          res.writeHead(302, { location: '/cookies', 'set-cookie': cookies, 'content-length': 0 });
          res.end();
          return;
        }
        break;
      }
      case '/response-headers': {
        if (segs.length !== 2) break;
        const set: Record<string, string | string[]> = {};
        try {
          for (const key of new Set(url.searchParams.keys())) {
            const lower = key.toLowerCase();
            if (RESERVED_RESPONSE_HEADERS.has(lower)) continue;
            const values = url.searchParams.getAll(key);
            validateHeaderName(key);
            for (const v of values) validateHeaderValue(key, v);
            set[key] = values.length === 1 ? values[0]! : values;
          }
        } catch (err) {
          sendJson(res, 400, { error: `invalid response header: ${(err as Error).message}` });
          return;
        }
        const body = { 'Content-Type': 'application/json', ...set };
        const text = `${JSON.stringify(body, null, 2)}\n`;
        // Lower-case keys so a query's `Content-Type` replaces ours instead of being sent twice.
        const out: Record<string, string | string[] | number> = { 'content-type': 'application/json' };
        for (const [k, v] of Object.entries(set)) out[k.toLowerCase()] = v;
        out['content-length'] = Buffer.byteLength(text);
        res.writeHead(200, out);
        res.end(text);
        return;
      }
      case '/redirect':
      case '/relative-redirect': {
        const raw = segs.length === 3 ? segs[2]! : '';
        const n = /^\d{1,3}$/.test(raw) ? Number(raw) : 0;
        if (n < 1 || n > MAX_REDIRECTS) {
          sendJson(res, 400, { error: `redirect count must be 1..${MAX_REDIRECTS}, got '${raw}'` });
          return;
        }
        res.writeHead(302, { location: n === 1 ? '/get' : `/relative-redirect/${n - 1}`, 'content-length': 0 });
        res.end();
        return;
      }
      case '/basic-auth': {
        if (segs.length !== 4) break;
        let user: string;
        let passwd: string;
        try {
          user = decodeURIComponent(segs[2]!);
          passwd = decodeURIComponent(segs[3]!);
        } catch {
          sendJson(res, 400, { error: 'basic-auth: user and password must be valid percent-encoded UTF-8' });
          return;
        }
        const auth = req.headers.authorization ?? '';
        const m = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(auth);
        const given = m ? Buffer.from(m[1]!, 'base64').toString('utf8') : '';
        if (m && sameSecret(given, `${user}:${passwd}`)) {
          sendJson(res, 200, { authenticated: true, user });
          return;
        }
        sendText(res, 401, '', 'text/html; charset=utf-8', { 'www-authenticate': 'Basic realm="Fake Realm"' });
        return;
      }
    }
    sendJson(res, 404, { error: `no route for ${path}` });
  };

  const handle = await listen('httpbin', handler, opts, {
    setup(server) {
      server.on('upgrade', (req: IncomingMessage, socket, head: Buffer) => {
        socket.on('error', () => socket.destroy());
        if (parseRequestUrl(req).pathname !== '/ws') {
          socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
          return;
        }
        wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
      });
    },
    onClose() {
      for (const timer of delays) clearTimeout(timer);
      delays.clear();
      for (const ws of wss.clients) ws.terminate();
      wss.close();
    },
  });
  return { port: handle.port, url: handle.url, close: handle.close, activeDelays: () => delays.size };
}

if (isMain(import.meta.url)) {
  (async () => {
    const { values } = parseArgs({
      args: process.argv.slice(2),
      options: { port: { type: 'string' }, host: { type: 'string' } },
    });
    const port = parsePort(values.port ?? process.env.PORT, 8000, '--port');
    const handle = await startHttpbin({ port, host: values.host ?? process.env.HOST ?? '127.0.0.1' });
    process.stdout.write(`httpbin listening on ${handle.url}\n`);
    closeOnSignals(handle);
  })().catch((err: unknown) => {
    process.stderr.write(`httpbin: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
  });
}
