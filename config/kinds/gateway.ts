/** networking.istio.io Gateway: https://istio.io/latest/docs/reference/config/networking/gateway/ */
import { ConfigErrorCodes } from '../errors.ts';
import { arr, bool, childPath, int, obj, oneOfStr, str, type Check } from '../schema.ts';
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

export const serverTlsSchema = obj({
  httpsRedirect: bool,
  mode: oneOfStr(SERVER_TLS_MODES),
  serverCertificate: str({ nonEmpty: true }),
  privateKey: str({ nonEmpty: true }),
  caCertificates: str({ nonEmpty: true }),
  caCrl: str(),
  credentialName: str({ nonEmpty: true }),
  credentialNames: arr(str()),
  subjectAltNames: arr(str()),
  verifyCertificateSpki: arr(str()),
  verifyCertificateHash: arr(str()),
  minProtocolVersion: oneOfStr(TLS_VERSIONS),
  maxProtocolVersion: oneOfStr(TLS_VERSIONS),
  cipherSuites: arr(str()),
});

const serverSchema = obj(
  {
    port: obj(
      { number: int(1, 65535), name: str(), protocol: oneOfStr(SERVER_PROTOCOLS), targetPort: int(1, 65535) },
      { required: ['number', 'protocol'] },
    ),
    hosts: arr(str({ check: gatewayHostCheck }), { minItems: 1 }),
    bind: str(),
    name: str(),
    defaultEndpoint: str(),
    tls: serverTlsSchema,
  },
  {
    required: ['port', 'hosts'],
    check: (server, path, r) => {
      const port = server.port as RawServer['port'] | undefined;
      const tls = server.tls as RawServerTls | undefined;
      const protocol = port?.protocol;
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

export const gatewaySpecSchema = obj({ selector: labels, servers: arr(serverSchema, { minItems: 1 }) }, { required: ['servers'] });
