/**
 * The demo's mesh: Bookinfo's six workloads and httpbin, each behind its own in-process sidecar
 * (`portico sidecar`'s startSidecar), under mesh-wide STRICT mTLS with certificates from a demo
 * mesh CA kept in certs/out/mesh-ca. The WorkloadEntries' ports (config/examples/bookinfo and
 * httpbin-https registries) are where the sidecars listen; the apps listen on APP_PORTS, and each
 * app's outbound calls go through its own sidecar (HTTP_PROXY), as in Kubernetes.
 */
import { join } from 'node:path';
import { issueWorkloadCert, loadOrCreateCa, type CaPair } from '../certs/index.ts';
import type { Snapshot } from '../config/snapshot.ts';
import { startSidecar, type SidecarHandle } from '../bin/commands/sidecar.ts';
import { MeshIdentity } from '../gateway/mtls.ts';
import type { GatewayLogger } from '../gateway/runtime.ts';
import { startDetails, startProductpage, startRatings, startReviews, type ServiceHandle } from './bookinfo/index.ts';
import { startHttpbin } from './httpbin.ts';

/** Where each demo app listens (its sidecar listens on the WorkloadEntry's port). */
export const APP_PORTS = Object.freeze({
  'productpage-v1': 29080,
  'details-v1': 29081,
  'reviews-v1': 29082,
  'reviews-v2': 29083,
  'reviews-v3': 29084,
  'ratings-v1': 29085,
  'httpbin-v1': 28000,
});

type Workload = keyof typeof APP_PORTS;

export interface DemoMesh {
  readonly sidecars: ReadonlyMap<Workload, SidecarHandle>;
  readonly ca: CaPair;
  close(): Promise<void>;
}

export interface DemoMeshOptions {
  readonly config: readonly string[];
  readonly certsDir: string;
  readonly logger: GatewayLogger;
  /** Where sidecars send spans (the demo's trace store). */
  readonly otlpEndpoint?: string;
  /** Passed to productpage: where "sign out" posts for gateway-authenticated users. */
  readonly logoutUrl?: string;
}

/** The mesh CA the demo's sidecars and gateway trust, created on first run and reused. */
export function demoMeshCa(certsDir: string): CaPair {
  return loadOrCreateCa(join(certsDir, 'mesh-ca'));
}

/**
 * The ingress gateway's mesh identity (Istio's `istio-ingressgateway-service-account`), so it
 * can originate ISTIO_MUTUAL to the sidecars.
 */
export function gatewayMeshIdentity(ca: CaPair, snapshot: Snapshot): MeshIdentity {
  const cert = issueWorkloadCert(ca, { trustDomain: snapshot.meshConfig.trustDomain, namespace: 'istio-system', serviceAccount: 'istio-ingressgateway-service-account' });
  return new MeshIdentity({ certPem: cert.certPem, keyPem: cert.keyPem, caCertPem: ca.certPem, spiffeId: cert.spiffeId });
}

export async function startDemoMesh(opts: DemoMeshOptions): Promise<DemoMesh> {
  const ca = demoMeshCa(opts.certsDir);
  const sidecars = new Map<Workload, SidecarHandle>();
  const apps: ServiceHandle[] = [];
  const close = async (): Promise<void> => {
    await Promise.allSettled([...sidecars.values()].map((s) => s.close()));
    await Promise.allSettled(apps.map((a) => a.close()));
  };
  try {
    for (const wl of Object.keys(APP_PORTS) as Workload[]) {
      sidecars.set(
        wl,
        await startSidecar({
          workload: `default/${wl}`,
          config: opts.config,
          secretsDir: join(opts.certsDir, 'credentials'),
          ca,
          appPort: APP_PORTS[wl],
          outboundPort: 0,
          logger: opts.logger,
          drainMs: 1000,
          watch: false,
          otlpEndpoint: opts.otlpEndpoint,
          tracingSampling: 100,
        }),
      );
    }
    const proxyOf = (wl: Workload): string => `http://127.0.0.1:${sidecars.get(wl)!.sidecar.outboundPort()}`;
    apps.push(await startRatings({ port: APP_PORTS['ratings-v1'] }));
    apps.push(await startDetails({ port: APP_PORTS['details-v1'] }));
    apps.push(await startHttpbin({ port: APP_PORTS['httpbin-v1'] }));
    for (const v of ['v1', 'v2', 'v3'] as const) {
      apps.push(await startReviews({ version: v, port: APP_PORTS[`reviews-${v}`], ratingsUrl: 'http://ratings:9080', podname: `reviews-${v}`, httpProxy: proxyOf(`reviews-${v}`) }));
    }
    apps.push(
      await startProductpage({
        port: APP_PORTS['productpage-v1'],
        detailsUrl: 'http://details:9080',
        reviewsUrl: 'http://reviews:9080',
        ratingsUrl: 'http://ratings:9080',
        httpProxy: proxyOf('productpage-v1'),
        logoutUrl: opts.logoutUrl,
      }),
    );
    return { sidecars, ca, close };
  } catch (err) {
    await close();
    throw err;
  }
}
