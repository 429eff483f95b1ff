/**
 * HTTP/1.1 Upgrade (websocket) proxying: routed exactly like a request, then the two sockets are
 * joined. Upgraded connections live on across config swaps: they hold no reference to a table.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Endpoint } from '../config/snapshot.ts';
import { ERR, isConnectFailure, type GatewayError } from './errors.ts';
import { applyHeaderOps, upstreamRequestHeaders } from './headers.ts';
import { routeRequest, type ListenerInfo, type ProxyDeps } from './proxy.ts';

function writeRawError(socket: Duplex, err: GatewayError, detail?: string): void {
  const body = `${err.message}${detail ? `: ${detail}` : ''}\n`;
  socket.end(
    `HTTP/1.1 ${err.status} ${err.code}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

function rawHead(status: number, message: string, headers: Record<string, string | string[] | undefined>): string {
  let out = `HTTP/1.1 ${status} ${message}\r\n`;
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) out += `${k}: ${one}\r\n`;
  }
  return out + '\r\n';
}

export function handleUpgrade(deps: ProxyDeps, listener: ListenerInfo, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  socket.on('error', () => socket.destroy());
  const routed = routeRequest(deps, listener, req);
  if ('redirect' in routed) {
    socket.end(`HTTP/1.1 ${routed.status} Moved Permanently\r\nlocation: ${routed.redirect}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
    return;
  }
  if ('error' in routed) return writeRawError(socket, routed.error, routed.detail);
  const { route, input, table } = routed;
  const action = route.route.action;
  if (action.kind !== 'route') return writeRawError(socket, ERR.BAD_REQUEST, 'this route does not accept upgrades');
  const dest = route.pick();
  const cluster = dest ? table.clusters.get(dest.cluster) : undefined;
  if (!dest || !cluster) return writeRawError(socket, ERR.NO_CLUSTER);
  const headers = upstreamRequestHeaders(req.headers, { remoteAddress: req.socket.remoteAddress ?? '', scheme: listener.scheme, authority: input.authority }, deps.headerPolicy);
  headers['host'] = action.rewrite?.authority ?? input.authority;
  headers['connection'] = 'Upgrade';
  headers['upgrade'] = String(req.headers.upgrade ?? 'websocket');
  applyHeaderOps(headers, route.route.headers?.request);
  applyHeaderOps(headers, dest.headers?.request);

  // Connect failures are retried on another endpoint, as for plain requests (the route's
  // retries.attempts and connect-failure); nothing was sent upstream yet, so it is always safe.
  const retryConnect = action.retries.retryOn.includes('connect-failure') ? action.retries.attempts : 0;
  const tried = new Set<Endpoint>();
  const attempt = (): void => {
    const endpoint = deps.balancer.pick(cluster, tried, { headers: req.headers, sourceIp: req.socket.remoteAddress ?? '', query: input.query })?.endpoint;
    if (!endpoint) return writeRawError(socket, ERR.NO_HEALTHY_UPSTREAM);
    tried.add(endpoint);
    const end = deps.balancer.start(cluster, endpoint);
    const upstreamReq = httpRequest({
      host: endpoint.address,
      port: endpoint.port,
      method: input.method,
      path: input.query ? `${input.path}?${input.query}` : input.path,
      headers,
      timeout: cluster.trafficPolicy.connectionPool?.tcp?.connectTimeoutMs ?? 10_000,
    });
    upstreamReq.on('timeout', () => upstreamReq.destroy(Object.assign(new Error('connect timeout'), { code: 'UND_ERR_CONNECT_TIMEOUT' })));
    upstreamReq.on('error', (err) => {
      if (isConnectFailure(err)) {
        end({ kind: 'connect-failure' });
        if (tried.size <= retryConnect && !socket.destroyed) return attempt();
      } else end({ kind: 'reset' });
      writeRawError(socket, ERR.UPSTREAM_CONNECT);
    });
    upstreamReq.on('response', (res) => {
      end({ kind: 'response', status: res.statusCode ?? 502 });
      // The upstream refused the upgrade: relay its answer as a plain response.
      socket.write(rawHead(res.statusCode ?? 502, res.statusMessage ?? '', { ...res.headers, connection: 'close' }));
      res.pipe(socket);
    });
    upstreamReq.on('upgrade', (res, upstreamSocket, upstreamHead) => {
      end({ kind: 'response', status: 101 });
      upstreamReq.setTimeout(0);
      upstreamSocket.setTimeout(0);
      socket.write(rawHead(101, res.statusMessage ?? 'Switching Protocols', res.headers));
      if (upstreamHead.length) socket.write(upstreamHead);
      if (head.length) upstreamSocket.write(head);
      upstreamSocket.on('error', () => socket.destroy());
      socket.on('close', () => upstreamSocket.destroy());
      upstreamSocket.on('close', () => socket.destroy());
      upstreamSocket.pipe(socket);
      socket.pipe(upstreamSocket);
    });
    upstreamReq.end();
  };
  attempt();
}
