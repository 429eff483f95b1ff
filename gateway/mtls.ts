/**
 * Mesh mTLS for proxies: the workload's identity (SPIFFE certificate + key + mesh root) as live
 * TLS contexts that rotate in place, the peer identity of an accepted connection, and the
 * upstream TLS policy that originates ISTIO_MUTUAL (Istio's auto mTLS) to sidecar'd endpoints.
 *
 * Rotation never drops connections: servers swap contexts with `setSecureContext` (existing
 * connections keep the context they handshook with) and client connects read `clientContext()`
 * on every new connection, so pools need not be rebuilt.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { connect as tlsConnect, createSecureContext, type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import type { Cluster, Endpoint, Snapshot } from '../config/snapshot.ts';
import type { UpstreamTls, UpstreamTlsPolicy } from './pools.ts';

/** A workload certificate as the sidecar holds it. */
export interface MeshCredentials {
  readonly certPem: string;
  readonly keyPem: string;
  /** The mesh root peers are verified against. */
  readonly caCertPem: string;
  readonly spiffeId: string;
  readonly notAfter?: Date;
}

/** The live identity of one proxy. `update()` rotates it; listeners subscribe with `onRotate`. */
export class MeshIdentity {
  private creds: MeshCredentials;
  private client: SecureContext;
  private readonly listeners = new Set<(creds: MeshCredentials) => void>();
  /** How many times the identity was rotated (tests, admin). */
  rotations = 0;

  constructor(creds: MeshCredentials) {
    checkCredentials(creds);
    this.creds = creds;
    this.client = createSecureContext(contextOptions(creds));
  }

  get spiffeId(): string {
    return this.creds.spiffeId;
  }

  credentials(): MeshCredentials {
    return this.creds;
  }

  /** Key, chain and root for a server or client context. */
  contextOptions(): { key: string; cert: string; ca: string } {
    return contextOptions(this.creds);
  }

  /** The client context for new upstream connections (current certificate). */
  clientContext(): SecureContext {
    return this.client;
  }

  /** Swaps in a renewed certificate; the SPIFFE ID must stay the same. */
  update(creds: MeshCredentials): void {
    checkCredentials(creds);
    if (creds.spiffeId !== this.creds.spiffeId) throw new Error(`certificate rotation changed the identity from ${this.creds.spiffeId} to ${creds.spiffeId}`);
    const client = createSecureContext(contextOptions(creds));
    this.creds = creds;
    this.client = client;
    this.rotations++;
    for (const l of this.listeners) l(creds);
  }

  onRotate(listener: (creds: MeshCredentials) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

function contextOptions(c: MeshCredentials): { key: string; cert: string; ca: string } {
  return { key: c.keyPem, cert: c.certPem, ca: c.caCertPem };
}

function checkCredentials(c: MeshCredentials): void {
  const cert = new X509Certificate(c.certPem);
  const uris = sanUris(cert.subjectAltName);
  if (!uris.includes(c.spiffeId)) throw new Error(`workload certificate does not carry its SPIFFE ID ${c.spiffeId} (SANs: ${cert.subjectAltName ?? 'none'})`);
}

/** URI SANs from Node's `subjectaltname` text (`URI:spiffe://…, DNS:…`). */
export function sanUris(text: string | undefined): string[] {
  if (!text) return [];
  const out: string[] = [];
  for (const part of text.split(/,\s*/)) if (part.startsWith('URI:')) out.push(part.slice(4));
  return out;
}

/** The verified mTLS peer of a connection. */
export interface MtlsPeer {
  /** `spiffe://td/ns/x/sa/y`, or undefined when the certificate has no SPIFFE URI. */
  readonly uri?: string;
  /** Istio's `source.principal`: the URI without `spiffe://`. */
  readonly principal?: string;
  readonly namespace?: string;
  /** SHA-256 of the peer certificate's DER, lower-case hex (XFCC `Hash`). */
  readonly hash: string;
}

const peers = new WeakMap<TLSSocket, MtlsPeer | null>();

/** The authorized client certificate of a TLS connection, computed once per connection. */
export function mtlsPeer(socket: TLSSocket): MtlsPeer | undefined {
  const cached = peers.get(socket);
  if (cached !== undefined) return cached ?? undefined;
  let peer: MtlsPeer | null = null;
  if (socket.authorized) {
    const cert: PeerCertificate = socket.getPeerCertificate(false);
    if (cert && cert.raw) {
      const uri = sanUris(cert.subjectaltname).find((u) => u.startsWith('spiffe://'));
      const principal = uri?.slice('spiffe://'.length);
      const ns = principal ? /\/ns\/([^/]+)\//.exec(principal)?.[1] : undefined;
      peer = { uri, principal, namespace: ns, hash: createHash('sha256').update(cert.raw).digest('hex') };
    }
  }
  peers.set(socket, peer);
  return peer ?? undefined;
}

/** Istio's auto mTLS opt-out: a WorkloadEntry labelled `sidecar.istio.io/inject: "false"` has no sidecar. */
export const NO_SIDECAR_LABEL = 'sidecar.istio.io/inject';

/** The SPIFFE IDs an endpoint may present: DestinationRule subjectAltNames, else its service account's. */
function expectedIds(cluster: Cluster, endpoint: Endpoint, trustDomain: string): string[] {
  const sans = cluster.trafficPolicy.tls?.subjectAltNames;
  if (sans && sans.length) return [...sans];
  const ns = endpoint.workload?.split('/')[0] ?? 'default';
  return [`spiffe://${trustDomain}/ns/${ns}/sa/${endpoint.serviceAccount ?? 'default'}`];
}

/**
 * Whether a proxy with a mesh identity talks mTLS to `endpoint`: DestinationRule `ISTIO_MUTUAL`,
 * or no `tls` setting and the endpoint is a sidecar'd mesh workload (auto mTLS). MESH_EXTERNAL
 * hosts, plain DNS names and WorkloadEntries labelled `sidecar.istio.io/inject: "false"` get
 * plaintext, as does an explicit `DISABLE`.
 */
export function wantsIstioMutual(cluster: Cluster, endpoint: Endpoint): boolean {
  const mode = cluster.trafficPolicy.tls?.mode;
  if (mode === 'ISTIO_MUTUAL') return true;
  if (mode !== undefined) return false;
  return !cluster.meshExternal && endpoint.workload !== undefined && endpoint.labels[NO_SIDECAR_LABEL] !== 'false';
}

/**
 * The upstream TLS policy of a proxy holding `identity`: ISTIO_MUTUAL where `wantsIstioMutual`,
 * verifying the chain against the mesh root and the peer's SPIFFE ID against the expected one.
 * `snapshot` gives the current trust domain.
 */
export function meshUpstreamTls(identity: MeshIdentity, snapshot: () => Snapshot): UpstreamTlsPolicy {
  const cache = new WeakMap<Endpoint, { td: string; tls: UpstreamTls | undefined }>();
  return (cluster, endpoint) => {
    const td = snapshot().meshConfig.trustDomain;
    const hit = cache.get(endpoint);
    if (hit && hit.td === td) return hit.tls;
    let tls: UpstreamTls | undefined;
    if (wantsIstioMutual(cluster, endpoint)) {
      const ids = expectedIds(cluster, endpoint, td);
      // Istio's SNI for mesh mTLS: outbound_.<port>_.<subset>_.<host>.
      const servername = cluster.trafficPolicy.tls?.sni ?? `outbound_.${cluster.port}_.${cluster.subset ?? ''}_.${cluster.host}`;
      const timeoutMs = cluster.trafficPolicy.connectionPool?.tcp?.connectTimeoutMs ?? 10_000;
      tls = {
        key: `istio-mutual|${ids.join(',')}`,
        connect: (_opts, cb) => {
          let done = false;
          const finish = (err: Error | null, socket: TLSSocket | null): void => {
            if (done) return;
            done = true;
            clearTimeout(timer);
            if (err) {
              socket?.destroy();
              cb(err, null);
            } else cb(null, socket!);
          };
          const socket = tlsConnect({
            host: endpoint.address,
            port: endpoint.port,
            servername,
            secureContext: identity.clientContext(),
            ALPNProtocols: ['http/1.1'],
            rejectUnauthorized: true,
            checkServerIdentity: (_host, cert) => {
              const uris = sanUris(cert.subjectaltname);
              if (ids.some((id) => uris.includes(id))) return undefined;
              return Object.assign(new Error(`upstream ${endpoint.address}:${endpoint.port} presented ${uris.join(', ') || 'no SPIFFE ID'}, want ${ids.join(' or ')}`), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
            },
          });
          socket.setNoDelay(true);
          const timer = setTimeout(() => finish(Object.assign(new Error(`connect timeout to ${endpoint.address}:${endpoint.port}`), { code: 'UND_ERR_CONNECT_TIMEOUT' }), socket), timeoutMs);
          socket.once('secureConnect', () => finish(null, socket));
          socket.once('error', (err) => finish(err, socket));
        },
      };
    }
    cache.set(endpoint, { td, tls });
    return tls;
  };
}
