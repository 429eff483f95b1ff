/**
 * The sidecar's side of probe rewriting (Istio's pilot-agent status server, app_probe.go): the
 * injector pointed kubelet's HTTP/TCP probes at `/app-health/<container>/livez|readyz|startupz`
 * on the status port and put the originals in `ISTIO_KUBE_APP_PROBERS`. Here each such path runs
 * the original probe against the app on localhost, in plain HTTP (or HTTPS without verification,
 * as kubelet does) or as a TCP connect, so probes keep working when inbound traffic is STRICT mTLS.
 */
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import type { AppProber } from '../kube/inject.ts';

/** Parses ISTIO_KUBE_APP_PROBERS; throws naming the env var on bad JSON. */
export function parseAppProbers(text: string | undefined): Map<string, AppProber> {
  if (!text?.trim()) return new Map();
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`ISTIO_KUBE_APP_PROBERS: not JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error('ISTIO_KUBE_APP_PROBERS: want an object of path → prober');
  return new Map(Object.entries(raw as Record<string, AppProber>));
}

function probe(p: AppProber): Promise<number> {
  const timeoutMs = (p.timeoutSeconds ?? 1) * 1000;
  if (p.tcpSocket) {
    const { port, host } = p.tcpSocket;
    return new Promise((resolve) => {
      const s = connect({ port, host: host ?? '127.0.0.1', timeout: timeoutMs });
      s.once('connect', () => (s.destroy(), resolve(200)));
      s.once('timeout', () => (s.destroy(), resolve(503)));
      s.once('error', () => resolve(503));
    });
  }
  const g = p.httpGet!;
  const headers: Record<string, string> = { 'user-agent': 'kube-probe/portico' };
  for (const h of g.httpHeaders ?? []) headers[h.name.toLowerCase()] = h.value;
  const req = g.scheme === 'HTTPS' ? httpsRequest : httpRequest;
  return new Promise((resolve) => {
    const r = req({ host: g.host ?? '127.0.0.1', port: g.port, path: g.path, method: 'GET', headers, timeout: timeoutMs, rejectUnauthorized: false }, (res) => {
      res.resume();
      // kubelet: 200-399 is success.
      resolve(res.statusCode ?? 503);
    });
    r.once('timeout', () => r.destroy(new Error('timeout')));
    r.once('error', () => resolve(503));
    r.end();
  });
}

/** Serves `/app-health/...` and `/healthz/ready`; false when the path is not one of them. */
export function appHealthHandler(probers: ReadonlyMap<string, AppProber>, ready: () => boolean): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const path = (req.url ?? '').split('?')[0]!;
    if (path === '/healthz/ready') {
      const ok = ready();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ready\n' : 'not ready\n');
      return true;
    }
    if (!path.startsWith('/app-health/')) return false;
    const p = probers.get(path);
    if (!p) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`no app prober for ${path}\n`);
      return true;
    }
    void probe(p).then((status) => {
      const code = status >= 200 && status < 400 ? 200 : status >= 400 && status < 600 ? status : 503;
      res.writeHead(code, { 'content-type': 'text/plain' }).end(`${status}\n`);
    });
    return true;
  };
}
