/** networking.istio.io WorkloadEntry: https://istio.io/latest/docs/reference/config/networking/workload-entry/ */
import { ConfigErrorCodes } from '../errors.ts';
import { childPath, int, notEnforced, obj, str, strMap } from '../schema.ts';
import { labels } from './common.ts';

export interface WorkloadEntrySpec {
  address?: string;
  ports?: Record<string, number>;
  labels?: Record<string, string>;
  network?: string;
  locality?: string;
  weight?: number;
  serviceAccount?: string;
}

export const workloadEntryFields = {
  address: str({ nonEmpty: true }),
  ports: strMap(int(1, 65535)),
  labels,
  network: notEnforced(str(), 'no multi-network gateways'),
  locality: notEnforced(str(), 'no locality load balancing'),
  weight: int(0, 4294967295),
  serviceAccount: str(),
};

// Istio's validateWorkloadEntry: an address is required unless a network names where to reach it.
export const workloadEntrySpecSchema = obj(workloadEntryFields, {
  check: (we, path, r) => {
    if (typeof we.address === 'string' && we.address !== '') return;
    if (typeof we.network === 'string' && we.network !== '') {
      r.report(childPath(path, 'address'), ConfigErrorCodes.REQUIRED, `address is unset with network '${we.network}'`, 'warning');
    } else r.report(childPath(path, 'address'), ConfigErrorCodes.REQUIRED, 'address is required');
  },
});
