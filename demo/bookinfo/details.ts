/**
 * Bookinfo `details`: static book details, as Istio's Ruby details service returns them
 * (samples/bookinfo/src/details/details.rb, without the external Google Books lookup).
 */
import { listen, parseRequestUrl, sendJson } from './serve.ts';
import type { ListenOptions, ServiceHandle } from './serve.ts';

export type DetailsOptions = ListenOptions;

/** The details Bookinfo shows for every product id. */
export function bookDetails(id: number): Record<string, string | number> {
  return {
    id,
    author: 'William Shakespeare',
    year: 1595,
    type: 'paperback',
    pages: 200,
    publisher: 'PublisherA',
    language: 'English',
    'ISBN-10': '1234567890',
    'ISBN-13': '123-1234567890',
  };
}

/** Starts `details`: `GET /details/:id`, `GET /health`. */
export async function startDetails(opts: DetailsOptions = {}): Promise<ServiceHandle> {
  const handle = await listen(
    'details',
    (req, res) => {
      const { pathname } = parseRequestUrl(req);
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        sendJson(res, 405, { error: 'method not allowed' }, { allow: 'GET, HEAD' });
        return;
      }
      if (pathname === '/health') {
        sendJson(res, 200, { status: 'Details is healthy' });
        return;
      }
      const m = /^\/details\/([^/]*)$/.exec(pathname);
      if (!m) {
        sendJson(res, 404, { error: `no route for ${pathname}` });
        return;
      }
      if (!/^\d{1,9}$/.test(m[1]!)) {
        sendJson(res, 400, { error: 'please provide numeric product ID' });
        return;
      }
      sendJson(res, 200, bookDetails(Number(m[1])));
    },
    opts,
  );
  return { port: handle.port, url: handle.url, close: handle.close };
}
