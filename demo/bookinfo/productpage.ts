/**
 * Bookinfo `productpage` (samples/bookinfo/src/productpage/productpage.py): renders the book page
 * from `details` and `reviews`, forwarding Istio's trace/identity headers, and sets `end-user` to
 * the signed-in user so VirtualService `headers: {end-user: {exact: jason}}` routing works.
 *
 * Who the user is: the identity header the gateway sets after OIDC login (default
 * `kubeflow-userid`, the authservice's USERID_HEADER) wins; otherwise Bookinfo's own demo login,
 * a plain `session` cookie holding the name. Neither is authentication — that is the gateway's job.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BodyTooLargeError, listen, parseCookies, parseRequestUrl, readBody, sendJson, sendText } from './serve.ts';
import type { ListenOptions, ServiceHandle } from './serve.ts';
import { UpstreamClient, baseUrl, propagatedHeaders, urlFromEnv } from './upstream.ts';
import type { UpstreamOptions } from './upstream.ts';
import {
  DETAILS_UNAVAILABLE,
  PRODUCTS,
  RATINGS_API_UNAVAILABLE,
  REVIEWS_UNAVAILABLE,
  STYLE_CSS,
  renderIndex,
  renderLogin,
  renderProductPage,
} from './html.ts';
import type { ProductPageData } from './html.ts';
import type { Review } from './reviews.ts';

export interface ProductpageOptions extends ListenOptions, Omit<UpstreamOptions, 'maxBodyBytes'> {
  /** Base URL of details; defaults from DETAILS_HOSTNAME / SERVICES_DOMAIN / DETAILS_SERVICE_PORT. */
  detailsUrl?: string;
  /** Base URL of reviews; defaults from REVIEWS_HOSTNAME / SERVICES_DOMAIN / REVIEWS_SERVICE_PORT. */
  reviewsUrl?: string;
  /** Base URL of ratings (only `/api/v1/products/:id/ratings` uses it); defaults from RATINGS_*. */
  ratingsUrl?: string;
  /** Request header carrying the gateway-authenticated user; defaults to USERID_HEADER or `kubeflow-userid`; '' disables. */
  userIdHeader?: string;
  /**
   * The authservice's logout endpoint (e.g. `/authservice/logout`): when the user came from the
   * identity header, "sign out" POSTs there instead of Bookinfo's own cookie logout.
   * Default from env `LOGOUT_URL`.
   */
  logoutUrl?: string;
}

export const SESSION_COOKIE = 'session';

/** A user name we are willing to show and forward as a header value: printable, at most 256 bytes. */
function acceptableUser(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  return v && v.length <= 256 && /^[\x20-\x7e\x80-\xff]+$/.test(v) ? v : undefined;
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function redirect(res: ServerResponse, location: string, headers: Record<string, string | string[]> = {}): void {
  res.writeHead(302, { ...headers, location, 'content-length': 0 });
  res.end();
}

function productId(raw: string): number | undefined {
  return /^\d{1,9}$/.test(raw) ? Number(raw) : undefined;
}

function asReviews(json: unknown): { podname: string; reviews: Review[] } | undefined {
  if (typeof json !== 'object' || json === null) return undefined;
  const { reviews, podname } = json as { reviews?: unknown; podname?: unknown };
  if (!Array.isArray(reviews)) return undefined;
  const out: Review[] = [];
  for (const r of reviews as unknown[]) {
    if (typeof r !== 'object' || r === null) continue;
    const { reviewer, text, rating } = r as { reviewer?: unknown; text?: unknown; rating?: unknown };
    const review: Review = { reviewer: String(reviewer ?? ''), text: String(text ?? '') };
    if (typeof rating === 'object' && rating !== null) {
      const { stars, color, error } = rating as { stars?: unknown; color?: unknown; error?: unknown };
      if (typeof error === 'string') review.rating = { error };
      else if (typeof stars === 'number') review.rating = { stars, color: typeof color === 'string' ? color : 'black' };
    }
    out.push(review);
  }
  return { podname: typeof podname === 'string' ? podname : '', reviews: out };
}

/** Starts `productpage`: `/`, `/productpage`, `/login`, `/logout`, `/api/v1/products[/:id[/reviews|/ratings]]`, `/static/*`, `/health`. */
export async function startProductpage(opts: ProductpageOptions = {}): Promise<ServiceHandle> {
  const detailsUrl = opts.detailsUrl ? baseUrl(opts.detailsUrl, 'detailsUrl') : urlFromEnv('details');
  const reviewsUrl = opts.reviewsUrl ? baseUrl(opts.reviewsUrl, 'reviewsUrl') : urlFromEnv('reviews');
  const ratingsUrl = opts.ratingsUrl ? baseUrl(opts.ratingsUrl, 'ratingsUrl') : urlFromEnv('ratings');
  const userIdHeader = (opts.userIdHeader ?? process.env.USERID_HEADER ?? 'kubeflow-userid').toLowerCase();
  const client = new UpstreamClient(opts);

  const logoutUrl = opts.logoutUrl ?? process.env.LOGOUT_URL;
  const fromGateway = (req: IncomingMessage): boolean => userIdHeader !== '' && acceptableUser(headerValue(req, userIdHeader)) !== undefined;
  const userOf = (req: IncomingMessage): string | undefined =>
    (userIdHeader ? acceptableUser(headerValue(req, userIdHeader)) : undefined) ??
    acceptableUser(parseCookies(headerValue(req, 'cookie'))[SESSION_COOKIE]);

  const forwardHeaders = (req: IncomingMessage, user: string | undefined): Record<string, string> => {
    const headers = propagatedHeaders(req.headers);
    if (user) headers['end-user'] = user;
    return headers;
  };

  /** One upstream call in productpage.py's shape: [status, body], with the fixed error text on failure. */
  const call = async (url: string, headers: Record<string, string>, unavailable: string): Promise<[number, unknown]> => {
    try {
      const r = await client.getJson(url, headers);
      if (r.status === 200 && r.json !== undefined) return [200, r.json];
      return [r.status >= 400 ? r.status : 500, { error: unavailable }];
    } catch {
      return [500, { error: unavailable }];
    }
  };

  const productPage = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const user = userOf(req);
    const headers = forwardHeaders(req, user);
    const product = PRODUCTS[0]!;
    const [[dStatus, dBody], [rStatus, rBody]] = await Promise.all([
      call(`${detailsUrl}/details/${product.id}`, headers, DETAILS_UNAVAILABLE),
      call(`${reviewsUrl}/reviews/${product.id}`, headers, REVIEWS_UNAVAILABLE),
    ]);
    const reviews = rStatus === 200 ? asReviews(rBody) : undefined;
    const data: ProductPageData = {
      user,
      logoutAction: logoutUrl && fromGateway(req) ? logoutUrl : undefined,
      product,
      details:
        dStatus === 200 && typeof dBody === 'object' && dBody !== null
          ? { ok: true, data: dBody as Record<string, unknown> }
          : { ok: false },
      reviews: reviews ? { ok: true, ...reviews } : { ok: false },
    };
    sendText(res, 200, renderProductPage(data), 'text/html; charset=utf-8', { 'cache-control': 'no-store' });
  };

  const login = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let form: URLSearchParams;
    try {
      form = new URLSearchParams((await readBody(req, 16 * 1024)).toString('utf8'));
    } catch (err) {
      if (!(err instanceof BodyTooLargeError)) throw err;
      sendText(res, 413, renderLogin(undefined, 'The login form was too large.'), 'text/html; charset=utf-8');
      return;
    }
    const raw = form.get('username') ?? '';
    const name = raw.length <= 64 ? acceptableUser(raw) : undefined;
    if (!name) {
      sendText(res, 400, renderLogin(undefined, 'username is required: 1 to 64 printable characters.'), 'text/html; charset=utf-8');
      return;
    }
    redirect(res, '/productpage', {
      'set-cookie': `${SESSION_COOKIE}=${encodeURIComponent(name)}; Path=/; HttpOnly; SameSite=Lax`,
    });
  };

  const api = async (req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> => {
    if (pathname === '/api/v1/products') {
      sendJson(res, 200, PRODUCTS);
      return;
    }
    const m = /^\/api\/v1\/products\/([^/]*)(?:\/(reviews|ratings))?$/.exec(pathname);
    if (!m) {
      sendJson(res, 404, { error: `no route for ${pathname}` });
      return;
    }
    const id = productId(m[1]!);
    if (id === undefined) {
      sendJson(res, 400, { error: 'please provide numeric product ID' });
      return;
    }
    const headers = forwardHeaders(req, userOf(req));
    const [status, body] =
      m[2] === 'reviews'
        ? await call(`${reviewsUrl}/reviews/${id}`, headers, REVIEWS_UNAVAILABLE)
        : m[2] === 'ratings'
          ? await call(`${ratingsUrl}/ratings/${id}`, headers, RATINGS_API_UNAVAILABLE)
          : await call(`${detailsUrl}/details/${id}`, headers, DETAILS_UNAVAILABLE);
    sendJson(res, status, body);
  };

  const handle = await listen(
    'productpage',
    async (req, res) => {
      const { pathname } = parseRequestUrl(req);
      const method = req.method ?? 'GET';
      const isGet = method === 'GET' || method === 'HEAD';
      if (pathname === '/login' && method === 'POST') return login(req, res);
      if (!isGet) {
        sendText(res, 405, 'method not allowed\n', 'text/plain; charset=utf-8', {
          allow: pathname === '/login' ? 'GET, HEAD, POST' : 'GET, HEAD',
        });
        return;
      }
      switch (pathname) {
        case '/':
        case '/index.html':
          sendText(res, 200, renderIndex(userOf(req)), 'text/html; charset=utf-8');
          return;
        case '/productpage':
          return productPage(req, res);
        case '/login':
          sendText(res, 200, renderLogin(userOf(req)), 'text/html; charset=utf-8');
          return;
        case '/logout':
          redirect(res, '/productpage', { 'set-cookie': `${SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax` });
          return;
        case '/health':
          sendText(res, 200, 'Product page is healthy');
          return;
        case '/static/css/style.css':
          sendText(res, 200, STYLE_CSS, 'text/css; charset=utf-8', { 'cache-control': 'public, max-age=3600' });
          return;
      }
      if (pathname.startsWith('/api/v1/')) return api(req, res, pathname);
      sendText(res, 404, 'not found\n');
    },
    opts,
    { onClose: () => client.close() },
  );
  return { port: handle.port, url: handle.url, close: handle.close };
}
