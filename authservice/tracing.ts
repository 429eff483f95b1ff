/**
 * A span for every request the authservice answers (checks, callback, logout), joined to the
 * caller's trace through the W3C/B3 headers the gateway propagates on the check request, and
 * exported over OTLP/HTTP (`PORTICO_OTLP_ENDPOINT`, else the standard
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`). Only requests the caller sampled are recorded: the
 * authservice never starts traces of its own. Off when no endpoint is configured.
 */
import type { FastifyBaseLogger, FastifyInstance, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from 'fastify';
import { OtlpExporter } from '../telemetry/otlp.ts';
import { extractContext, newSpanId } from '../telemetry/trace-context.ts';

export interface AuthserviceTracingOptions {
  readonly endpoint: string;
  /** Jaeger service name (default `authservice.istio-system`, as Istio would name it). */
  readonly serviceName?: string;
}

const START = Symbol('portico.span.start');

export function registerAuthserviceTracing<L extends FastifyBaseLogger>(
  app: FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, L>,
  opts: AuthserviceTracingOptions,
): OtlpExporter {
  const service = opts.serviceName ?? 'authservice.istio-system';
  const exporter = new OtlpExporter({ endpoint: opts.endpoint, resource: { 'service.name': service } });
  app.addHook('onRequest', async (req) => {
    (req.raw as unknown as Record<symbol, number>)[START] = Date.now() * 1000 + (performance.now() % 1) * 1000;
  });
  app.addHook('onResponse', async (req, reply) => {
    const ctx = extractContext(req.headers);
    if (!ctx || ctx.sampled !== true) return;
    const startUs = (req.raw as unknown as Record<symbol, number>)[START] ?? Date.now() * 1000;
    const status = reply.statusCode;
    exporter.add({
      traceId: ctx.traceId,
      spanId: newSpanId(),
      parentSpanId: ctx.parentSpanId,
      name: `authservice ${req.method} check`,
      kind: 'SERVER',
      startUs,
      durationUs: Math.max(1, Date.now() * 1000 - startUs),
      service,
      attributes: [
        ['component', 'authservice'],
        ['http.method', req.method],
        // The path only: query strings can carry codes and state.
        ['http.url', (req.raw.url ?? '/').split('?')[0]!],
        ['http.status_code', status],
        ['authz.decision', status >= 200 && status < 300 ? 'allow' : 'deny'],
        ['guid:x-request-id', String(req.headers['x-request-id'] ?? '')],
      ],
      error: status >= 500,
    });
  });
  app.addHook('onClose', async () => exporter.close());
  return exporter;
}
