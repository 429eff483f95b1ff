/**
 * (b) The plain route behind TLS termination (tls.mode SIMPLE, credentialName), cert issued by
 * Portico's CA for 127.0.0.1. wrk keeps connections alive, so this measures TLS record cost,
 * not handshakes. Upstream hop stays plain HTTP for both proxies; the direct baseline is HTTPS.
 */
import { NGINX_PROXY, destination, firstUpstream, gatewayYaml, nginxListen, nginxUpstreams, registryYaml } from './common.ts';
import type { Scenario } from './types.ts';

export const https: Scenario = {
  name: 'https',
  title: 'HTTPS route (TLS SIMPLE)',
  scheme: 'https',
  path: '/bench/tls',
  portico: (ctx) => ({
    files: {
      'gateway.yaml': gatewayYaml(ctx, { tls: true }),
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
    args: ['--secrets-dir', ctx.tls.secretsDir],
  }),
  nginx: (ctx) => `${nginxUpstreams(ctx.upstreams)}
  server {
    ${nginxListen(ctx, { tls: true })}
    location /bench {
      proxy_pass http://v1;
      ${NGINX_PROXY}
    }
    location / { return 404; }
  }`,
  direct: (ctx) => {
    const u = firstUpstream(ctx);
    if (u.https === undefined) throw new Error('https scenario: upstream has no TLS port');
    return `https://127.0.0.1:${u.https}/bench/tls`;
  },
};
