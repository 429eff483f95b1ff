/**
 * (c) Bookinfo-style canary: a header match (`end-user: jason`) selects a route that splits 50/50
 * between subsets v1 and v2 with a retry policy; everything else goes to v1.
 *
 * nginx equivalent: `map $http_end_user` picks the upstream group; the split group lists both
 * servers with equal weights; `proxy_next_upstream` + `proxy_next_upstream_tries` are the retries.
 * (Envoy retries inside the chosen subset, nginx moves to the next server; with healthy upstreams
 * neither retries, so the policy's cost is what is measured.)
 */
import { NGINX_PROXY, destination, firstUpstream, gatewayYaml, nginxListen, nginxUpstreams, registryYaml } from './common.ts';
import type { Scenario } from './types.ts';

const ATTEMPTS = 2;

export const splitRetry: Scenario = {
  name: 'split-retry',
  title: 'header match + 50/50 split + retries',
  scheme: 'http',
  path: '/bench/split',
  headers: { 'end-user': 'jason' },
  portico: (ctx) => ({
    files: {
      'gateway.yaml': gatewayYaml(ctx),
      'registry.yaml': registryYaml(ctx.upstreams),
      'virtualservice.yaml': `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bench
  namespace: bench
spec:
  hosts: ["*"]
  gateways: [bench/bench-gateway]
  http:
  - match:
    - headers:
        end-user: { exact: jason }
      uri: { prefix: /bench }
    route:
    - destination: ${destination('v1')}
      weight: 50
    - destination: ${destination('v2')}
      weight: 50
    retries:
      attempts: ${ATTEMPTS}
      perTryTimeout: 2s
      retryOn: connect-failure,refused-stream,unavailable,cancelled,503
  - match:
    - uri: { prefix: /bench }
    route:
    - destination: ${destination('v1')}
`,
    },
  }),
  nginx: (ctx) => {
    const split = ctx.upstreams.map((u) => `server 127.0.0.1:${u.http} weight=1;`).join('\n    ');
    return `${nginxUpstreams(ctx.upstreams)}
  upstream split {
    ${split}
    keepalive 64;
    keepalive_requests 100000;
  }
  map $http_end_user $bench_backend {
    jason   split;
    default v1;
  }
  server {
    ${nginxListen(ctx)}
    location /bench {
      proxy_pass http://$bench_backend;
      proxy_next_upstream error timeout http_503;
      proxy_next_upstream_tries ${ATTEMPTS + 1};
      proxy_connect_timeout 2s;
      proxy_read_timeout 2s;
      ${NGINX_PROXY}
    }
    location / { return 404; }
  }`;
  },
  direct: (ctx) => `http://127.0.0.1:${firstUpstream(ctx).http}/bench/split`,
  check: (counts) => {
    const v1 = counts.v1 ?? 0;
    const v2 = counts.v2 ?? 0;
    const total = v1 + v2;
    if (total === 0) return 'no requests reached the upstreams';
    const share = v1 / total;
    return share < 0.45 || share > 0.55 ? `split is ${(share * 100).toFixed(1)}% v1 / ${((1 - share) * 100).toFixed(1)}% v2, want 50/50 ±5` : undefined;
  },
};
