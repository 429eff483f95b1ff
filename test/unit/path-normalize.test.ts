/**
 * Property tests for request-path normalisation (lib/path.ts), in each MeshConfig
 * `pathNormalization` mode: whatever the client sends, the result is canonical for the mode,
 * stable, and cannot name a path outside what plain segments would.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { normalizePath, parsePathNormalization, type PathNormalization } from '../../lib/path.ts';

const NORMALISING: readonly PathNormalization[] = ['BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'];

const segment = fc.oneof(
  fc.constantFrom('.', '..', '', '%2e', '%2E%2e', '%2f', '%5C', 'a', 'b', 'admin', '%41', '%7e', '~', 'x%20y', '..%2F', '%2e%2e%2f'),
  fc.stringMatching(/^[a-z0-9_~-]{1,6}$/),
);
const separator = fc.constantFrom('/', '//', '\\');
const rawPath = fc.array(fc.tuple(segment, separator), { maxLength: 10 }).map((parts) => '/' + parts.map(([s, sep]) => s + sep).join(''));
const mode = fc.constantFrom(...NORMALISING);

test('normalisation is idempotent in every mode', () => {
  fc.assert(
    fc.property(rawPath, fc.constantFrom<PathNormalization>('NONE', ...NORMALISING), (p, m) => {
      const once = normalizePath(p, m);
      if (once === undefined) return true;
      assert.equal(normalizePath(once, m), once, `${m}: ${p} → ${once}`);
      return true;
    }),
    { numRuns: 3000 },
  );
});

test('normalised paths have no dot segments (encoded or not) and no backslashes', () => {
  fc.assert(
    fc.property(rawPath, mode, (p, m) => {
      const n = normalizePath(p, m);
      if (n === undefined) return true;
      assert.ok(n.startsWith('/'), n);
      for (const s of n.slice(1).split('/')) assert.ok(s !== '.' && s !== '..', `${m}: ${p} → ${n}`);
      assert.ok(!/\\|%2e/i.test(n), `${m}: ${p} → ${n}`);
      return true;
    }),
    { numRuns: 3000 },
  );
});

test('slashes: merged only by MERGE_SLASHES modes; %2F/%5C decoded only by DECODE_AND_MERGE_SLASHES', () => {
  fc.assert(
    fc.property(rawPath, mode, (p, m) => {
      const n = normalizePath(p, m);
      if (n === undefined) return true;
      const merged = !n.slice(0, -1).includes('//');
      if (m !== 'BASE') assert.ok(merged, `${m}: ${p} → ${n}`);
      if (m === 'DECODE_AND_MERGE_SLASHES') assert.ok(!/%2f|%5c/i.test(n), `${m}: ${p} → ${n}`);
      // Elsewhere an encoded slash is an ordinary character of its segment: normalising is the
      // same as if it were a letter ('Z' appears in no generated path).
      else assert.equal(normalizePath(p.replace(/%2f|%5c/gi, 'Z'), m), n.replace(/%2F|%5C/g, 'Z'), `${m}: ${p} → ${n}`);
      return true;
    }),
    { numRuns: 3000 },
  );
  // The example: one path, one meaning per mode.
  assert.equal(normalizePath('/public/..%2Fadmin', 'BASE'), '/public/..%2Fadmin');
  assert.equal(normalizePath('/public/..%2Fadmin', 'MERGE_SLASHES'), '/public/..%2Fadmin');
  assert.equal(normalizePath('/public/..%2Fadmin', 'DECODE_AND_MERGE_SLASHES'), '/admin');
  assert.equal(normalizePath('//a//b', 'BASE'), '//a//b');
  assert.equal(normalizePath('//a//b', 'MERGE_SLASHES'), '/a/b');
});

test('plain paths without dots, escapes or repeated slashes are unchanged in every mode', () => {
  fc.assert(
    fc.property(fc.array(fc.stringMatching(/^[a-zA-Z0-9_-]{1,8}$/), { maxLength: 8 }), fc.boolean(), mode, (segs, trailing, m) => {
      const p = '/' + segs.join('/') + (trailing && segs.length ? '/' : '');
      assert.equal(normalizePath(p, m), p);
    }),
  );
});

test('no input climbs above the root or escapes a prefix it appears to be under', () => {
  fc.assert(
    fc.property(rawPath, mode, (p, m) => {
      const n = normalizePath(`/public${p}`, m);
      if (n === undefined) return true;
      // Either still under /public, or the client itself walked out with `..` — in DECODE mode
      // `..` may also be followed by an encoded slash (then it is matched as what it is).
      const sep = m === 'DECODE_AND_MERGE_SLASHES' ? '[/\\\\]|%2f|%5c' : '[/\\\\]';
      const walkedOut = new RegExp(`(^|${sep})(\\.|%2e){2}(${sep}|$)`, 'i').test(p);
      if (!walkedOut) assert.ok(n === '/public' || n.startsWith('/public/'), `${m}: ${p} → ${n}`);
      return true;
    }),
    { numRuns: 3000 },
  );
});

test('NONE uses the path as received', () => {
  fc.assert(fc.property(rawPath, (p) => normalizePath(p, 'NONE') === p));
  assert.equal(normalizePath('relative', 'NONE'), undefined);
});

test('examples from Envoy, Istio and the issue', () => {
  const cases: [string, PathNormalization, string | undefined][] = [
    ['/a/../b', 'BASE', '/b'],
    ['/a/./b', 'BASE', '/a/b'],
    ['\\da', 'BASE', undefined],
    ['/\\da', 'BASE', '//da'],
    ['/a//b', 'BASE', '/a//b'],
    ['/a//b', 'MERGE_SLASHES', '/a/b'],
    ['/a%2fb', 'DECODE_AND_MERGE_SLASHES', '/a/b'],
    ['/a%2fb', 'BASE', '/a%2Fb'],
    ['/a/%2e%2e/b', 'BASE', '/b'],
    ['/a%2F..%2Fb', 'DECODE_AND_MERGE_SLASHES', '/b'],
    ['/a%5c..%5Cb', 'DECODE_AND_MERGE_SLASHES', '/b'],
    ['/a%5c..%5Cb', 'MERGE_SLASHES', '/a%5C..%5Cb'],
    ['/../../etc', 'BASE', '/etc'],
    ['/%7Euser', 'BASE', '/~user'],
    ['/a%3fb', 'BASE', '/a%3Fb'],
    ['/a%00b', 'BASE', undefined],
    ['/a%zz', 'BASE', undefined],
    ['relative', 'BASE', undefined],
    ['/a\u0001b', 'BASE', undefined],
  ];
  for (const [input, m, want] of cases) assert.equal(normalizePath(input, m), want, `${m}: ${input}`);
  assert.equal(normalizePath('/a//b'), '/a//b', 'BASE is the default');
  assert.equal(parsePathNormalization(undefined), 'BASE');
  assert.equal(parsePathNormalization('DEFAULT'), 'BASE');
  assert.equal(parsePathNormalization('MERGE_SLASHES'), 'MERGE_SLASHES');
  assert.equal(parsePathNormalization('merge_slashes'), undefined);
});
