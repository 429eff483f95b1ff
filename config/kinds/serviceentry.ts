/** networking.istio.io ServiceEntry: https://istio.io/latest/docs/reference/config/networking/service-entry/ */
import { ConfigErrorCodes } from '../errors.ts';
import { arr, childPath, int, obj, oneOfStr, str } from '../schema.ts';
import { exportTo, hostString, workloadSelector } from './common.ts';
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

export const serviceEntrySpecSchema = obj(
  {
    hosts: arr(hostString, { minItems: 1 }),
    addresses: arr(str()),
    ports: arr(
      obj({ number: int(1, 65535), protocol: oneOfStr(PORT_PROTOCOLS), name: str({ nonEmpty: true }), targetPort: int(1, 65535) }, {
        required: ['number', 'name'],
      }),
    ),
    location: oneOfStr(['MESH_EXTERNAL', 'MESH_INTERNAL']),
    resolution: oneOfStr(['NONE', 'STATIC', 'DNS', 'DNS_ROUND_ROBIN']),
    endpoints: arr(obj(workloadEntryFields)),
    workloadSelector,
    exportTo,
    subjectAltNames: arr(str()),
  },
  {
    required: ['hosts'],
    oneOf: ['endpoints', 'workloadSelector'],
    check: (se, path, r) => {
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
