/**
 * envoy.filters.http.fault, configured per route by VirtualService `fault`: a delay and an abort
 * drawn independently (gateway/fault.ts). Runs after the security filters, as Istio orders
 * traffic management after application security.
 */
import type { Snapshot } from '../../config/snapshot.ts';
import { decideFault, GRPC_CODES } from '../../gateway/fault.ts';
import type { FilterExchange, FilterResult, HttpFilter, LocalReply } from './types.ts';

function addFlag(x: FilterExchange, flag: string): void {
  x.flags = x.flags === '-' ? flag : `${x.flags},${flag}`;
}

function abortReply(x: FilterExchange, abort: { httpStatus?: number; grpcStatus?: string }): LocalReply {
  addFlag(x, 'FI');
  if (abort.grpcStatus !== undefined) return { status: 200, body: 'fault filter abort', flag: x.flags, grpcStatus: GRPC_CODES[abort.grpcStatus] ?? 2 };
  return { status: abort.httpStatus ?? 500, body: 'fault filter abort', flag: x.flags, headers: { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff', 'cache-control': 'no-store' } };
}

function anyFault(snapshot: Snapshot): boolean {
  const has = (vhs: readonly { routes: readonly { fault?: unknown }[] }[]): boolean => vhs.some((vh) => vh.routes.some((r) => r.fault !== undefined));
  return snapshot.gateways.some((g) => g.ports.some((p) => has(p.virtualHosts))) || has(snapshot.mesh.virtualHosts);
}

export function faultFilter(snapshot: Snapshot): HttpFilter | undefined {
  if (!anyFault(snapshot)) return undefined;
  return {
    name: 'envoy.filters.http.fault',
    onRequest(x) {
      const route = x.route?.route;
      if (!route?.fault || route.action.kind !== 'route') return undefined;
      const d = decideFault(route.fault);
      if (d.delayMs > 0) {
        return new Promise<FilterResult>((resolve) => {
          setTimeout(() => {
            addFlag(x, 'DI');
            resolve(d.abort ? abortReply(x, d.abort) : undefined);
          }, d.delayMs);
        });
      }
      return d.abort ? abortReply(x, d.abort) : undefined;
    },
  };
}
