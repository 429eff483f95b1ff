/**
 * Access log in Envoy's default text format (the subset of fields the gateway knows), written
 * asynchronously through a buffered stream so the request path only formats one line.
 * `[START_TIME] "METHOD PATH PROTOCOL" STATUS FLAGS - - - DURATION - "-" "-" "-" "AUTHORITY" "UPSTREAM"`
 */
import type { Writable } from 'node:stream';
import type { RequestRecord } from '../proxy.ts';

export function textAccessLogger(out: Writable): (r: RequestRecord) => void {
  return (r) => {
    const route = r.route ? `${r.route.route.virtualService}#${r.route.route.index}` : '-';
    out.write(
      `[${new Date().toISOString()}] "${r.method} ${r.path}" ${r.status} ${r.flag} ${Math.round(r.durationMs)} "${r.authority}" "${r.upstream ?? '-'}" ${route}\n`,
    );
  };
}
