/**
 * A Bookinfo mesh for the dashboard tests, in-process and on ephemeral ports: the ingress gateway
 * (istio-ingressgateway), and one outbound mesh listener per calling workload (productpage-v1,
 * reviews-v3), each with its own telemetry identity so the proxies' own metrics name who calls
 * whom; one shared trace store so a page load is one trace. The admin serves the dashboard with
 * all three proxies. Real Bookinfo services (demo/bookinfo) address each other by mesh names.
 */
import type { TestContext } from 'node:test';
import { startDetails, startProductpage, startRatings, startReviews, type ServiceHandle } from '../../demo/bookinfo/index.ts';
import { startAdmin, type AdminServer } from '../../gateway/admin.ts';
import { GatewayRuntime } from '../../gateway/runtime.ts';
import { createTelemetry, TraceStore, type PorticoTelemetry } from '../../gateway/telemetry/index.ts';
import { compileYaml } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';

export interface BookinfoMesh {
  readonly edgePort: number;
  readonly admin: AdminServer;
  readonly edge: GatewayRuntime;
  readonly edgeTelemetry?: PorticoTelemetry;
}

function config(p: { edge: number; productpage: number; details: number; reviewsV1: number; reviewsV3: number; ratings: number }): string {
  const service = (name: string) => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${name}, namespace: default}
spec:
  hosts: [${name}.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: ${name}}}
---
`;
  const workload = (app: string, version: string, port: number) => `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ${app}-${version}, namespace: default}
spec: {address: 127.0.0.1, ports: {http: ${port}}, labels: {app: ${app}, version: ${version}}, serviceAccount: bookinfo-${app}}
---
`;
  return `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ${p.edge}, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: default}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - name: productpage
    match:
    - uri: {exact: /productpage}
    - uri: {prefix: /static}
    route:
    - destination: {host: productpage, port: {number: 9080}}
  - name: home
    match:
    - uri: {exact: /}
    redirect: {uri: /productpage}
---
${service('productpage')}${service('details')}${service('reviews')}${service('ratings')}${workload('productpage', 'v1', p.productpage)}${workload('details', 'v1', p.details)}${workload('reviews', 'v1', p.reviewsV1)}${workload('reviews', 'v3', p.reviewsV3)}${workload('ratings', 'v1', p.ratings)}apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v3, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match:
    - headers: {end-user: {exact: jason}}
    route:
    - destination: {host: reviews, subset: v3}
  - name: split
    route:
    - destination: {host: reviews, subset: v1}
      weight: 50
    - destination: {host: reviews, subset: v3}
      weight: 50
`;
}

/** Starts the mesh; everything is closed by `t.after`. `telemetry: false` runs every proxy without it. */
export async function startBookinfoMesh(t: TestContext, opts: { telemetry?: boolean } = {}): Promise<BookinfoMesh> {
  const withTelemetry = opts.telemetry !== false;
  const [edgePort, ppOut, revOut] = [await freePort(), await freePort(), await freePort()];
  const handles: ServiceHandle[] = [];
  t.after(() => Promise.allSettled(handles.map((h) => h.close())));
  const track = <T extends ServiceHandle>(h: T): T => (handles.push(h), h);
  const ratings = track(await startRatings({ port: 0 }));
  const details = track(await startDetails({ port: 0 }));
  const reviewsV1 = track(await startReviews({ version: 'v1', port: 0, ratingsUrl: 'http://ratings:9080', podname: 'reviews-v1', httpProxy: `http://127.0.0.1:${revOut}` }));
  const reviewsV3 = track(await startReviews({ version: 'v3', port: 0, ratingsUrl: 'http://ratings:9080', podname: 'reviews-v3', httpProxy: `http://127.0.0.1:${revOut}` }));
  const productpage = track(
    await startProductpage({ port: 0, detailsUrl: 'http://details:9080', reviewsUrl: 'http://reviews:9080', ratingsUrl: 'http://ratings:9080', httpProxy: `http://127.0.0.1:${ppOut}` }),
  );
  const snapshot = await compileYaml(
    config({ edge: edgePort, productpage: productpage.port, details: details.port, reviewsV1: reviewsV1.port, reviewsV3: reviewsV3.port, ratings: ratings.port }),
    { file: 'bookinfo-dashboard.yaml' },
  );

  const traces = new TraceStore();
  const tel = (workload: string, app: string, namespace: string, version?: string): PorticoTelemetry | undefined => {
    if (!withTelemetry) return undefined;
    const telemetry = createTelemetry({ proxy: { workload, app, namespace, version }, tracing: { sampling: 100, store: traces } });
    t.after(() => telemetry.close());
    return telemetry;
  };
  const edgeTelemetry = tel('istio-ingressgateway', 'istio-ingressgateway', 'istio-system');
  const ppTelemetry = tel('productpage-v1', 'productpage', 'default', 'v1');
  const revTelemetry = tel('reviews-v3', 'reviews', 'default', 'v3');
  const outbound = (port: number, telemetry: PorticoTelemetry | undefined): GatewayRuntime =>
    new GatewayRuntime(snapshot, { labels: { 'portico.dev/role': 'mesh-outbound' }, meshOutbound: { port }, namespace: 'default', telemetry });
  const pp = outbound(ppOut, ppTelemetry);
  const rev = outbound(revOut, revTelemetry);
  const edge = new GatewayRuntime(snapshot, { telemetry: edgeTelemetry });
  for (const [runtime, telemetry] of [
    [edge, edgeTelemetry],
    [pp, ppTelemetry],
    [rev, revTelemetry],
  ] as const) {
    telemetry?.attach(runtime);
    await runtime.start();
    t.after(() => runtime.close(100));
  }
  const admin = await startAdmin(edge, 0, '127.0.0.1', () => true, {
    telemetry: edgeTelemetry,
    dashboardProxies: [
      { name: 'productpage sidecar', runtime: pp, telemetry: ppTelemetry },
      { name: 'reviews sidecar', runtime: rev, telemetry: revTelemetry },
    ],
  });
  t.after(() => admin.close());
  return { edgePort, admin, edge, edgeTelemetry };
}
