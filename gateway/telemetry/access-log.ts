/**
 * Access logs as Istio writes them (MeshConfig `accessLogFile`, `accessLogEncoding`,
 * `accessLogFormat`), using Envoy's `%COMMAND%` operators
 * (https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage).
 * A format is compiled once into a list of field functions; each request formats one line, and
 * lines are written in batches on the next tick through a stream, off the request's latency.
 * Secrets are never written: cookies, authorization and token-like headers print as
 * `[REDACTED]`, and token-like query parameters in paths and URLs have their values replaced.
 */
import { createWriteStream } from 'node:fs';
import type { TLSSocket } from 'node:tls';
import type { Writable } from 'node:stream';
import type { DownstreamRequest } from '../forward.ts';
import type { RequestRecord } from '../proxy.ts';

/** Istio's default TEXT access log format (MeshConfig accessLogFormat unset). */
export const ISTIO_TEXT_FORMAT =
  '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% ' +
  '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" ' +
  '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n';

/** Istio's default JSON access log fields. */
export const ISTIO_JSON_FORMAT: Readonly<Record<string, string>> = {
  start_time: '%START_TIME%',
  route_name: '%ROUTE_NAME%',
  method: '%REQ(:METHOD)%',
  path: '%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%',
  protocol: '%PROTOCOL%',
  response_code: '%RESPONSE_CODE%',
  response_flags: '%RESPONSE_FLAGS%',
  response_code_details: '%RESPONSE_CODE_DETAILS%',
  connection_termination_details: '%CONNECTION_TERMINATION_DETAILS%',
  bytes_received: '%BYTES_RECEIVED%',
  bytes_sent: '%BYTES_SENT%',
  duration: '%DURATION%',
  upstream_service_time: '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%',
  x_forwarded_for: '%REQ(X-FORWARDED-FOR)%',
  user_agent: '%REQ(USER-AGENT)%',
  request_id: '%REQ(X-REQUEST-ID)%',
  authority: '%REQ(:AUTHORITY)%',
  upstream_host: '%UPSTREAM_HOST%',
  upstream_cluster: '%UPSTREAM_CLUSTER%',
  upstream_local_address: '%UPSTREAM_LOCAL_ADDRESS%',
  downstream_local_address: '%DOWNSTREAM_LOCAL_ADDRESS%',
  downstream_remote_address: '%DOWNSTREAM_REMOTE_ADDRESS%',
  requested_server_name: '%REQUESTED_SERVER_NAME%',
  upstream_transport_failure_reason: '%UPSTREAM_TRANSPORT_FAILURE_REASON%',
};

/** What a log line is made from. */
export interface LogEntry {
  readonly req: DownstreamRequest;
  readonly record: RequestRecord;
  /** The x-request-id the request was forwarded with (the proxy may have generated it). */
  readonly requestId?: string;
  readonly traceId?: string;
}

type Value = string | number | undefined;
type Field = (e: LogEntry) => Value;

const SENSITIVE_HEADER = /^(authorization|proxy-authorization|cookie|set-cookie|x-api-key|x-auth-request-access-token)$|token|secret|password|session|credential/i;
const SENSITIVE_PARAM = /^(code|state|access_token|id_token|refresh_token|token|client_secret|password|secret|session|api_key|apikey|key|session_state|authuser)$/i;

/** Replaces the values of token-like query parameters (OIDC `code`, `access_token`, ...). */
export function redactQuery(pathAndQuery: string): string {
  const q = pathAndQuery.indexOf('?');
  if (q < 0) return pathAndQuery;
  const parts = pathAndQuery.slice(q + 1).split('&');
  let changed = false;
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    const eq = p.indexOf('=');
    const name = eq < 0 ? p : p.slice(0, eq);
    let decoded = name;
    try {
      decoded = decodeURIComponent(name);
    } catch {
      // keep the raw name
    }
    if (eq >= 0 && SENSITIVE_PARAM.test(decoded)) {
      parts[i] = `${name}=[REDACTED]`;
      changed = true;
    }
  }
  return changed ? `${pathAndQuery.slice(0, q + 1)}${parts.join('&')}` : pathAndQuery;
}

function header(e: LogEntry, name: string): string | undefined {
  const v = e.req.headers[name];
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v.join(',') : v;
}

function addr(address: string | undefined, port: number | undefined): string | undefined {
  if (!address) return undefined;
  const a = address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
  const host = a.includes(':') ? `[${a}]` : a;
  return port === undefined ? host : `${host}:${port}`;
}

function reqField(spec: string): Field {
  // REQ(X?Y): X, or Y when X is absent. Pseudo headers name request facts.
  const names = spec.split('?').map((n) => n.trim().toLowerCase());
  const one = (name: string): Field => {
    if (name === ':method') return (e) => e.record.method;
    if (name === ':path') return (e) => redactQuery(e.record.path);
    if (name === ':authority') return (e) => e.record.authority || undefined;
    if (name === ':scheme') return (e) => ((e.req.socket as TLSSocket | undefined)?.encrypted ? 'https' : 'http');
    if (name === 'x-request-id') return (e) => e.requestId ?? header(e, name);
    // Set by the proxy itself on rewrites; a client-sent one is not trusted.
    if (name === 'x-envoy-original-path') return () => undefined;
    if (SENSITIVE_HEADER.test(name)) return (e) => (e.req.headers[name] === undefined ? undefined : '[REDACTED]');
    return (e) => header(e, name);
  };
  const fields = names.map(one);
  return fields.length === 1 ? fields[0]! : (e) => {
    for (const f of fields) {
      const v = f(e);
      if (v !== undefined) return v;
    }
    return undefined;
  };
}

const NUMERIC = new Set(['RESPONSE_CODE', 'BYTES_RECEIVED', 'BYTES_SENT', 'DURATION']);

function operator(cmd: string, arg: string | undefined): Field {
  switch (cmd) {
    case 'START_TIME':
      return (e) => new Date(performance.timeOrigin + e.record.startMs).toISOString();
    case 'REQ':
      return reqField(arg ?? '');
    case 'RESP':
    case 'TRAILER':
      return () => undefined;
    case 'PROTOCOL':
      return (e) => e.record.protocol;
    case 'RESPONSE_CODE':
      return (e) => e.record.status;
    case 'RESPONSE_FLAGS':
      return (e) => e.record.flag;
    case 'RESPONSE_CODE_DETAILS':
      return (e) => (e.record.cluster && e.record.upstream && e.record.flag === '-' ? 'via_upstream' : undefined);
    case 'BYTES_RECEIVED':
      return (e) => e.record.requestBytes;
    case 'BYTES_SENT':
      return (e) => e.record.responseBytes;
    case 'DURATION':
      return (e) => Math.round(e.record.durationMs);
    case 'UPSTREAM_HOST':
      return (e) => e.record.upstream;
    case 'UPSTREAM_CLUSTER':
      return (e) => e.record.cluster;
    case 'ROUTE_NAME':
      return (e) => e.record.route?.route.name;
    case 'DOWNSTREAM_REMOTE_ADDRESS':
      return (e) => addr(e.req.socket?.remoteAddress, e.req.socket?.remotePort);
    case 'DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT':
    case 'DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT':
      return (e) => addr(e.req.socket?.remoteAddress, undefined);
    case 'DOWNSTREAM_LOCAL_ADDRESS':
      return (e) => addr(e.req.socket?.localAddress, e.req.socket?.localPort);
    case 'REQUESTED_SERVER_NAME':
      return (e) => (e.req.socket as TLSSocket | undefined)?.servername || undefined;
    case 'TRACE_ID':
      return (e) => e.traceId;
    case 'UPSTREAM_REQUEST_ATTEMPT_COUNT':
      return (e) => e.record.attempts;
    case 'HOSTNAME':
      return () => process.env.HOSTNAME;
    case 'CONNECTION_TERMINATION_DETAILS':
    case 'UPSTREAM_TRANSPORT_FAILURE_REASON':
    case 'UPSTREAM_LOCAL_ADDRESS':
      return () => undefined;
    default:
      throw new Error(`accessLogFormat: unsupported command operator %${cmd}${arg !== undefined ? `(${arg})` : ''}%`);
  }
}

const OP_RE = /%([A-Z_]+)(?:\(([^)]*)\))?(?::(\d+))?%/g;

interface Compiled {
  readonly literals: readonly string[];
  readonly fields: readonly Field[];
  /** The whole format is one numeric operator (JSON keeps it a number). */
  readonly numeric: boolean;
}

/** Compiles an Envoy format string. Throws with the operator that is not supported. */
export function compileFormat(format: string): Compiled {
  const literals: string[] = [];
  const fields: Field[] = [];
  let last = 0;
  let only: string | undefined;
  for (const m of format.matchAll(OP_RE)) {
    literals.push(format.slice(last, m.index));
    const base = operator(m[1]!, m[2]);
    const max = m[3] !== undefined ? Number(m[3]) : undefined;
    fields.push(max === undefined ? base : (e) => {
      const v = base(e);
      return typeof v === 'string' ? v.slice(0, max) : v;
    });
    last = m.index + m[0].length;
    only = m[0] === format ? m[1] : undefined;
  }
  literals.push(format.slice(last));
  return { literals, fields, numeric: only !== undefined && NUMERIC.has(only) };
}

function clean(v: string): string {
  // eslint-disable-next-line no-control-regex
  return /[\x00-\x1f\x7f"]/.test(v) ? v.replace(/[\x00-\x1f\x7f]/g, '?').replace(/"/g, '\\"') : v;
}

function renderText(c: Compiled, e: LogEntry): string {
  let out = c.literals[0]!;
  for (let i = 0; i < c.fields.length; i++) {
    const v = c.fields[i]!(e);
    out += v === undefined || v === '' ? '-' : typeof v === 'number' ? String(v) : clean(v);
    out += c.literals[i + 1]!;
  }
  return out;
}

export interface AccessLogOptions {
  /** MeshConfig accessLogFile: `/dev/stdout`, `/dev/stderr` or a file path (appended). Empty = off. */
  readonly file: string;
  readonly encoding?: 'TEXT' | 'JSON';
  /** MeshConfig accessLogFormat: a format string (TEXT) or a JSON object of format strings (JSON). */
  readonly format?: string;
  /** Write here instead of opening `file` (tests). */
  readonly stream?: Writable;
  /** Lines kept waiting for a slow destination before new ones are dropped. Default 10000. */
  readonly maxBuffered?: number;
}

export interface AccessLog {
  log(entry: LogEntry): void;
  /** Lines dropped because the destination could not keep up. */
  dropped(): number;
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** Builds the formatter for the chosen encoding/format. Throws on a bad format, naming the problem. */
export function compileAccessLogFormat(encoding: 'TEXT' | 'JSON', format: string | undefined): (e: LogEntry) => string {
  if (encoding === 'JSON') {
    let fields: Record<string, string> = { ...ISTIO_JSON_FORMAT };
    if (format !== undefined && format.trim() !== '') {
      let parsed: unknown;
      try {
        parsed = JSON.parse(format);
      } catch {
        throw new Error('accessLogFormat: with accessLogEncoding JSON the format must be a JSON object of "key": "%OPERATOR%" strings');
      }
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('accessLogFormat: JSON format must be an object');
      fields = {};
      for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
        if (typeof v !== 'string') throw new Error(`accessLogFormat: field '${k}' must be a string`);
        fields[k] = v;
      }
    }
    const compiled = Object.entries(fields).map(([k, f]) => [k, compileFormat(f)] as const);
    return (e) => {
      const obj: Record<string, string | number | null> = {};
      for (const [k, c] of compiled) {
        if (c.numeric) {
          const v = c.fields[0]!(e);
          obj[k] = v === undefined ? null : typeof v === 'number' ? v : Number(v);
        } else if (c.fields.length === 1 && c.literals[0] === '' && c.literals[1] === '') {
          const v = c.fields[0]!(e);
          obj[k] = v === undefined || v === '' ? null : v;
        } else obj[k] = renderText(c, e);
      }
      return `${JSON.stringify(obj)}\n`;
    };
  }
  const c = compileFormat(format !== undefined && format !== '' ? format : ISTIO_TEXT_FORMAT);
  const newline = c.literals[c.literals.length - 1]!.endsWith('\n');
  return newline ? (e) => renderText(c, e) : (e) => `${renderText(c, e)}\n`;
}

/** An access log writing batched lines to `opts.file` / `opts.stream`. */
export function createAccessLog(opts: AccessLogOptions): AccessLog {
  const format = compileAccessLogFormat(opts.encoding ?? 'TEXT', opts.format);
  const own = !opts.stream && opts.file !== '/dev/stdout' && opts.file !== '/dev/stderr';
  const out: Writable = opts.stream ?? (opts.file === '/dev/stdout' ? process.stdout : opts.file === '/dev/stderr' ? process.stderr : createWriteStream(opts.file, { flags: 'a' }));
  const max = opts.maxBuffered ?? 10_000;
  let pending: string[] = [];
  let scheduled = false;
  let blocked = false;
  let dropped = 0;
  const drain = (): void => {
    scheduled = false;
    if (pending.length === 0 || blocked) return;
    const text = pending.join('');
    pending = [];
    if (!out.write(text)) {
      blocked = true;
      out.once('drain', () => {
        blocked = false;
        drain();
      });
    }
  };
  out.on?.('error', () => {
    blocked = true;
  });
  return {
    log(entry) {
      if (pending.length >= max) {
        dropped++;
        return;
      }
      pending.push(format(entry));
      if (!scheduled) {
        scheduled = true;
        setImmediate(drain);
      }
    },
    dropped: () => dropped,
    flush: () =>
      new Promise<void>((resolve) => {
        drain();
        if (blocked) out.once('drain', () => resolve());
        else out.write('', () => resolve());
      }),
    async close() {
      await this.flush();
      if (own) await new Promise<void>((resolve) => out.end(resolve));
    },
  };
}
