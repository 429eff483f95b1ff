/**
 * The control plane client's HTTP: undici's `request` API over its light Pool (the same one the
 * proxies' upstream pools use, without fetch/WebSocket/cache), one pool per control plane origin.
 * Importing undici's full entry would cost a sidecar about 20 MB of RSS.
 */
import type { Dispatcher } from 'undici';
import { LightPool } from '../gateway/pools.ts';

type RequestOptions = Omit<Dispatcher.RequestOptions, 'path' | 'origin' | 'method'> & { method?: Dispatcher.HttpMethod };
export type LightRequest = (url: string | URL, opts?: RequestOptions) => Promise<Dispatcher.ResponseData>;

const pools = new Map<string, InstanceType<typeof LightPool>>();

const request: LightRequest = (url, opts = {}) => {
  const u = typeof url === 'string' ? new URL(url) : url;
  let pool = pools.get(u.origin);
  if (!pool) {
    pool = new LightPool(u.origin, { keepAliveTimeout: 2_000 });
    pools.set(u.origin, pool);
  }
  return pool.request({ ...opts, method: opts.method ?? 'GET', path: `${u.pathname}${u.search}` });
};

/** Kept async (callers await it) so the transport can stay lazily chosen. */
export function undiciRequest(): Promise<LightRequest> {
  return Promise.resolve(request);
}
