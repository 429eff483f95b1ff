/**
 * Property tests for the compiled StringMatch predicates against a straightforward reference.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { compileRouteMatch, compileStringMatch, DomainIndex, hostOnly, type MatchInput } from '../../gateway/matchers.ts';

const text = fc.string({ maxLength: 12 });

test('exact and prefix behave like === and startsWith, with and without ignoreCase', () => {
  fc.assert(
    fc.property(text, text, fc.boolean(), (pattern, value, ic) => {
      const exact = compileStringMatch({ exact: pattern }, ic);
      const prefix = compileStringMatch({ prefix: pattern }, ic);
      const norm = (s: string) => (ic ? s.toLowerCase() : s);
      assert.equal(exact(value), norm(value) === norm(pattern));
      assert.equal(prefix(value), norm(value).startsWith(norm(pattern)));
    }),
    { numRuns: 3000 },
  );
});

test('regex is a full match (RE2 semantics), never a substring search', () => {
  fc.assert(
    fc.property(fc.stringMatching(/^[a-z]{1,5}$/), fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), (core, before, after) => {
      const escaped = core.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      const re = compileStringMatch({ regex: escaped });
      assert.equal(re(before + core + after), before === '' && after === '');
    }),
    { numRuns: 2000 },
  );
  assert.equal(compileStringMatch({ regex: 'a|b' })('ab'), false, 'alternation is anchored as a whole');
  assert.equal(compileStringMatch({ regex: 'a|b' })('b'), true);
});

function input(over: Partial<MatchInput>): MatchInput {
  return { method: 'GET', path: '/', query: '', scheme: 'http', authority: 'h', headers: {}, port: 80, ...over };
}

test('fields inside one match entry are ANDed', () => {
  fc.assert(
    fc.property(fc.boolean(), fc.boolean(), fc.boolean(), (uriOk, methodOk, headerOk) => {
      const m = compileRouteMatch({ uri: { prefix: '/api' }, method: { exact: 'POST' }, headers: [{ name: 'x-a', match: { exact: '1' } }], withoutHeaders: [], queryParams: [], ignoreUriCase: false });
      const i = input({ path: uriOk ? '/api/x' : '/web', method: methodOk ? 'POST' : 'GET', headers: headerOk ? { 'x-a': '1' } : {} });
      assert.equal(m(i), uriOk && methodOk && headerOk);
    }),
  );
});

test('query parameter and presence matches', () => {
  const m = compileRouteMatch({ headers: [{ name: 'x-present', match: { present: true } }], withoutHeaders: [{ name: 'x-absent', match: { present: true } }], queryParams: [{ name: 'q', match: { exact: 'a b' } }], ignoreUriCase: false });
  assert.equal(m(input({ query: 'q=a+b', headers: { 'x-present': '' } })), true);
  assert.equal(m(input({ query: 'q=a%20b', headers: { 'x-present': 'v' } })), true);
  assert.equal(m(input({ query: 'q=a', headers: { 'x-present': 'v' } })), false);
  assert.equal(m(input({ query: 'q=a+b', headers: {} })), false);
  assert.equal(m(input({ query: 'q=a+b', headers: { 'x-present': '', 'x-absent': '1' } })), false);
});

test('domain index: exact beats the longest wildcard beats *', () => {
  const idx = new DomainIndex<string>();
  for (const d of ['*', '*.example.com', '*.api.example.com', 'www.example.com']) idx.add(d, d);
  assert.equal(idx.lookup('www.example.com'), 'www.example.com');
  assert.equal(idx.lookup('v1.api.example.com'), '*.api.example.com');
  assert.equal(idx.lookup('a.example.com'), '*.example.com');
  assert.equal(idx.lookup('example.com'), '*', 'a wildcard needs at least one label');
  assert.equal(idx.lookup('other.org'), '*');
  assert.equal(hostOnly('WWW.Example.com:8443'), 'www.example.com');
  assert.equal(hostOnly('[::1]:80'), '[::1]');
});

test('regex matching is RE2: RE2-only syntax works, and alternation is a full match of the whole value', () => {
  assert.equal(compileStringMatch({ regex: '/users/(?P<id>[0-9]+)' })('/users/42'), true);
  assert.equal(compileStringMatch({ regex: '\\pL+' })('héllo'), true);
  assert.equal(compileStringMatch({ regex: '\\pL+' })('h3llo'), false);
  assert.equal(compileStringMatch({ regex: 'a(?i)bc' })('aBC'), true);
  assert.equal(compileStringMatch({ regex: 'a(?i)bc' })('ABC'), false);
  assert.equal(compileStringMatch({ regex: 'a|ab' })('ab'), true, 'full match tries every alternative, as RE2::FullMatch');
  assert.equal(compileStringMatch({ regex: 'abc', ignoreCase: true })('ABC'), true);
});
