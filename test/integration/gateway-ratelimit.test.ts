/**
 * Local rate limiting the way Istio's task configures it: an EnvoyFilter inserting
 * envoy.filters.http.local_ratelimit (listener-wide), and a per-route bucket via HTTP_ROUTE.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'undici';
import type { RequestRecord } from '../../gateway/proxy.ts';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';
import { startEcho } from '../helpers/upstream.ts';

function base(port: number, up: number): string {
  return `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: ${port}, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app, namespace: istio-system}
spec:
  hosts: ["*"]
  gateways: [edge]
  http:
  - name: limited
    match: [{uri: {prefix: /limited}}]
    route: [{destination: {host: app.example.com, port: {number: ${up}}}}]
  - name: open
    route: [{destination: {host: app.example.com, port: {number: ${up}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app, namespace: istio-system}
spec:
  hosts: [app.example.com]
  ports: [{number: ${up}, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
`;
}

const statik = (tokens: number) => `
              token_bucket:
                max_tokens: ${tokens}
                tokens_per_fill: ${tokens}
                fill_interval: 60s
              filter_enabled:
                runtime_key: local_rate_limit_enabled
                default_value: {numerator: 100, denominator: HUNDRED}
              filter_enforced:
                runtime_key: local_rate_limit_enforced
                default_value: {numerator: 100, denominator: HUNDRED}
              response_headers_to_add:
                - append: false
                  header: {key: x-local-rate-limit, value: 'true'}`;

async function hit(port: number, path: string): Promise<{ status: number; limited?: string }> {
  const r = await request(`http://127.0.0.1:${port}${path}`);
  await r.body.dump();
  return { status: r.statusCode, limited: r.headers['x-local-rate-limit'] as string | undefined };
}

test('listener-wide token bucket: the 5th request in a minute gets 429 local_rate_limited, flag RL', async (t) => {
  const up = await startEcho(t, 'app');
  const port = await freePort();
  const records: RequestRecord[] = [];
  await startGateway(
    t,
    base(port, up.port) +
      `---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: filter-local-ratelimit-gw, namespace: istio-system}
spec:
  workloadSelector:
    labels: {istio: ingressgateway}
  configPatches:
    - applyTo: HTTP_FILTER
      match:
        context: GATEWAY
        listener:
          filterChain:
            filter:
              name: "envoy.filters.network.http_connection_manager"
      patch:
        operation: INSERT_BEFORE
        value:
          name: envoy.filters.http.local_ratelimit
          typed_config:
            "@type": type.googleapis.com/udpa.type.v1.TypedStruct
            type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            value:
              stat_prefix: http_local_rate_limiter${statik(4)}
`,
    { onRequest: (r) => records.push(r) },
  );
  const results = [];
  for (let i = 0; i < 6; i++) results.push(await hit(port, '/open'));
  assert.deepEqual(results.map((r) => r.status), [200, 200, 200, 200, 429, 429]);
  assert.equal(results[4]!.limited, 'true');
  assert.equal(records.at(-1)?.flag, 'RL');
  assert.equal(up.seen.length, 4);
});

test('per-route bucket (HTTP_ROUTE patch) limits only the named route', async (t) => {
  const up = await startEcho(t, 'app');
  const port = await freePort();
  await startGateway(
    t,
    base(port, up.port) +
      `---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: filter-local-ratelimit-route, namespace: istio-system}
spec:
  workloadSelector:
    labels: {istio: ingressgateway}
  configPatches:
    - applyTo: HTTP_FILTER
      match:
        context: GATEWAY
        listener:
          filterChain:
            filter:
              name: "envoy.filters.network.http_connection_manager"
      patch:
        operation: INSERT_BEFORE
        value:
          name: envoy.filters.http.local_ratelimit
          typed_config:
            "@type": type.googleapis.com/udpa.type.v1.TypedStruct
            type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            value:
              stat_prefix: http_local_rate_limiter
    - applyTo: HTTP_ROUTE
      match:
        context: GATEWAY
        routeConfiguration:
          vhost:
            name: "*:${port}"
            route:
              name: limited
      patch:
        operation: MERGE
        value:
          typed_per_filter_config:
            envoy.filters.http.local_ratelimit:
              "@type": type.googleapis.com/udpa.type.v1.TypedStruct
              type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              value:
                stat_prefix: http_local_rate_limiter${statik(2).replace(/\n {14}/g, '\n                ')}
`,
  );
  const limited = [];
  for (let i = 0; i < 3; i++) limited.push((await hit(port, '/limited')).status);
  assert.deepEqual(limited, [200, 200, 429]);
  for (let i = 0; i < 5; i++) assert.equal((await hit(port, '/open')).status, 200, 'other routes are not limited');
});
