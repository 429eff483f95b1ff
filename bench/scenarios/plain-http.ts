/**
 * (a) One plain HTTP route: Gateway port → VirtualService `/` → one upstream. Portico runs with
 * its defaults, telemetry included (Istio metrics, tracing at the default sampling, no access
 * log unless MeshConfig asks); `plain-http-telemetry-off` is the same with `--no-telemetry`.
 */
import { NGINX_PROXY, destination, firstUpstream, gatewayYaml, nginxListen, nginxUpstreams, registryYaml } from './common.ts';
import type { Scenario } from './types.ts';

const base = {
  name: 'plain-http',
  title: 'plain HTTP route',
  scheme: 'http',
  path: '/bench/plain',
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
    - uri: { prefix: /bench }
    route:
    - destination: ${destination('v1')}
`,
    },
  }),
  nginx: (ctx) => `${nginxUpstreams(ctx.upstreams)}
  server {
    ${nginxListen(ctx)}
    location /bench {
      proxy_pass http://v1;
      ${NGINX_PROXY}
    }
    location / { return 404; }
  }`,
  direct: (ctx) => `http://127.0.0.1:${firstUpstream(ctx).http}/bench/plain`,
} satisfies Scenario;

export const plainHttp: Scenario = base;

/** The same route with `portico gateway --no-telemetry`: what metrics + tracing cost (issue 6). */
export const plainHttpTelemetryOff: Scenario = {
  ...base,
  name: 'plain-http-telemetry-off',
  title: 'plain HTTP route, --no-telemetry',
  portico: (ctx) => ({ ...base.portico(ctx), args: ['--no-telemetry'] }),
};
