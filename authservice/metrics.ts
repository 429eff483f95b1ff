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
 * The families live on the house's one registry (lib/metrics.ts), with the process metrics.
 */
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from 'fastify';
import { Registry, registerProcessMetrics, type CounterSeries, type HistogramSeries } from '../lib/metrics.ts';
import { AUTHSERVICE_ERRORS } from './errors.ts';
import type { SessionStore } from './session/store.ts';

const STORE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const STORE_OPS = ['get', 'set', 'delete', 'touch', 'claimOnce', 'lock', 'ping'] as const;
type StoreOp = (typeof STORE_OPS)[number];

/** The authservice's families on the shared registry (lib/metrics.ts), plus the process metrics. */
export class AuthserviceMetrics {
  readonly registry: Registry;
  private readonly loginsTotal: CounterSeries;
  private readonly failures;
  readonly checks: { readonly allow: CounterSeries; readonly deny: CounterSeries };
  private readonly storeDuration;
  private readonly storeErrors;

  constructor(registry = new Registry()) {
    this.registry = registry;
    registerProcessMetrics(registry, 'authservice');
    this.loginsTotal = registry.counter('portico_authservice_logins_total', 'Logins completed (session issued).').with();
    this.failures = registry.counter('portico_authservice_login_failures_total', 'Login callbacks that did not log in, by reason.', ['reason']);
    const checks = registry.counter('portico_authservice_checks_total', 'ext_authz check requests by result.', ['result']);
    this.checks = { allow: checks.with({ result: 'allow' }), deny: checks.with({ result: 'deny' }) };
    this.storeDuration = registry.histogram('portico_authservice_session_store_duration_seconds', 'Session store call latency by operation.', ['operation'], STORE_BUCKETS);
    this.storeErrors = registry.counter('portico_authservice_session_store_errors_total', 'Session store calls that failed, by operation.', ['operation']);
    for (const op of STORE_OPS) this.storeErrors.with({ operation: op });
  }

  get logins(): number {
    return this.loginsTotal.value;
  }

  loginSucceeded(): void {
    this.loginsTotal.inc();
  }

  /** `reason` is a bounded value: a stable error code or a status class. */
  loginFailed(reason: string): void {
    this.failures.inc({ reason });
  }

  render(): string {
    return this.registry.render();
  }

  /** Times every store call in place (the server's closures hold this same object). */
  instrument(store: SessionStore): void {
    const target = store as unknown as Record<StoreOp, (...args: unknown[]) => Promise<unknown>>;
    for (const op of STORE_OPS) {
      const original = target[op];
      if (typeof original !== 'function') continue;
      const bound = original.bind(store);
      // Created on the first call, so operations a store never uses print no empty histogram.
      let hist: HistogramSeries | undefined;
      const errors = this.storeErrors.with({ operation: op });
      target[op] = async (...args: unknown[]) => {
        const t0 = performance.now();
        try {
          return await bound(...args);
        } catch (err) {
          errors.inc();
          throw err;
        } finally {
          (hist ??= this.storeDuration.with({ operation: op })).observe((performance.now() - t0) / 1000);
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
      if (status === 302 && reply.getHeader('set-cookie') !== undefined) m.loginSucceeded();
      else m.loginFailed(reasonOf(payload, status));
    } else if (!path.startsWith(`${config.urlPrefix}/`)) {
      if (status >= 200 && status < 300) m.checks.allow.inc();
      else m.checks.deny.inc();
    }
    return payload;
  });
  return m;
}
