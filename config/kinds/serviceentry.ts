/** networking.istio.io ServiceEntry: https://istio.io/latest/docs/reference/config/networking/service-entry/ */
import { ConfigErrorCodes } from '../errors.ts';
import { arr, childPath, int, isPlainObject, notEnforced, obj, oneOfStr, oneOfStrCi, str, type Reporter } from '../schema.ts';
import { cidrProblem, exportTo, hostString, workloadSelector } from './common.ts';
import { workloadEntryFields, type WorkloadEntrySpec } from './workloadentry.ts';

export const PORT_PROTOCOLS = ['HTTP', 'HTTPS', 'HTTP2', 'GRPC', 'GRPC-WEB', 'TCP', 'TLS', 'MONGO', 'MYSQL', 'REDIS', 'UDP'] as const;

export interface ServiceEntrySpec {
  hosts: string[];
  addresses?: string[];
  ports?: { number: number; protocol?: string; name: string; targetPort?: number }[];
  location?: 'MESH_EXTERNAL' | 'MESH_INTERNAL';
  resolution?: 'NONE' | 'STATIC' | 'DNS' | 'DNS_ROUND_ROBIN';
  endpoints?: WorkloadEntrySpec[];
  workloadSelector?: { labels?: Record<string, string> };
  exportTo?: string[];
  subjectAltNames?: string[];
}

const HTTP_OR_TLS = new Set(['HTTP', 'HTTPS', 'HTTP2', 'GRPC', 'GRPC-WEB', 'TLS']);

/** Names must be unique within a ServiceEntry's ports, and so must numbers (Istio: "already defined"). */
const uniquePorts = (ports: unknown[], path: string, r: Reporter): void => {
  const names = new Map<string, number>();
  const numbers = new Map<number, number>();
  ports.forEach((p, i) => {
    if (!isPlainObject(p)) return;
    if (typeof p.name === 'string') {
      if (names.has(p.name)) r.report(childPath(childPath(path, i), 'name'), ConfigErrorCodes.DUPLICATE_NAME, `service entry port name '${p.name}' already defined at ${path}[${names.get(p.name)}]`);
      else names.set(p.name, i);
    }
    if (typeof p.number === 'number') {
      if (numbers.has(p.number)) r.report(childPath(childPath(path, i), 'number'), ConfigErrorCodes.DUPLICATE_NAME, `service entry port ${p.number} already defined at ${path}[${numbers.get(p.number)}]`);
      else numbers.set(p.number, i);
    }
  });
};

export const serviceEntrySpecSchema = obj(
  {
    hosts: arr(hostString, { minItems: 1 }),
    addresses: notEnforced(
      arr(
        str({
          check: (v, p, r) => {
            const bad = cidrProblem(v);
            if (bad) r.report(p, ConfigErrorCodes.BAD_CIDR, bad);
          },
        }),
      ),
      'traffic is matched by host, not by address',
    ),
    ports: arr(
      // Istio parses the protocol case-insensitively; the model index upper-cases it.
      obj({ number: int(1, 65535), protocol: oneOfStrCi(PORT_PROTOCOLS), name: str({ nonEmpty: true }), targetPort: int(1, 65535) }, {
        required: ['number', 'name'],
      }),
      { check: uniquePorts },
    ),
    location: oneOfStr(['MESH_EXTERNAL', 'MESH_INTERNAL']),
    resolution: oneOfStr(['NONE', 'STATIC', 'DNS', 'DNS_ROUND_ROBIN']),
    endpoints: arr(obj(workloadEntryFields)),
    workloadSelector,
    exportTo: notEnforced(exportTo, 'the entry is visible in every namespace'),
    subjectAltNames: notEnforced(arr(str()), 'upstream certificates are checked against DestinationRule subjectAltNames or service accounts'),
  },
  {
    required: ['hosts'],
    oneOf: ['endpoints', 'workloadSelector'],
    // Istio's ValidateServiceEntry (pkg/config/validation/validation.go).
    check: (se, path, r) => {
      const hosts = Array.isArray(se.hosts) ? se.hosts : [];
      hosts.forEach((h, i) => {
        if (h === '*') r.report(childPath(childPath(path, 'hosts'), i), ConfigErrorCodes.BAD_HOST, "host '*' is not allowed in a ServiceEntry");
      });
      const resolution = typeof se.resolution === 'string' ? se.resolution : 'NONE';
      const endpoints = Array.isArray(se.endpoints) ? se.endpoints : [];
      const ports = (Array.isArray(se.ports) ? se.ports : []).filter(isPlainObject);
      if (Array.isArray(se.addresses) && se.addresses.some((a) => typeof a === 'string' && a.includes('/')) && resolution !== 'NONE' && resolution !== 'STATIC') {
        r.report(childPath(path, 'addresses'), ConfigErrorCodes.ONE_OF, 'CIDR addresses are allowed only for NONE/STATIC resolution');
      }
      if (resolution === 'NONE' && endpoints.length > 0) {
        r.report(childPath(path, 'endpoints'), ConfigErrorCodes.ONE_OF, 'no endpoints should be provided for resolution NONE (the default); set resolution STATIC or DNS');
      }
      if (resolution === 'NONE' && se.workloadSelector) {
        r.report(childPath(path, 'workloadSelector'), ConfigErrorCodes.ONE_OF, 'workloadSelector should not be set when resolution is NONE', 'warning');
      }
      if ((resolution === 'DNS' || resolution === 'DNS_ROUND_ROBIN') && endpoints.length === 0) {
        hosts.forEach((h, i) => {
          if (typeof h === 'string' && h.startsWith('*')) {
            r.report(childPath(childPath(path, 'hosts'), i), ConfigErrorCodes.BAD_HOST, `hosts must be FQDN if no endpoints are provided for resolution ${resolution}`);
          }
        });
      }
      if (resolution === 'DNS_ROUND_ROBIN' && endpoints.length > 1) {
        r.report(childPath(path, 'endpoints'), ConfigErrorCodes.ONE_OF, 'there must only be 0 or 1 endpoint for resolution DNS_ROUND_ROBIN');
      }
      if (resolution !== 'NONE' && hosts.length > 1) {
        const i = ports.findIndex((p) => typeof p.protocol === 'string' && !HTTP_OR_TLS.has(p.protocol.toUpperCase()));
        if (i >= 0) r.report(childPath(childPath(path, 'ports'), i), ConfigErrorCodes.ONE_OF, 'multiple hosts provided with non-HTTP, non-TLS ports');
      }
      if (se.resolution === 'STATIC' && Array.isArray(se.endpoints)) {
        se.endpoints.forEach((ep, i) => {
          const addr = (ep as WorkloadEntrySpec | null)?.address;
          if (!addr) r.report(childPath(childPath(childPath(path, 'endpoints'), i), 'address'), ConfigErrorCodes.REQUIRED, 'STATIC resolution needs an address');
        });
      }
      if (se.resolution === 'STATIC' && !se.endpoints && !se.workloadSelector) {
        r.report(childPath(path, 'endpoints'), ConfigErrorCodes.REQUIRED, 'STATIC resolution needs endpoints or a workloadSelector', 'warning');
      }
    },
  },
);
