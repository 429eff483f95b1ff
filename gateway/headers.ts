/**
 * Header handling at the proxy boundary, following Envoy's http_conn_man header docs:
 * hop-by-hop removal, `x-forwarded-for` / `x-forwarded-proto` / `x-forwarded-host`,
 * `x-request-id`, removal of client-sent identity headers, and Istio's header operations.
 */
import { randomUUID } from 'node:crypto';
import type { HeaderOps } from '../config/snapshot.ts';

export type HeaderMap = Record<string, string | string[]>;
type IncomingHeaders = Readonly<Record<string, string | string[] | undefined>>;

/** RFC 9110 §7.6.1 connection-specific fields, plus the legacy ones proxies must not forward. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
  'host',
]);

/** Identity headers the gateway itself sets after authentication; never trusted from clients. */
export const DEFAULT_IDENTITY_HEADERS: readonly string[] = ['kubeflow-userid', 'kubeflow-groups'];

/** Canonical form used to catch `Kubeflow_UserID`-style variants of an identity header. */
function canonicalName(name: string): string {
  return name.toLowerCase().replace(/_/g, '-');
}

export interface HeaderPolicy {
  /** Canonical identity header names to strip (lower-case, `-` separated). */
  readonly identityHeaders: ReadonlySet<string>;
  /** Envoy `xff_num_trusted_hops`: 0 means the downstream peer is the client (edge). */
  readonly trustedHops: number;
  /** Keep a well-formed client `x-request-id` (Istio gateways do); else always generate. */
  readonly preserveRequestId: boolean;
}

export function makeHeaderPolicy(opts: { identityHeaders?: readonly string[]; trustedHops?: number; preserveRequestId?: boolean } = {}): HeaderPolicy {
  return {
    identityHeaders: new Set((opts.identityHeaders ?? DEFAULT_IDENTITY_HEADERS).map(canonicalName)),
    trustedHops: opts.trustedHops ?? 0,
    preserveRequestId: opts.preserveRequestId ?? true,
  };
}

/** The peer address as Envoy reports it: IPv4-mapped IPv6 (`::ffff:1.2.3.4`) shown as IPv4. */
export function peerAddress(remote: string | undefined): string {
  if (!remote) return '';
  return remote.startsWith('::ffff:') && remote.includes('.') ? remote.slice(7) : remote;
}

const REQUEST_ID = /^[A-Za-z0-9._:\-]{1,128}$/;

export interface DownstreamFacts {
  readonly remoteAddress: string;
  /** Scheme of the downstream connection (`http` or `https`). */
  readonly scheme: string;
  /** Host as the client sent it (`:authority` or Host). */
  readonly authority: string;
}

/**
 * Builds the upstream request headers from the client's. Always: drops hop-by-hop, pseudo and
 * identity headers (every case and `_` variant) and `x-envoy-*` from untrusted peers; appends
 * the peer to `x-forwarded-for`; sets `x-forwarded-proto`/`-host` unless a trusted hop did;
 * ensures an `x-request-id`.
 */
export function upstreamRequestHeaders(incoming: IncomingHeaders, facts: DownstreamFacts, policy: HeaderPolicy): HeaderMap {
  const out: HeaderMap = {};
  const trusted = policy.trustedHops > 0;
  const connectionTokens = connectionListed(incoming['connection']);
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined) continue;
    if (name.charCodeAt(0) === 58 /* : */) continue;
    if (HOP_BY_HOP.has(name)) continue;
    if (connectionTokens !== undefined && connectionTokens.has(name)) continue;
    if (policy.identityHeaders.has(name) || (name.includes('_') && policy.identityHeaders.has(canonicalName(name)))) continue;
    if (!trusted && name.startsWith('x-envoy-')) continue;
    out[name] = value;
  }
  // TE: trailers is end-to-end meaningful for gRPC and is the one TE value a proxy forwards.
  const te = incoming['te'];
  if (typeof te === 'string' && /(^|,)\s*trailers\s*(,|$)/i.test(te)) out['te'] = 'trailers';

  const xff = incoming['x-forwarded-for'];
  const prior = xff === undefined ? '' : Array.isArray(xff) ? xff.join(', ') : xff;
  const peer = peerAddress(facts.remoteAddress);
  out['x-forwarded-for'] = prior ? `${prior}, ${peer}` : peer;
  if (!trusted || out['x-forwarded-proto'] === undefined) out['x-forwarded-proto'] = facts.scheme;
  if (!trusted || out['x-forwarded-host'] === undefined) out['x-forwarded-host'] = facts.authority;

  const rid = incoming['x-request-id'];
  if (!(policy.preserveRequestId && typeof rid === 'string' && REQUEST_ID.test(rid))) out['x-request-id'] = randomUUID();
  return out;
}

function connectionListed(value: string | string[] | undefined): Set<string> | undefined {
  if (value === undefined) return undefined;
  // The common cases name no header: skip the split/Set.
  if (typeof value === 'string' && /^\s*(keep-alive|close)\s*$/i.test(value)) return undefined;
  const text = Array.isArray(value) ? value.join(',') : value;
  const tokens = text
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter((t) => t && t !== 'close' && t !== 'keep-alive');
  return tokens.length ? new Set(tokens) : undefined;
}

/** Applies Istio HeaderOperations in Envoy's order: remove, then set (overwrite), then add (append). */
export function applyHeaderOps(headers: HeaderMap, ops: HeaderOps | undefined): void {
  if (!ops) return;
  for (const name of ops.remove) delete headers[name];
  for (const [name, value] of ops.set) headers[name] = value;
  for (const [name, value] of ops.add) {
    const prior = headers[name];
    if (prior === undefined) headers[name] = value;
    else if (Array.isArray(prior)) headers[name] = [...prior, value];
    else headers[name] = [prior, value];
  }
}

/**
 * The original client address (`remote.ip`, what `remoteIpBlocks` compare): the peer when no hop
 * is trusted, else the Nth address from the right of the incoming `x-forwarded-for` (Envoy's
 * `xff_num_trusted_hops`; Istio's `gatewayTopology.numTrustedProxies`). With fewer entries than
 * trusted hops, the peer: an untrusted client cannot pick its own address by sending XFF.
 * https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/headers#x-forwarded-for
 */
export function clientAddress(xff: string | string[] | undefined, peer: string, trustedHops: number): string {
  if (trustedHops <= 0 || xff === undefined) return peer;
  const entries = (Array.isArray(xff) ? xff.join(',') : xff).split(',');
  const i = entries.length - trustedHops;
  if (i < 0) return peer;
  const v = entries[i]!.trim();
  return v ? peerAddress(v) : peer;
}
