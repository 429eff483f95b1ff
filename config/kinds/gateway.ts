/** networking.istio.io Gateway: https://istio.io/latest/docs/reference/config/networking/gateway/ */
import { ConfigErrorCodes } from '../errors.ts';
import { arr, bool, childPath, int, isPlainObject, notEnforced, obj, oneOfStr, oneOfStrCi, str, unsupported, type Check } from '../schema.ts';
import { hostProblem, labels } from './common.ts';

export const SERVER_PROTOCOLS = ['HTTP', 'HTTPS', 'HTTP2', 'GRPC', 'GRPC-WEB', 'TCP', 'TLS', 'MONGO'] as const;
export const SERVER_TLS_MODES = ['PASSTHROUGH', 'SIMPLE', 'MUTUAL', 'AUTO_PASSTHROUGH', 'ISTIO_MUTUAL', 'OPTIONAL_MUTUAL'] as const;
export const TLS_VERSIONS = ['TLS_AUTO', 'TLSV1_0', 'TLSV1_1', 'TLSV1_2', 'TLSV1_3'] as const;

export interface RawServerTls {
  httpsRedirect?: boolean;
  mode?: (typeof SERVER_TLS_MODES)[number];
  serverCertificate?: string;
  privateKey?: string;
  caCertificates?: string;
  credentialName?: string;
  subjectAltNames?: string[];
  minProtocolVersion?: (typeof TLS_VERSIONS)[number];
  maxProtocolVersion?: (typeof TLS_VERSIONS)[number];
  cipherSuites?: string[];
}

export interface RawServer {
  port: { number: number; name?: string; protocol: (typeof SERVER_PROTOCOLS)[number]; targetPort?: number };
  hosts: string[];
  bind?: string;
  name?: string;
  tls?: RawServerTls;
  defaultEndpoint?: string;
}

export interface GatewaySpec {
  selector?: Record<string, string>;
  servers: RawServer[];
}

/** Gateway hosts are `[namespace/]host` where namespace is `*`, `.` or a name. */
const gatewayHostCheck: Check<string> = (value, path, r) => {
  const slash = value.indexOf('/');
  const ns = slash >= 0 ? value.slice(0, slash) : undefined;
  const host = slash >= 0 ? value.slice(slash + 1) : value;
  if (ns !== undefined && !/^(\*|\.|[a-z0-9]([a-z0-9-]*[a-z0-9])?)$/.test(ns)) {
    r.report(path, ConfigErrorCodes.BAD_HOST, `'${ns}' is not a namespace (want '*', '.' or a namespace name)`);
  }
  const p = hostProblem(host);
  if (p) r.report(path, ConfigErrorCodes.BAD_HOST, p);
};

export const serverTlsSchema = obj(
  {
    httpsRedirect: bool,
    mode: oneOfStr(SERVER_TLS_MODES),
    serverCertificate: str({ nonEmpty: true }),
    privateKey: str({ nonEmpty: true }),
    caCertificates: str({ nonEmpty: true }),
    caCrl: notEnforced(str(), 'client certificates are not checked against a CRL'),
    credentialName: str({ nonEmpty: true }),
    credentialNames: notEnforced(arr(str({ nonEmpty: true })), 'only credentialName is served; use it for the certificate'),
    tlsCertificates: unsupported(
      arr(obj({ serverCertificate: str({ nonEmpty: true }), privateKey: str({ nonEmpty: true }), caCertificates: str() })),
      'several server certificates per server; use serverCertificate/privateKey or credentialName',
    ),
    subjectAltNames: notEnforced(arr(str()), 'client certificates are verified against the CA only, not their SANs'),
    verifyCertificateSpki: notEnforced(arr(str()), 'client certificates are not pinned by SPKI'),
    verifyCertificateHash: notEnforced(arr(str()), 'client certificates are not pinned by hash'),
    minProtocolVersion: oneOfStr(TLS_VERSIONS),
    maxProtocolVersion: oneOfStr(TLS_VERSIONS),
    cipherSuites: arr(str()),
  },
  {
    // Istio's validateTLSOptions (pkg/config/validation/validation.go).
    check: (tls, path, r) => {
      const set = (k: string): boolean => tls[k] !== undefined && tls[k] !== null && tls[k] !== '' && !(Array.isArray(tls[k]) && tls[k].length === 0);
      if (tls.mode === 'ISTIO_MUTUAL' || tls.mode === 'AUTO_PASSTHROUGH') {
        r.report(childPath(path, 'mode'), ConfigErrorCodes.NOT_ENFORCED, `${tls.mode} servers are not served by Portico yet (the docs list the TLS modes it serves)`, 'warning');
      }
      if (tls.mode === 'ISTIO_MUTUAL') {
        for (const k of ['serverCertificate', 'privateKey', 'caCertificates', 'tlsCertificates', 'credentialName', 'credentialNames']) {
          if (set(k)) r.report(childPath(path, k), ConfigErrorCodes.ONE_OF, `ISTIO_MUTUAL TLS cannot have an associated ${k}`);
        }
        return;
      }
      if (tls.mode === 'PASSTHROUGH' || tls.mode === 'AUTO_PASSTHROUGH') {
        const certs = ['caCrl', 'serverCertificate', 'privateKey', 'caCertificates', 'tlsCertificates', 'credentialName', 'credentialNames'].filter(set);
        if (certs.length) r.report(childPath(path, certs[0]), ConfigErrorCodes.TLS_IGNORED, `${String(tls.mode)} mode does not use certificates; they are ignored`, 'warning');
      }
      const sources = [set('serverCertificate') && set('privateKey'), set('credentialName'), set('credentialNames'), set('tlsCertificates')].filter(Boolean).length;
      if (sources > 1) r.report(path, ConfigErrorCodes.ONE_OF, 'only one of credentialName, credentialNames, serverCertificate/privateKey, tlsCertificates may be set');
      if (set('caCrl')) {
        if (set('credentialName')) r.report(childPath(path, 'caCrl'), ConfigErrorCodes.ONE_OF, 'CRL is not supported with credentialName; put it in the credential');
        if (tls.mode === 'SIMPLE') r.report(childPath(path, 'caCrl'), ConfigErrorCodes.ONE_OF, 'CRL is not supported with SIMPLE TLS');
      }
    },
  },
);

const serverSchema = obj(
  {
    port: obj(
      // Istio parses the protocol case-insensitively; the model index upper-cases it.
      { number: int(1, 65535), name: str(), protocol: oneOfStrCi(SERVER_PROTOCOLS), targetPort: int(1, 65535) },
      { required: ['number', 'protocol'] },
    ),
    hosts: arr(str({ check: gatewayHostCheck }), { minItems: 1 }),
    bind: str(),
    name: str(),
    defaultEndpoint: notEnforced(str(), 'gateways route by VirtualService only'),
    tls: serverTlsSchema,
  },
  {
    required: ['port', 'hosts'],
    check: (server, path, r) => {
      const port = server.port as RawServer['port'] | undefined;
      const tls = server.tls as RawServerTls | undefined;
      const protocol = typeof port?.protocol === 'string' ? (port.protocol.toUpperCase() as RawServer['port']['protocol']) : undefined;
      if (protocol === 'HTTPS' || protocol === 'TLS') {
        if (!tls || !tls.mode) {
          r.report(childPath(path, 'tls'), ConfigErrorCodes.HTTPS_WITHOUT_TLS, `${protocol} server needs tls.mode (and a certificate)`);
        }
      } else if (tls?.mode && protocol) {
        r.report(childPath(childPath(path, 'tls'), 'mode'), ConfigErrorCodes.TLS_IGNORED, `tls.mode is ignored on a ${protocol} server (use protocol HTTPS)`, 'warning');
      }
      if (tls?.httpsRedirect && (protocol === 'HTTPS' || protocol === 'TLS')) {
        r.report(childPath(childPath(path, 'tls'), 'httpsRedirect'), ConfigErrorCodes.HTTPS_REDIRECT, `httpsRedirect on an ${protocol} server would redirect to itself`, 'warning');
      }
      if (protocol === 'HTTPS' && (tls?.mode === 'PASSTHROUGH' || tls?.mode === 'AUTO_PASSTHROUGH')) {
        r.report(childPath(childPath(path, 'tls'), 'mode'), ConfigErrorCodes.BAD_ENUM, `${tls.mode} needs port protocol TLS, not HTTPS`);
      }
    },
  },
);

export const gatewaySpecSchema = obj(
  {
    selector: labels,
    servers: arr(serverSchema, {
      minItems: 1,
      // Istio: "port names in servers must be unique"; it also requires a name ("port name must be set").
      check: (servers, path, r) => {
        const seen = new Map<string, number>();
        servers.forEach((s, i) => {
          const port = isPlainObject(s) && isPlainObject(s.port) ? s.port : undefined;
          if (!port) return;
          const at = childPath(childPath(childPath(path, i), 'port'), 'name');
          if (typeof port.name !== 'string' || port.name === '') {
            r.report(childPath(childPath(path, i), 'port'), ConfigErrorCodes.REQUIRED, 'port.name should be set (Istio rejects a Gateway server port without a name)', 'warning');
            return;
          }
          const first = seen.get(port.name);
          if (first !== undefined) r.report(at, ConfigErrorCodes.DUPLICATE_NAME, `port names in servers must be unique: '${port.name}' is also used by ${path}[${first}]`);
          else seen.set(port.name, i);
        });
      },
    }),
  },
  { required: ['servers'] },
);
