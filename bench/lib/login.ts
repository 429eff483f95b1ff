/**
 * One real OIDC login, done the way a browser does it, to get a session cookie for wrk:
 * authservice check (302 to the IdP, login-state cookie) → IdP login form → POST credentials →
 * 302 to the authservice callback → `Set-Cookie: <session cookie>`.
 *
 * Works with the dev IdP (demo/devidp) and Dex's password form. Cookies are kept per host:port
 * (good enough for a loopback-only flow; no Domain/Secure handling needed here).
 */

/** A login's outcome: the `Cookie` header value carrying the session. */
export interface LoginResult {
  readonly cookie: string;
  /** How many HTTP exchanges the login took (for the log line). */
  readonly steps: number;
}

interface Jar {
  readonly byHost: Map<string, Map<string, string>>;
}

function header(jar: Jar, url: URL): string {
  const c = jar.byHost.get(url.host);
  return c ? [...c].map(([k, v]) => `${k}=${v}`).join('; ') : '';
}

function keep(jar: Jar, url: URL, res: Response): void {
  for (const line of res.headers.getSetCookie()) {
    const [pair = '', ...attrs] = line.split(';');
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    const cookies = jar.byHost.get(url.host) ?? new Map<string, string>();
    jar.byHost.set(url.host, cookies);
    const expired = attrs.some((a) => /^\s*max-age\s*=\s*(0|-\d+)\s*$/i.test(a));
    if (expired) cookies.delete(name);
    else cookies.set(name, value);
  }
}

/** The first <form> containing a field named `field`: its action and its fields' default values. */
function findForm(html: string, field: string): { action: string; fields: Record<string, string> } | undefined {
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const attrs = m[1] ?? '';
    const body = m[2] ?? '';
    if (!new RegExp(`name=["']?${field}["'\\s>]`, 'i').test(body)) continue;
    const action = (/action=["']([^"']*)["']/i.exec(attrs)?.[1] ?? '').replace(/&amp;/g, '&');
    const fields: Record<string, string> = {};
    for (const input of body.matchAll(/<(?:input|button)\b([^>]*)>/gi)) {
      const a = input[1] ?? '';
      const name = /name=["']([^"']*)["']/i.exec(a)?.[1];
      const value = (/value=["']([^"']*)["']/i.exec(a)?.[1] ?? '').replace(/&amp;/g, '&');
      if (name && !(name in fields)) fields[name] = value;
    }
    return { action, fields };
  }
  return undefined;
}

/**
 * Logs `login`/`password` in through the authservice at `authservice` (base URL) for `path`,
 * sending `forwarded` headers on requests to the authservice as a gateway would.
 * Throws, saying at which step and with what status, when the flow does not end in a session cookie.
 */
export async function oidcLogin(opts: {
  authservice: string;
  path: string;
  login: string;
  password: string;
  sessionCookieName: string;
  forwarded: Readonly<Record<string, string>>;
}): Promise<LoginResult> {
  const jar: Jar = { byHost: new Map() };
  const authHost = new URL(opts.authservice).host;
  let steps = 0;
  const go = async (url: URL, init: { method?: string; body?: string; contentType?: string } = {}): Promise<{ res: Response; text: string; url: URL }> => {
    steps++;
    if (steps > 20) throw new Error('login: more than 20 requests without reaching a session');
    const headers = new Headers({ accept: 'text/html' });
    const cookie = header(jar, url);
    if (cookie) headers.set('cookie', cookie);
    if (url.host === authHost) for (const [k, v] of Object.entries(opts.forwarded)) headers.set(k, v);
    if (init.contentType) headers.set('content-type', init.contentType);
    const res = await fetch(url, { method: init.method ?? 'GET', headers, redirect: 'manual', ...(init.body !== undefined ? { body: init.body } : {}) });
    keep(jar, url, res);
    return { res, text: await res.text(), url };
  };
  const follow = async (first: { res: Response; text: string; url: URL }): Promise<{ res: Response; text: string; url: URL }> => {
    let cur = first;
    while (cur.res.status >= 300 && cur.res.status < 400) {
      const loc = cur.res.headers.get('location');
      if (!loc) throw new Error(`login: ${cur.res.status} from ${cur.url.href} without Location`);
      if (jar.byHost.get(authHost)?.has(opts.sessionCookieName)) return cur;
      cur = await go(new URL(loc, cur.url));
    }
    return cur;
  };

  let page = await follow(await go(new URL(opts.path, opts.authservice)));
  for (let form = 0; form < 4 && !jar.byHost.get(authHost)?.has(opts.sessionCookieName); form++) {
    const login = findForm(page.text, 'password');
    const approval = login ? undefined : findForm(page.text, 'approval');
    const f = login ?? approval;
    if (!f) throw new Error(`login: ${page.res.status} from ${page.url.href} has no login or approval form and set no session cookie: ${page.text.slice(0, 200)}`);
    const fields = { ...f.fields, ...(login ? { login: opts.login, password: opts.password } : { approval: 'approve' }) };
    page = await follow(
      await go(new URL(f.action || page.url.href, page.url), {
        method: 'POST',
        body: new URLSearchParams(fields).toString(),
        contentType: 'application/x-www-form-urlencoded',
      }),
    );
  }
  const value = jar.byHost.get(authHost)?.get(opts.sessionCookieName);
  if (!value) throw new Error(`login: finished at ${page.url.href} (${page.res.status}) without a '${opts.sessionCookieName}' cookie`);
  return { cookie: `${opts.sessionCookieName}=${value}`, steps };
}
