import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { matchesAny, normalisePath, safeReturnPath, underPrefix } from '../../authservice/paths.ts';

test('normalisePath (BASE, the default) removes dot segments, decodes unreserved, drops the query; keeps // and %2F', () => {
  const cases: [string, string | undefined][] = [
    ['/', '/'],
    ['/a/b', '/a/b'],
    ['/public/../private', '/private'],
    ['/public/%2e%2e/private', '/private'],
    ['/public/%2E%2E/private', '/private'],
    ['/public/./x', '/public/x'],
    ['//a///b', '//a///b'],
    ['/a//../b', '/a/b'],
    ['/a/b/..', '/a/'],
    ['/../../etc', '/etc'],
    ['/private?x=/public', '/private'],
    ['/public\\..\\private', '/private'],
    ['/public%2F..%2Fprivate', '/public%2F..%2Fprivate'],
    ['/%7Euser', '/~user'],
    ['/a%zz', undefined],
    ['/a%00b', undefined],
  ];
  for (const [input, want] of cases) assert.equal(normalisePath(input), want, input);
});

test('normalisePath follows the configured MeshConfig mode', () => {
  assert.equal(normalisePath('//a///b', 'MERGE_SLASHES'), '/a/b');
  assert.equal(normalisePath('/public%2F..%2Fprivate', 'MERGE_SLASHES'), '/public%2F..%2Fprivate');
  assert.equal(normalisePath('/public%2F..%2Fprivate', 'DECODE_AND_MERGE_SLASHES'), '/private');
  assert.equal(normalisePath('/public/../private?x', 'NONE'), '/public/../private');
});

test('normalisePath is idempotent and never yields dot segments', () => {
  fc.assert(
    fc.property(fc.array(fc.constantFrom('a', '.', '..', '', '%2e', '%2E%2e', 'b%2F', '\\'), { maxLength: 8 }), (parts) => {
      const once = normalisePath(`/${parts.join('/')}`);
      assert.ok(once !== undefined);
      assert.equal(normalisePath(once), once);
      assert.ok(!/(^|\/)\.\.?(\/|$)/.test(once), once);
    }),
  );
});

test('prefix matching is on segment boundaries', () => {
  assert.ok(underPrefix('/public', '/public'));
  assert.ok(underPrefix('/public/x', '/public'));
  assert.ok(!underPrefix('/publicity', '/public'));
  assert.ok(underPrefix('/public/x', '/public/'));
  assert.ok(underPrefix('/public', '/public/'));
  assert.ok(!underPrefix('/private', '/public/'));
  assert.ok(matchesAny('/dex/auth', ['/x', '/dex/']));
});

test('safeReturnPath accepts same-origin paths only', () => {
  for (const ok of ['/', '/notebooks/?ns=a', '/a/b#frag', '/x?next=//evil.example']) assert.equal(safeReturnPath(ok), ok);
  for (const bad of [
    '//evil.example',
    '//evil.example/path',
    '/\\evil.example',
    '\\\\evil.example',
    'https://evil.example',
    'http:/evil.example',
    'javascript:alert(1)',
    '/%2fevil.example',
    '/%2F%2Fevil.example',
    '%2F%2Fevil.example',
    '/%5cevil.example',
    '/%252F%252Fevil.example',
    '/ /evil.example',
    '/\t/evil.example',
    '/\n/evil.example',
    ' //evil.example',
    '/%09/evil.example',
    '/%0a/evil.example',
    '',
    'relative/path',
  ]) {
    assert.equal(safeReturnPath(bad), undefined, JSON.stringify(bad));
  }
});
