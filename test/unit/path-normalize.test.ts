/**
 * Property tests for request-path normalisation: whatever the client sends, the result is
 * canonical, stable, and cannot name a path outside what plain segments would.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { normalizePath } from '../../lib/path.ts';

const segment = fc.oneof(
  fc.constantFrom('.', '..', '', '%2e', '%2E%2e', '%2f', '%5C', 'a', 'b', 'admin', '%41', '%7e', '~', 'x%20y'),
  fc.stringMatching(/^[a-z0-9_~-]{1,6}$/),
);
const rawPath = fc.array(segment, { maxLength: 10 }).map((segs) => '/' + segs.join(fc.sample(fc.constantFrom('/', '//', '\\'), 1)[0]!));

test('normalisation is idempotent', () => {
  fc.assert(
    fc.property(rawPath, (p) => {
      const once = normalizePath(p);
      if (once === undefined) return true;
      assert.equal(normalizePath(once), once);
      return true;
    }),
    { numRuns: 2000 },
  );
});

test('normalised paths have no dot segments, no empty inner segments, no backslashes or encoded slashes', () => {
  fc.assert(
    fc.property(rawPath, (p) => {
      const n = normalizePath(p);
      if (n === undefined) return true;
      assert.ok(n.startsWith('/'), n);
      const inner = n.slice(1).split('/');
      inner.slice(0, -1).forEach((s) => assert.notEqual(s, '', `${p} → ${n}`));
      for (const s of inner) assert.ok(s !== '.' && s !== '..', `${p} → ${n}`);
      assert.ok(!/\\|%2f|%5c|%2e/i.test(n), `${p} → ${n}`);
      return true;
    }),
    { numRuns: 2000 },
  );
});

test('plain paths without dots, escapes or repeated slashes are unchanged', () => {
  fc.assert(
    fc.property(fc.array(fc.stringMatching(/^[a-zA-Z0-9_-]{1,8}$/), { maxLength: 8 }), fc.boolean(), (segs, trailing) => {
      const p = '/' + segs.join('/') + (trailing && segs.length ? '/' : '');
      assert.equal(normalizePath(p), p);
    }),
  );
});

test('no input climbs above the root or escapes a prefix it appears to be under', () => {
  fc.assert(
    fc.property(rawPath, (p) => {
      const n = normalizePath(`/public${p}`);
      if (n === undefined) return true;
      // Either still under /public, or the client itself walked out with `..` (then it is matched as what it is).
      const walkedOut = /(^|[/\\])(\.|%2e){2}([/\\]|%2f|%5c|$)/i.test(p);
      if (!walkedOut) assert.ok(n === '/public' || n.startsWith('/public/') , `${p} → ${n}`);
      return true;
    }),
    { numRuns: 2000 },
  );
});

test('examples from Envoy and the issue', () => {
  const cases: [string, string | undefined][] = [
    ['/a/../b', '/b'],
    ['/a/./b', '/a/b'],
    ['//a///b', '/a/b'],
    ['/a/%2e%2e/b', '/b'],
    ['/a%2F..%2Fb', '/b'],
    ['/a%5c..%5Cb', '/b'],
    ['/../../etc', '/etc'],
    ['/%7Euser', '/~user'],
    ['/a%3fb', '/a%3Fb'],
    ['/a%00b', undefined],
    ['/a%zz', undefined],
    ['relative', undefined],
    ['/a\u0001b', undefined],
  ];
  for (const [input, want] of cases) assert.equal(normalizePath(input), want, input);
});
