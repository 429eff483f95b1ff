/**
 * Bookinfo `reviews` (samples/bookinfo/src/reviews, the Java service) in its three versions:
 *   v1 — no ratings call, no stars;  v2 — calls ratings, black stars;  v3 — calls ratings, red stars.
 * When the ratings call fails each review carries `{"rating": {"error": "Ratings service is
 * currently unavailable"}}`, which productpage shows verbatim.
 */
import { hostname } from 'node:os';
import { listen, parseRequestUrl, sendJson } from './serve.ts';
import type { ListenOptions, ServiceHandle } from './serve.ts';
import { UpstreamClient, baseUrl, propagatedHeaders, urlFromEnv } from './upstream.ts';
import type { UpstreamOptions } from './upstream.ts';

export type ReviewsVersion = 'v1' | 'v2' | 'v3';

export const RATINGS_UNAVAILABLE = 'Ratings service is currently unavailable';

export interface ReviewsOptions extends ListenOptions, Omit<UpstreamOptions, 'maxBodyBytes'> {
  version: ReviewsVersion;
  /** Base URL of ratings; defaults from RATINGS_HOSTNAME / SERVICES_DOMAIN / RATINGS_SERVICE_PORT. */
  ratingsUrl?: string;
  /** Reported as `podname`; defaults to POD_NAME or `reviews-<version>-<hostname>`. */
  podname?: string;
  /** Reported as `clustername`; defaults to CLUSTER_NAME or "null" (what the Java service prints). */
  clustername?: string;
}

export interface Review {
  reviewer: string;
  text: string;
  rating?: { stars: number; color: string } | { error: string };
}

export interface ReviewsBody {
  id: string;
  podname: string;
  clustername: string;
  reviews: Review[];
}

const REVIEWS: readonly { reviewer: string; text: string }[] = [
  {
    reviewer: 'Reviewer1',
    text: 'An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!',
  },
  {
    reviewer: 'Reviewer2',
    text: 'Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.',
  },
];

const STAR_COLOR: Record<ReviewsVersion, string | undefined> = { v1: undefined, v2: 'black', v3: 'red' };

/** Starts one version of `reviews`: `GET /reviews/:id`, `GET /health`. */
export async function startReviews(opts: ReviewsOptions): Promise<ServiceHandle> {
  const version = opts.version;
  if (!Object.hasOwn(STAR_COLOR, version)) {
    throw new TypeError(`reviews: version must be v1, v2 or v3, got '${String(version)}'`);
  }
  const color = STAR_COLOR[version];
  const ratingsUrl = color ? (opts.ratingsUrl ? baseUrl(opts.ratingsUrl, 'ratingsUrl') : urlFromEnv('ratings')) : undefined;
  const podname = opts.podname ?? process.env.POD_NAME ?? `reviews-${version}-${hostname()}`;
  const clustername = opts.clustername ?? process.env.CLUSTER_NAME ?? 'null';
  const client = color ? new UpstreamClient(opts) : undefined;

  const handle = await listen(
    `reviews-${version}`,
    async (req, res) => {
      const { pathname } = parseRequestUrl(req);
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        sendJson(res, 405, { error: 'method not allowed' }, { allow: 'GET, HEAD' });
        return;
      }
      if (pathname === '/health') {
        sendJson(res, 200, { status: 'Reviews is healthy' });
        return;
      }
      const m = /^\/reviews\/([^/]*)$/.exec(pathname);
      if (!m) {
        sendJson(res, 404, { error: `no route for ${pathname}` });
        return;
      }
      if (!/^\d{1,9}$/.test(m[1]!)) {
        sendJson(res, 400, { error: 'please provide numeric product ID' });
        return;
      }
      const id = m[1]!;
      let stars: Record<string, unknown> | undefined;
      if (client && ratingsUrl) {
        try {
          const r = await client.getJson(`${ratingsUrl}/ratings/${id}`, propagatedHeaders(req.headers));
          const ratings = (r.json as { ratings?: unknown } | undefined)?.ratings;
          if (r.status === 200 && typeof ratings === 'object' && ratings !== null) stars = ratings as Record<string, unknown>;
        } catch {
          stars = undefined;
        }
      }
      const body: ReviewsBody = {
        id,
        podname,
        clustername,
        reviews: REVIEWS.map((r): Review => {
          if (!color) return { ...r };
          const n = stars?.[r.reviewer];
          if (typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 5) {
            return { ...r, rating: { stars: n, color } };
          }
          return { ...r, rating: { error: RATINGS_UNAVAILABLE } };
        }),
      };
      sendJson(res, 200, body);
    },
    opts,
    { onClose: () => client?.close() },
  );
  return { port: handle.port, url: handle.url, close: handle.close };
}
