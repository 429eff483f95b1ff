/**
 * Bookinfo `ratings` (samples/bookinfo/src/ratings/ratings.js, in-memory v1): every product has
 * Reviewer1 = 5 and Reviewer2 = 4 until a `POST /ratings/:id` replaces them.
 */
import { BodyTooLargeError, listen, parseRequestUrl, readBody, sendJson } from './serve.ts';
import type { ListenOptions, ServiceHandle } from './serve.ts';

export type RatingsOptions = ListenOptions;

const DEFAULT_RATINGS = Object.freeze({ Reviewer1: 5, Reviewer2: 4 });

/** Starts `ratings`: `GET /ratings/:id`, `POST /ratings/:id` ({"Reviewer1": 1..5, ...}), `GET /health`. */
export async function startRatings(opts: RatingsOptions = {}): Promise<ServiceHandle> {
  const stored = new Map<number, Record<string, number>>();
  const handle = await listen(
    'ratings',
    async (req, res) => {
      const { pathname } = parseRequestUrl(req);
      if (pathname === '/health') {
        sendJson(res, 200, { status: 'Ratings is healthy' });
        return;
      }
      const m = /^\/ratings\/([^/]*)$/.exec(pathname);
      if (!m) {
        sendJson(res, 404, { error: `no route for ${pathname}` });
        return;
      }
      if (!/^\d{1,9}$/.test(m[1]!)) {
        sendJson(res, 400, { error: 'please provide numeric product ID' });
        return;
      }
      const id = Number(m[1]);
      if (req.method === 'GET' || req.method === 'HEAD') {
        sendJson(res, 200, { id, ratings: stored.get(id) ?? DEFAULT_RATINGS });
        return;
      }
      if (req.method !== 'POST') {
        sendJson(res, 405, { error: 'method not allowed' }, { allow: 'GET, HEAD, POST' });
        return;
      }
      let body: unknown;
      try {
        body = JSON.parse((await readBody(req, 64 * 1024)).toString('utf8'));
      } catch (err) {
        const tooLarge = err instanceof BodyTooLargeError;
        sendJson(res, tooLarge ? 413 : 400, { error: tooLarge ? err.message : 'please provide valid ratings JSON' });
        return;
      }
      const ratings = validRatings(body);
      if (!ratings) {
        sendJson(res, 400, { error: 'please provide valid ratings JSON: {"Reviewer1": 1..5, ...}' });
        return;
      }
      stored.set(id, ratings);
      sendJson(res, 200, { id, ratings });
    },
    opts,
  );
  return { port: handle.port, url: handle.url, close: handle.close };
}

function validRatings(body: unknown): Record<string, number> | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
  const out: Record<string, number> = {};
  const entries = Object.entries(body as Record<string, unknown>);
  if (entries.length === 0 || entries.length > 100) return undefined;
  for (const [name, stars] of entries) {
    if (!/^[\w .-]{1,64}$/.test(name)) return undefined;
    if (typeof stars !== 'number' || !Number.isInteger(stars) || stars < 1 || stars > 5) return undefined;
    out[name] = stars;
  }
  return out;
}
