/**
 * Shared setup for the telemetry integration tests: a real gateway (edge, port from freePort)
 * routing `reviews.default.svc.cluster.local` to real echo upstreams registered as WorkloadEntries
 * with app/version labels and a service account, with `createTelemetry` attached.
 */
import type { TestContext } from 'node:test';
import type { ServerResponse } from 'node:http';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';
import { startEcho, type Echo, type Upstream } from '../helpers/upstream.ts';
import type { GatewayRuntime } from '../../gateway/runtime.ts';
import { createTelemetry, type PorticoTelemetry, type TelemetryOptions } from '../../gateway/telemetry/index.ts';

export interface Mesh {
  readonly port: number;
  readonly tel: PorticoTelemetry;
  readonly runtime: GatewayRuntime;
  readonly ups: Upstream[];
}

export async function startMesh(t: TestContext, opts: TelemetryOptions = {}, handler?: (req: Echo, res: ServerResponse) => boolean | void): Promise<Mesh> {
  const v1 = await startEcho(t, 'reviews-v1', handler);
  const port = await freePort();
  const tel = createTelemetry(opts);
  t.after(() => tel.close());
  const runtime = await startGateway(
    t,
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ${port}, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec: {address: 127.0.0.1, ports: {http: ${v1.port}}, labels: {app: reviews, version: v1}, serviceAccount: bookinfo-reviews}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: main, namespace: istio-system}
spec:
  hosts: ["*"]
  gateways: [edge]
  http:
  - name: missing
    match: [{uri: {prefix: /nowhere}}]
    directResponse: {status: 503}
  - name: reviews
    route: [{destination: {host: reviews.default.svc.cluster.local, port: {number: 9080}}}]
`,
    { telemetry: tel },
  );
  tel.attach(runtime);
  return { port, tel, runtime, ups: [v1] };
}

/** Parses Prometheus text format into samples (name, labels, value); throws on a malformed line. */
export function parseProm(text: string): { name: string; labels: Record<string, string>; value: number }[] {
  const out: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`malformed exposition line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g;
      let consumed = 0;
      for (const l of m[2].matchAll(re)) {
        labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
        consumed += l[0].length;
      }
      if (consumed !== m[2].length) throw new Error(`malformed labels: ${line}`);
    }
    const value = m[3] === '+Inf' ? Infinity : Number(m[3]);
    if (Number.isNaN(value) && m[3] !== 'NaN') throw new Error(`bad value: ${line}`);
    out.push({ name: m[1]!, labels, value });
  }
  return out;
}
