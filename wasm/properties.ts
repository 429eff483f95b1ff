/**
 * Stream properties as Envoy names and encodes them for proxy_get_property
 * (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/attributes):
 * strings as raw UTF-8, integers as 8-byte little-endian int64, booleans as one byte,
 * timestamps as int64 nanoseconds since the epoch, maps in the header-map pair encoding.
 * A property Portico does not know (or has no value for) answers NotFound.
 */
import { encodePairs, type Pairs } from './pairs.ts';

/** What the host knows about a stream when it starts (sent with request headers). */
export interface StreamInfo {
  /** `:path` as sent, with the query. */
  readonly path: string;
  readonly method: string;
  readonly authority: string;
  readonly scheme: string;
  /** `HTTP/1.1`, `HTTP/2`. */
  readonly protocol: string;
  /** Request start, milliseconds since the epoch. */
  readonly timeMs: number;
  readonly sourceAddress: string;
  readonly sourcePort?: number;
  readonly destinationAddress?: string;
  readonly destinationPort: number;
  readonly mtls: boolean;
  readonly peerPrincipal?: string;
  readonly requestedServerName?: string;
  readonly connectionId?: number;
  readonly routeName?: string;
  readonly clusterName?: string;
}

export interface ResponseInfo {
  readonly code: number;
  readonly codeDetails?: string;
  readonly flags?: number;
}

export interface NodeInfo {
  readonly id: string;
  readonly cluster: string;
  readonly metadata: Readonly<Record<string, string>>;
}

const enc = new TextEncoder();

function int(n: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigInt64(0, BigInt(Math.trunc(n)), true);
  return b;
}

function str(s: string | undefined): Uint8Array | undefined {
  return s === undefined ? undefined : enc.encode(s);
}

function header(map: Pairs | undefined, name: string): string | undefined {
  if (!map) return undefined;
  for (const [k, v] of map) if (k === name) return v;
  return undefined;
}

function withPort(addr: string | undefined, port: number | undefined): string | undefined {
  if (!addr) return undefined;
  const host = addr.includes(':') ? `[${addr}]` : addr;
  return port === undefined ? addr : `${host}:${port}`;
}

/** Names Portico answers, for the docs (a `*` takes one more segment). */
export const PROPERTY_NAMES = [
  'request.path', 'request.url_path', 'request.host', 'request.scheme', 'request.method', 'request.headers', 'request.headers.*',
  'request.referer', 'request.useragent', 'request.time', 'request.id', 'request.protocol', 'request.query',
  'response.code', 'response.code_details', 'response.flags', 'response.headers', 'response.headers.*',
  'source.address', 'source.port', 'destination.address', 'destination.port',
  'connection.mtls', 'connection.requested_server_name', 'connection.id', 'connection.uri_san_peer_certificate',
  'route_name', 'cluster_name', 'plugin_name', 'plugin_root_id', 'plugin_vm_id', 'node.id', 'node.cluster', 'node.metadata', 'node.metadata.*',
] as const;

export function streamProperty(path: readonly string[], s: StreamInfo, r: ResponseInfo | undefined, req: Pairs, resp: Pairs | undefined): Uint8Array | undefined {
  const [a, b, c] = path;
  switch (a) {
    case 'request':
      switch (b) {
        case 'path':
          return str(s.path);
        case 'url_path': {
          const q = s.path.indexOf('?');
          return str(q < 0 ? s.path : s.path.slice(0, q));
        }
        case 'query': {
          const q = s.path.indexOf('?');
          return str(q < 0 ? '' : s.path.slice(q + 1));
        }
        case 'host':
          return str(s.authority);
        case 'scheme':
          return str(s.scheme);
        case 'method':
          return str(s.method);
        case 'protocol':
          return str(s.protocol);
        case 'time':
          return int(s.timeMs * 1e6);
        case 'id':
          return str(header(req, 'x-request-id'));
        case 'referer':
          return str(header(req, 'referer'));
        case 'useragent':
          return str(header(req, 'user-agent'));
        case 'headers':
          if (c !== undefined) return str(header(req, c.toLowerCase()));
          return encodePairs(req.filter((p) => !p[0].startsWith(':')));
        default:
          return undefined;
      }
    case 'response':
      if (!r) return undefined;
      switch (b) {
        case 'code':
          return int(r.code);
        case 'code_details':
          return str(r.codeDetails ?? 'via_upstream');
        case 'flags':
          return int(r.flags ?? 0);
        case 'headers':
          if (!resp) return undefined;
          if (c !== undefined) return str(header(resp, c.toLowerCase()));
          return encodePairs(resp.filter((p) => !p[0].startsWith(':')));
        default:
          return undefined;
      }
    case 'source':
      if (b === 'address') return str(withPort(s.sourceAddress, s.sourcePort));
      if (b === 'port') return s.sourcePort === undefined ? undefined : int(s.sourcePort);
      return undefined;
    case 'destination':
      if (b === 'address') return str(withPort(s.destinationAddress, s.destinationPort));
      if (b === 'port') return int(s.destinationPort);
      return undefined;
    case 'connection':
      if (b === 'mtls') return Uint8Array.of(s.mtls ? 1 : 0);
      if (b === 'requested_server_name') return str(s.requestedServerName ?? '');
      if (b === 'id') return s.connectionId === undefined ? undefined : int(s.connectionId);
      if (b === 'uri_san_peer_certificate') return str(s.peerPrincipal ? `spiffe://${s.peerPrincipal}` : undefined);
      return undefined;
    case 'route_name':
      return str(s.routeName);
    case 'cluster_name':
      return str(s.clusterName);
    default:
      return undefined;
  }
}
