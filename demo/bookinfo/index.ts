/**
 * Istio's Bookinfo, in-process. Standalone:
 *   node --import tsx demo/bookinfo/index.ts <productpage|details|reviews|ratings> [--version v1|v2|v3] [--port N] [--host H]
 * Wiring comes from the environment as in Istio's sample (DETAILS_HOSTNAME, DETAILS_SERVICE_PORT,
 * REVIEWS_*, RATINGS_*, SERVICES_DOMAIN, HTTP_PROXY, NO_PROXY, USERID_HEADER). The port defaults
 * to PORT or 9080, the host to HOST or 127.0.0.1. Prints `<service> listening on <url>` once ready.
 */
import { parseArgs } from 'node:util';
import { closeOnSignals, isMain, parsePort } from './serve.ts';
import type { ServiceHandle } from './serve.ts';
import { startDetails } from './details.ts';
import { startProductpage } from './productpage.ts';
import { startRatings } from './ratings.ts';
import { startReviews } from './reviews.ts';
import type { ReviewsVersion } from './reviews.ts';

export { startDetails, bookDetails } from './details.ts';
export type { DetailsOptions } from './details.ts';
export { startProductpage, SESSION_COOKIE } from './productpage.ts';
export type { ProductpageOptions } from './productpage.ts';
export { startRatings } from './ratings.ts';
export type { RatingsOptions } from './ratings.ts';
export { startReviews, RATINGS_UNAVAILABLE } from './reviews.ts';
export type { ReviewsOptions, ReviewsVersion, Review, ReviewsBody } from './reviews.ts';
export { DETAILS_UNAVAILABLE, REVIEWS_UNAVAILABLE, renderProductPage } from './html.ts';
export { PROPAGATED_HEADERS, propagatedHeaders, UpstreamClient } from './upstream.ts';
export type { ServiceHandle, ListenOptions } from './serve.ts';

const USAGE =
  'usage: node --import tsx demo/bookinfo/index.ts <productpage|details|reviews|ratings> [--version v1|v2|v3] [--port N] [--host H]';

/** Runs one Bookinfo service from argv; resolves to its handle once listening. */
export async function runBookinfo(argv: string[]): Promise<ServiceHandle> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      version: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
    },
  });
  const service = positionals[0];
  const port = parsePort(values.port ?? process.env.PORT, 9080, '--port');
  const host = values.host ?? process.env.HOST ?? '127.0.0.1';
  switch (service) {
    case 'productpage':
      return startProductpage({ port, host });
    case 'details':
      return startDetails({ port, host });
    case 'ratings':
      return startRatings({ port, host });
    case 'reviews': {
      const version = values.version ?? process.env.SERVICE_VERSION ?? 'v1';
      if (version !== 'v1' && version !== 'v2' && version !== 'v3') {
        throw new TypeError(`--version must be v1, v2 or v3, got '${version}'`);
      }
      return startReviews({ version: version as ReviewsVersion, port, host });
    }
    default:
      throw new TypeError(service ? `unknown service '${service}'\n${USAGE}` : USAGE);
  }
}

if (isMain(import.meta.url)) {
  const argv = process.argv.slice(2);
  runBookinfo(argv).then(
    (handle) => {
      process.stdout.write(`${argv[0]} listening on ${handle.url}\n`);
      closeOnSignals(handle);
    },
    (err: unknown) => {
      process.stderr.write(`bookinfo: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 2;
    },
  );
}
