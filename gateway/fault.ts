/**
 * Istio fault injection (Envoy's fault filter): a delay and an abort, each drawn independently by
 * its own percentage. Delay first, then abort, as Envoy does. Injected aborts never reach an
 * upstream, so they are never retried.
 */
import type { FaultInjection } from '../config/snapshot.ts';

export interface FaultDecision {
  /** Milliseconds to wait before going on; 0 for none. */
  readonly delayMs: number;
  readonly abort?: { readonly httpStatus?: number; readonly grpcStatus?: string };
}

const NONE: FaultDecision = Object.freeze({ delayMs: 0 });

/** `random` returns [0, 1); injectable for tests. */
export function decideFault(fault: FaultInjection | undefined, random: () => number = Math.random): FaultDecision {
  if (!fault) return NONE;
  const delay = fault.delay && random() * 100 < fault.delay.percentage ? fault.delay.fixedDelayMs : 0;
  const abort = fault.abort && random() * 100 < fault.abort.percentage ? fault.abort : undefined;
  if (delay === 0 && !abort) return NONE;
  return { delayMs: delay, abort: abort ? { httpStatus: abort.httpStatus, grpcStatus: abort.grpcStatus } : undefined };
}

/** gRPC status codes by the names Istio accepts in `abort.grpcStatus`. */
export const GRPC_CODES: Readonly<Record<string, number>> = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
};

/** Envoy's HTTP → gRPC status mapping for locally generated replies to gRPC requests. */
export function grpcStatusForHttp(status: number): number {
  switch (status) {
    case 400:
      return 13;
    case 401:
      return 16;
    case 403:
      return 7;
    case 404:
      return 12;
    case 429:
    case 502:
    case 503:
    case 504:
      return 14;
    default:
      return 2;
  }
}
