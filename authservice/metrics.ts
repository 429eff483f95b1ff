/**
 * The authservice's own Prometheus metrics at `GET /metrics` (text format 0.0.4):
 *   portico_authservice_logins_total                         completed logins
 *   portico_authservice_login_failures_total{reason}         callbacks that did not log in, by error code
 *   portico_authservice_checks_total{result}                 ext_authz checks: allow | deny
 *   portico_authservice_session_store_duration_seconds{operation}   store latency histogram
 *   portico_authservice_session_store_errors_total{operation}
 * Labels are bounded: reasons are the stable PORTICO_ERR_* codes, operations the store's methods.
 *
 * `registerAuthserviceMetrics(app)` is called once right after `app.authservice` is decorated.
 * The text is served by the probe listener (health.ts, READINESS_PROBE_PORT), never on the check
 * port: there `/metrics` is an app's path like any other and must go through authentication.
 * (authservice/ does not import gateway/, so this keeps its own tiny registry.)
 */
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from 'fastify';
import { AUTHSERVICE_ERRORS } from './errors.ts';
import type { SessionStore } from './session/store.ts';

const STORE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const STORE_OPS = ['get', 'set', 'delete', 'touch', 'claimOnce', 'lock', 'ping'] as const;
type StoreOp = (typeof STORE_OPS)[number];

class StoreHistogram {
  readonly counts = new Float64Array(STORE_BUCKETS.length + 1);
  sum = 0;
  count = 0;
  observe(v: number): void {
    let i = 0;
    while (i < STORE_BUCKETS.length && v > STORE_BUCKETS[i]!) i++;
    this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

export class AuthserviceMetrics {
  logins = 0;
  readonly failures = new Map<string, number>();
  readonly checks = { allow: 0, deny: 0 };
  readonly storeDuration = new Map<StoreOp, StoreHistogram>(STORE_OPS.map((op) => [op, new StoreHistogram()]));
  readonly storeErrors = new Map<StoreOp, number>(STORE_OPS.map((op) => [op, 0]));

  loginFailed(reason: string): void {
    this.failures.set(reason, (this.failures.get(reason) ?? 0) + 1);
  }

  render(): string {
    const out: string[] = [];
    const family = (name: string, type: string, help: string) => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    family('portico_authservice_logins_total', 'counter', 'Logins completed (session issued).');
    out.push(`portico_authservice_logins_total ${this.logins}`);
    if (this.failures.size) {
      family('portico_authservice_login_failures_total', 'counter', 'Login callbacks that did not log in, by reason.');
      for (const [reason, n] of [...this.failures].sort()) out.push(`portico_authservice_login_failures_total{reason="${reason}"} ${n}`);
    }
    family('portico_authservice_checks_total', 'counter', 'ext_authz check requests by result.');
    out.push(`portico_authservice_checks_total{result="allow"} ${this.checks.allow}`, `portico_authservice_checks_total{result="deny"} ${this.checks.deny}`);
    family('portico_authservice_session_store_duration_seconds', 'histogram', 'Session store call latency by operation.');
    for (const [op, h] of this.storeDuration) {
      if (h.count === 0) continue;
      let cum = 0;
      for (let i = 0; i <= STORE_BUCKETS.length; i++) {
        cum += h.counts[i]!;
        out.push(`portico_authservice_session_store_duration_seconds_bucket{operation="${op}",le="${i < STORE_BUCKETS.length ? STORE_BUCKETS[i] : '+Inf'}"} ${cum}`);
      }
      out.push(`portico_authservice_session_store_duration_seconds_sum{operation="${op}"} ${h.sum}`, `portico_authservice_session_store_duration_seconds_count{operation="${op}"} ${h.count}`);
    }
    family('portico_authservice_session_store_errors_total', 'counter', 'Session store calls that failed, by operation.');
    for (const [op, n] of this.storeErrors) out.push(`portico_authservice_session_store_errors_total{operation="${op}"} ${n}`);
    return `${out.join('\n')}\n`;
  }

  /** Times every store call in place (the server's closures hold this same object). */
  instrument(store: SessionStore): void {
    const target = store as unknown as Record<StoreOp, (...args: unknown[]) => Promise<unknown>>;
    for (const op of STORE_OPS) {
      const original = target[op];
      if (typeof original !== 'function') continue;
      const bound = original.bind(store);
      const hist = this.storeDuration.get(op)!;
      target[op] = async (...args: unknown[]) => {
        const t0 = performance.now();
        try {
          return await bound(...args);
        } catch (err) {
          this.storeErrors.set(op, (this.storeErrors.get(op) ?? 0) + 1);
          throw err;
        } finally {
          hist.observe((performance.now() - t0) / 1000);
        }
      };
    }
  }
}

const CODE_RE = /PORTICO_ERR_[A-Z_]+/;

function reasonOf(payload: unknown, status: number): string {
  const text = typeof payload === 'string' ? payload : Buffer.isBuffer(payload) ? payload.toString('utf8', 0, 4096) : '';
  const code = CODE_RE.exec(text)?.[0];
  if (code && code in AUTHSERVICE_ERRORS) return code.slice('PORTICO_ERR_'.length).toLowerCase();
  return `status_${Math.trunc(status / 100)}xx`;
}

/** Adds the hooks that count logins, checks and store calls; `render()` the result on the probe port. */
export function registerAuthserviceMetrics<L extends FastifyBaseLogger>(app: FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, L>): AuthserviceMetrics {
  const m = new AuthserviceMetrics();
  const { config, store } = app.authservice;
  m.instrument(store);
  const callbackPath = new URL(config.redirectUrl, 'http://portico.invalid').pathname;
  const pathOf = (req: Pick<FastifyRequest, 'raw'>) => (req.raw.url ?? '/').split('?')[0]!;

  app.addHook('onSend', async (req, reply, payload: unknown) => {
    const path = pathOf(req);
    const status = reply.statusCode;
    if (path.endsWith(callbackPath) && (req.method === 'GET' || req.method === 'HEAD')) {
      if (status === 302 && reply.getHeader('set-cookie') !== undefined) m.logins++;
      else m.loginFailed(reasonOf(payload, status));
    } else if (!path.startsWith(`${config.urlPrefix}/`)) {
      if (status >= 200 && status < 300) m.checks.allow++;
      else m.checks.deny++;
    }
    return payload;
  });
  return m;
}
