/** Building blocks shared by the scenarios: Istio YAML and nginx snippets for the same things. */
import type { ScenarioContext, UpstreamInfo } from './types.ts';

/** The upstream service name in Portico's registry (ServiceEntry host). */
export const UPSTREAM_HOST = 'bench-upstream.bench.svc.cluster.local';
export const UPSTREAM_SERVICE_PORT = 80;

/** An ingress Gateway on 127.0.0.1:ctx.port, plain HTTP or TLS SIMPLE with a credentialName. */
export function gatewayYaml(ctx: ScenarioContext, opts: { tls?: boolean } = {}): string {
  const server = opts.tls
    ? `  - port: { number: ${ctx.port}, name: https, protocol: HTTPS }
    bind: 127.0.0.1
    hosts: ["*"]
    tls:
      mode: SIMPLE
      credentialName: ${ctx.tls.credentialName}`
    : `  - port: { number: ${ctx.port}, name: http, protocol: HTTP }
    bind: 127.0.0.1
    hosts: ["*"]`;
  return `apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bench-gateway
  namespace: bench
spec:
  selector:
    istio: ingressgateway
  servers:
${server}
`;
}

/**
 * Off Kubernetes the upstreams are registered the Istio way: one ServiceEntry with an endpoint per
 * upstream process (labelled version=<name>), and a DestinationRule with one subset per version.
 */
export function registryYaml(upstreams: readonly UpstreamInfo[]): string {
  const endpoints = upstreams
    .map((u) => `  - address: 127.0.0.1
    ports: { http: ${u.http} }
    labels: { app: bench-upstream, version: ${u.name} }`)
    .join('\n');
  const subsets = upstreams.map((u) => `  - name: ${u.name}\n    labels: { version: ${u.name} }`).join('\n');
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: bench-upstream
  namespace: bench
spec:
  hosts: [${UPSTREAM_HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - { number: ${UPSTREAM_SERVICE_PORT}, name: http, protocol: HTTP }
  endpoints:
${endpoints}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: bench-upstream
  namespace: bench
spec:
  host: ${UPSTREAM_HOST}
  subsets:
${subsets}
`;
}

/** A route destination to one subset of the bench upstream, as YAML flow mapping. */
export function destination(subset: string): string {
  return `{ host: ${UPSTREAM_HOST}, subset: ${subset}, port: { number: ${UPSTREAM_SERVICE_PORT} } }`;
}

/** One nginx `upstream` block per upstream process, with idle keep-alive connections. */
export function nginxUpstreams(upstreams: readonly UpstreamInfo[]): string {
  return upstreams.map((u) => `upstream ${u.name} {\n    server 127.0.0.1:${u.http};\n    keepalive 64;\n    keepalive_requests 100000;\n  }`).join('\n  ');
}

/**
 * The proxy directives every nginx location uses: HTTP/1.1 with pooled upstream connections, and
 * the request headers Portico adds too (XFF, x-forwarded-proto, x-request-id), so both do the
 * same work per request.
 */
export const NGINX_PROXY = `proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Request-Id $request_id;`;

/** `listen` line for nginx on 127.0.0.1:port, with the scenario's cert when `tls`. */
export function nginxListen(ctx: ScenarioContext, opts: { tls?: boolean } = {}): string {
  if (!opts.tls) return `listen 127.0.0.1:${ctx.port};`;
  return `listen 127.0.0.1:${ctx.port} ssl;
    ssl_certificate ${ctx.tls.certFile};
    ssl_certificate_key ${ctx.tls.keyFile};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:1m;`;
}

/** The first upstream (`v1`). */
export function firstUpstream(ctx: ScenarioContext): UpstreamInfo {
  const u = ctx.upstreams[0];
  if (!u) throw new Error('scenario needs at least one upstream');
  return u;
}
