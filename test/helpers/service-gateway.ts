/**
 * A gateway in front of one registry service, `app`, whose endpoints are named echo upstreams
 * (WorkloadEntries on 127.0.0.1 labelled app=app), with a DestinationRule trafficPolicy given as
 * YAML. The shape most DestinationRule tests need.
 */
import type { ServerResponse } from 'node:http';
import type { TestContext } from 'node:test';
import { request } from 'undici';
import type { GatewayRuntime } from '../../gateway/runtime.ts';
import { startGateway } from './gateway.ts';
import { freePort } from './net.ts';
import { startEcho, type Echo, type Upstream } from './upstream.ts';

export type Handler = (req: Echo, res: ServerResponse) => boolean | void;

export interface ServiceGateway {
  readonly port: number;
  readonly ups: Record<string, Upstream>;
  readonly gw: GatewayRuntime;
}

/** `trafficPolicy` is YAML indented by four spaces (it goes under `spec.trafficPolicy`). */
export async function startServiceGateway(t: TestContext, names: string[], trafficPolicy: string, handlers: Record<string, Handler> = {}): Promise<ServiceGateway> {
  const ups: Record<string, Upstream> = {};
  for (const n of names) ups[n] = await startEcho(t, n, handlers[n]);
  const port = await freePort();
  const entries = names
    .map((n) => `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: app-${n}}
spec: {address: 127.0.0.1, ports: {http: ${ups[n]!.port}}, labels: {app: app}}`)
    .join('\n');
  const gw = await startGateway(
    t,
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ${port}, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app}
spec:
  hosts: [app.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: app}}
${entries}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app}
spec:
  host: app
  trafficPolicy:
${trafficPolicy}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: main}
spec:
  hosts: ["*"]
  gateways: [edge]
  http:
  - route: [{destination: {host: app}}]
`,
  );
  return { port, ups, gw };
}

/** GET / through the gateway; `name` is the answering upstream (its `x-upstream` header). */
export async function getApp(port: number, headers: Record<string, string> = {}) {
  const res = await request(`http://127.0.0.1:${port}/`, { headers: { host: 'app.example.com', ...headers } });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, name: res.headers['x-upstream'] as string | undefined, text };
}
