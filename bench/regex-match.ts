/**
 * Micro-cost of one config regex match: JavaScript RegExp (what Portico used before, backtracking)
 * against re2js (linear time, what it uses now), on typical Istio patterns, hit and miss.
 *   node --import tsx bench/regex-match.ts
 * Exact and prefix StringMatches do not use either engine; their cost is shown for scale.
 */
import { compileFullMatch } from '../lib/re2.ts';

const CASES: [pattern: string, hit: string, miss: string][] = [
  ['/api/v[0-9]+/users/.*', '/api/v2/users/12345/profile', '/static/app.js'],
  ['(?i)x-forwarded-.*', 'X-Forwarded-For', 'cookie'],
  ['[a-z0-9-]+\\.example\\.com', 'reviews-v2.example.com', 'reviews.other.org'],
  ['/productpage|/static/.*|/login', '/static/bootstrap/css/bootstrap.min.css', '/api/v1/products'],
];

function nsPerCall(f: (s: string) => boolean, s: string): number {
  for (let i = 0; i < 20_000; i++) f(s);
  const n = 200_000;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) f(s);
  return Number(process.hrtime.bigint() - t0) / n;
}

console.log('pattern'.padEnd(34), 'RegExp hit/miss ns'.padEnd(22), 're2js hit/miss ns'.padEnd(22), 'startsWith ns');
for (const [pattern, hit, miss] of CASES) {
  const ic = pattern.startsWith('(?i)');
  const js = new RegExp(`^(?:${ic ? pattern.slice(4) : pattern})$`, ic ? 'iu' : 'u');
  const re2 = compileFullMatch(pattern);
  const jsTest = (v: string): boolean => js.test(v);
  const prefix = hit.slice(0, 5);
  const row = [nsPerCall(jsTest, hit), nsPerCall(jsTest, miss), nsPerCall(re2, hit), nsPerCall(re2, miss), nsPerCall((v) => v.startsWith(prefix), hit)].map((x) => x.toFixed(0));
  console.log(pattern.padEnd(34), `${row[0]} / ${row[1]}`.padEnd(22), `${row[2]} / ${row[3]}`.padEnd(22), row[4]);
}
