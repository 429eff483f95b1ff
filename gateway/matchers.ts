/**
 * Compiles the snapshot's match data into closures, once per snapshot swap. Nothing here
 * allocates per request beyond what the predicates themselves need.
 */
import type { NamedMatch, RouteMatch, StringMatch, ValueMatch } from '../config/snapshot.ts';
import { compileFullMatch, type Re2Predicate } from '../lib/re2.ts';

export type StringPredicate = (value: string) => boolean;

/** The parts of a request that route matching reads. Built once per request. */
export interface MatchInput {
  readonly method: string;
  /** Normalised path, without the query string. */
  readonly path: string;
  /** Raw query string without `?`. */
  readonly query: string;
  readonly scheme: string;
  /** Host header as sent (may include a port). */
  readonly authority: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  /** Listener port the request arrived on. */
  readonly port: number;
  readonly sourceLabels?: Readonly<Record<string, string>>;
  readonly sourceNamespace?: string;
  /** Lazily parsed query parameters; filled by `queryParam`. */
  parsedQuery?: URLSearchParams;
}

/**
 * Istio regexes are RE2 full matches (Envoy `RE2::FullMatch`), linear in the input: compiled with
 * re2js, never RegExp. Validation has already rejected what RE2 does not accept.
 */
export function compileRegex(pattern: string, ignoreCase = false): Re2Predicate {
  return compileFullMatch(pattern, ignoreCase);
}

export function compileStringMatch(m: StringMatch, ignoreCase = false): StringPredicate {
  if ('exact' in m) {
    if (!ignoreCase) {
      const want = m.exact;
      return (v) => v === want;
    }
    const want = m.exact.toLowerCase();
    return (v) => v.length === want.length && v.toLowerCase() === want;
  }
  if ('prefix' in m) {
    if (!ignoreCase) {
      const want = m.prefix;
      return (v) => v.startsWith(want);
    }
    const want = m.prefix.toLowerCase();
    return (v) => v.length >= want.length && v.slice(0, want.length).toLowerCase() === want;
  }
  return compileRegex(m.regex, ignoreCase || m.ignoreCase === true);
}

function compileValueMatch(m: ValueMatch): StringPredicate {
  if ('present' in m) return () => true;
  return compileStringMatch(m);
}

function headerValue(headers: MatchInput['headers'], name: string): string | undefined {
  const v = headers[name];
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v.join(',') : v;
}

function queryParam(input: MatchInput, name: string): string | undefined {
  if (input.query === '') return undefined;
  input.parsedQuery ??= new URLSearchParams(input.query);
  const v = input.parsedQuery.get(name);
  return v === null ? undefined : v;
}

type InputPredicate = (input: MatchInput) => boolean;

function headerPredicate(h: NamedMatch): InputPredicate {
  const test = compileValueMatch(h.match);
  const name = h.name;
  // Istio lets header matches name pseudo-headers; map them onto request fields.
  if (name === ':authority' || name === 'host') return (i) => test(i.authority);
  if (name === ':method') return (i) => test(i.method);
  if (name === ':path') return (i) => test(i.query ? `${i.path}?${i.query}` : i.path);
  if (name === ':scheme') return (i) => test(i.scheme);
  return (i) => {
    const v = headerValue(i.headers, name);
    return v !== undefined && test(v);
  };
}

function withoutHeaderPredicate(h: NamedMatch): InputPredicate {
  const present = headerPredicate(h);
  return (i) => !present(i);
}

function stripPort(authority: string): string {
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    return end > 0 ? authority.slice(0, end + 1) : authority;
  }
  const colon = authority.lastIndexOf(':');
  return colon >= 0 ? authority.slice(0, colon) : authority;
}

/** Compiles one `match[]` entry: every field present must hold (AND). */
export function compileRouteMatch(m: RouteMatch): InputPredicate {
  const checks: InputPredicate[] = [];
  if (m.uri) {
    const test = compileStringMatch(m.uri, m.ignoreUriCase);
    checks.push((i) => test(i.path));
  }
  if (m.method) {
    const test = compileStringMatch(m.method);
    checks.push((i) => test(i.method));
  }
  if (m.scheme) {
    const test = compileStringMatch(m.scheme);
    checks.push((i) => test(i.scheme));
  }
  if (m.authority) {
    const test = compileStringMatch(m.authority);
    // Istio matches authority with and without the port, as Envoy's :authority header.
    checks.push((i) => test(i.authority) || test(stripPort(i.authority)));
  }
  if (m.port !== undefined) {
    const port = m.port;
    checks.push((i) => i.port === port);
  }
  for (const h of m.headers) checks.push(headerPredicate(h));
  for (const h of m.withoutHeaders) checks.push(withoutHeaderPredicate(h));
  for (const q of m.queryParams) {
    const test = compileValueMatch(q.match);
    const name = q.name;
    checks.push((i) => {
      const v = queryParam(i, name);
      return v !== undefined && test(v);
    });
  }
  // `match[].gateways` is resolved statically by the router (see applicableMatches).
  if (m.sourceLabels) {
    const wanted = Object.entries(m.sourceLabels);
    checks.push((i) => wanted.every(([k, v]) => i.sourceLabels?.[k] === v));
  }
  if (m.sourceNamespace !== undefined) {
    const ns = m.sourceNamespace;
    checks.push((i) => i.sourceNamespace === ns);
  }
  switch (checks.length) {
    case 0:
      return () => true;
    case 1:
      return checks[0]!;
    case 2: {
      const [a, b] = checks as [InputPredicate, InputPredicate];
      return (i) => a(i) && b(i);
    }
    default:
      return (i) => {
        for (const c of checks) if (!c(i)) return false;
        return true;
      };
  }
}

/** Compiles a route's `match[]` (ORed). An empty list matches everything. */
export function compileMatchList(matches: readonly RouteMatch[]): InputPredicate {
  if (matches.length === 0) return () => true;
  const each = matches.map(compileRouteMatch);
  if (each.length === 1) return each[0]!;
  return (i) => {
    for (const p of each) if (p(i)) return true;
    return false;
  };
}

/**
 * Host lookup over a set of domains: exact names first, then the longest `*.suffix`, then `*`.
 * `host` must be lower-case with the port removed.
 */
export class DomainIndex<T> {
  private readonly exact = new Map<string, T>();
  private readonly wildcards: { suffix: string; value: T }[] = [];
  private catchAll: T | undefined;

  add(domain: string, value: T): void {
    if (domain === '*') {
      this.catchAll ??= value;
    } else if (domain.startsWith('*')) {
      const suffix = domain.slice(1); // keeps the dot: '*.example.com' -> '.example.com'
      if (!this.wildcards.some((w) => w.suffix === suffix)) this.wildcards.push({ suffix, value });
      this.wildcards.sort((a, b) => b.suffix.length - a.suffix.length);
    } else if (!this.exact.has(domain)) {
      this.exact.set(domain, value);
    }
  }

  lookup(host: string): T | undefined {
    const hit = this.exact.get(host);
    if (hit !== undefined) return hit;
    for (const w of this.wildcards) {
      if (host.length > w.suffix.length && host.endsWith(w.suffix)) return w.value;
    }
    return this.catchAll;
  }
}

/** Lower-cases and strips the port from a Host header value. */
export function hostOnly(authority: string): string {
  return stripPort(authority).toLowerCase();
}
