/**
 * `uriRegexRewrite` as Envoy's `regex_rewrite`: RE2::GlobalReplace semantics — every
 * non-overlapping match replaced, `\0`–`\9` name groups, `\\` is a backslash, `$` is literal.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { RE2JS } from 're2js';
import { compileFullMatch, compileGlobalReplace, literalPrefix, re2RewriteProblem } from '../../lib/re2.ts';

test('groups, the whole match and literal characters', () => {
  assert.equal(compileGlobalReplace('^/service/([^/]+)(/.*)$', '\\2/instance/\\1')('/service/foo/v1/api'), '/v1/api/instance/foo');
  assert.equal(compileGlobalReplace('^/old/(.*)$', '/new/\\1?cost=$5&x=$1')('/old/a'), '/new/a?cost=$5&x=$1', '$ is not special in RE2 rewrites');
  assert.equal(compileGlobalReplace('/v[0-9]+', '[\\0]')('/v1/x/v22'), '[/v1]/x[/v22]', '\\0 is the whole match; every match is replaced');
  assert.equal(compileGlobalReplace('a', '\\\\')('bab'), 'b\\b');
  assert.equal(compileGlobalReplace('(a)|(b)', '<\\1\\2>')('ab'), '<a><b>', 'a group that did not take part inserts nothing');
  assert.equal(compileGlobalReplace('(.)(.)(.)(.)(.)(.)(.)(.)(.)(.)', '\\10')('abcdefghij'), 'a0', '\\10 is group 1 then 0, not group 10');
});

test('RE2-only syntax in the pattern', () => {
  assert.equal(compileGlobalReplace('^/u/(?P<id>\\pL+)$', '/users/\\1')('/u/zoë'), '/users/zoë');
});

test('rewrite strings are checked against the pattern', () => {
  assert.equal(re2RewriteProblem('^/(a)/(b)$', '/\\2/\\1/\\0'), undefined);
  assert.match(re2RewriteProblem('^/(a)$', '/\\2') ?? '', /only 1 capture group/);
  assert.match(re2RewriteProblem('^/a$', '/\\n') ?? '', /digit or/);
  assert.match(re2RewriteProblem('^/a$', '/\\') ?? '', /digit or/);
});

test('the literal-prefix shortcut never changes a full-match answer', () => {
  assert.equal(literalPrefix('/api/v[0-9]+'), '/api/v');
  assert.equal(literalPrefix('/api/v+'), '/api/');
  assert.equal(literalPrefix('/a|/b'), '');
  assert.equal(literalPrefix('(?i)/api'), '');
  assert.equal(literalPrefix('\\Q/a\\E'), '');
  const atom = fc.constantFrom('a', 'b', '/', 'ab', 'a*', 'b+', 'a?', '[ab]', '.', '(a|b)', 'a{2}', '\\.', '-');
  fc.assert(
    fc.property(fc.array(atom, { minLength: 1, maxLength: 6 }), fc.stringMatching(/^[ab/.-]{0,8}$/), (atoms, value) => {
      const pattern = atoms.join('');
      assert.equal(compileFullMatch(pattern)(value), RE2JS.compile(pattern).testExact(value), `${pattern} on ${value}`);
    }),
    { numRuns: 3000 },
  );
});
