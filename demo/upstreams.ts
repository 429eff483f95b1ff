/**
 * Every demo upstream in one process: httpbin and Bookinfo's six services (productpage, details,
 * reviews v1/v2/v3, ratings) on the fixed ports the config examples name, or on ephemeral ports.
 * Wiring: productpage → details and reviews → ratings go direct; productpage → reviews goes to
 * `reviewsUrl` (in the demo: through the gateway/mesh so VirtualService routing applies),
 * defaulting to reviews-v1 directly.
 */
import { startDetails, startProductpage, startRatings, startReviews } from './bookinfo/index.ts';
import type { ServiceHandle } from './bookinfo/index.ts';
import { startHttpbin } from './httpbin.ts';

export interface DemoPorts {
  productpage: number;
  details: number;
  reviewsV1: number;
  reviewsV2: number;
  reviewsV3: number;
  ratings: number;
  httpbin: number;
}

export type DemoService = keyof DemoPorts;

/** The ports config/examples use for the demo upstreams. */
export const DEMO_PORTS: Readonly<DemoPorts> = Object.freeze({
  productpage: 19080,
  details: 19081,
  reviewsV1: 19082,
  reviewsV2: 19083,
  reviewsV3: 19084,
  ratings: 19085,
  httpbin: 18000,
});

export interface DemoUpstreamsOptions {
  /** Fixed ports (defaults: DEMO_PORTS, partially overridable) or `'ephemeral'` for port 0 everywhere. */
  ports?: Partial<DemoPorts> | 'ephemeral';
  /** Bind address; default 127.0.0.1. */
  host?: string;
  /** Where productpage sends `/reviews/:id`; default reviews-v1's own URL. */
  reviewsUrl?: string;
  /** Identity header productpage reads (default `kubeflow-userid`). */
  userIdHeader?: string;
  /**
   * Proxy for the Bookinfo services' outbound calls. Default `null`: connect directly, ignoring
   * HTTP_PROXY in this process's environment (the demo wires hosts explicitly).
   */
  httpProxy?: string | null;
}

export interface DemoUpstreams {
  ports: DemoPorts;
  urls: Record<DemoService, string>;
  close(): Promise<void>;
}

/** Starts all demo upstreams; if any fails to listen, the ones already started are closed and the error names it. */
export async function startDemoUpstreams(opts: DemoUpstreamsOptions = {}): Promise<DemoUpstreams> {
  const want: DemoPorts =
    opts.ports === 'ephemeral'
      ? { productpage: 0, details: 0, reviewsV1: 0, reviewsV2: 0, reviewsV3: 0, ratings: 0, httpbin: 0 }
      : { ...DEMO_PORTS, ...opts.ports };
  const host = opts.host ?? '127.0.0.1';
  const httpProxy = opts.httpProxy ?? null;
  const started: ServiceHandle[] = [];
  const closeAll = async (): Promise<void> => {
    await Promise.allSettled(started.splice(0).map((h) => h.close()));
  };
  const track = <T extends ServiceHandle>(h: T): T => {
    started.push(h);
    return h;
  };
  // allSettled, not all: a failure must not leave a sibling that is still starting un-closed.
  const settle = async <T extends unknown[]>(promises: { [K in keyof T]: Promise<T[K]> }): Promise<T> => {
    const results = await Promise.allSettled(promises);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as T;
  };
  try {
    const [ratings, details, httpbin] = await settle<[ServiceHandle, ServiceHandle, ServiceHandle]>([
      startRatings({ port: want.ratings, host }).then(track),
      startDetails({ port: want.details, host }).then(track),
      startHttpbin({ port: want.httpbin, host }).then(track),
    ]);
    const [reviewsV1, reviewsV2, reviewsV3] = await settle<ServiceHandle[]>(
      (['v1', 'v2', 'v3'] as const).map((version) =>
        startReviews({
          version,
          port: want[version === 'v1' ? 'reviewsV1' : version === 'v2' ? 'reviewsV2' : 'reviewsV3'],
          host,
          ratingsUrl: ratings.url,
          podname: `reviews-${version}`,
          httpProxy,
        }).then(track),
      ),
    );
    const productpage = track(
      await startProductpage({
        port: want.productpage,
        host,
        detailsUrl: details.url,
        reviewsUrl: opts.reviewsUrl ?? reviewsV1!.url,
        ratingsUrl: ratings.url,
        userIdHeader: opts.userIdHeader,
        httpProxy,
      }),
    );
    const handles: Record<DemoService, ServiceHandle> = {
      productpage,
      details,
      reviewsV1: reviewsV1!,
      reviewsV2: reviewsV2!,
      reviewsV3: reviewsV3!,
      ratings,
      httpbin,
    };
    const ports = {} as DemoPorts;
    const urls = {} as Record<DemoService, string>;
    for (const [name, h] of Object.entries(handles) as [DemoService, ServiceHandle][]) {
      ports[name] = h.port;
      urls[name] = h.url;
    }
    return { ports, urls, close: closeAll };
  } catch (err) {
    await closeAll();
    throw new Error(`demo upstreams: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}
