/** networking.istio.io WorkloadEntry: https://istio.io/latest/docs/reference/config/networking/workload-entry/ */
import { int, obj, str, strMap } from '../schema.ts';
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
  network: str(),
  locality: str(),
  weight: int(0, 4294967295),
  serviceAccount: str(),
};

export const workloadEntrySpecSchema = obj(workloadEntryFields);
