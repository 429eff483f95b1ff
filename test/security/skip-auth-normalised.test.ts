/**
 * Threat: bypassing authentication with path tricks against SKIP_AUTH_URLS. Matching happens on
 * the normalised path (dot segments, encoded dots, backslashes, duplicate slashes), never on the
 * query string, and on segment boundaries.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rawRequest, startAuthStack } from '../helpers/authservice-harness.ts';

test('only paths that normalise under a skip prefix skip authentication', async (t) => {
  const stack = await startAuthStack(t, { env: { SKIP_AUTH_URLS: '/public/,/healthz-app' } });
  if (!stack) return;
  const check = async (path: string) => (await rawRequest(stack.authservice, path, { headers: { accept: 'application/json' } })).status;
  for (const path of ['/public/', '/public/logo.svg', '/public/a/../b', '/healthz-app/live', '/public/x?next=/private']) {
    assert.equal(await check(path), 200, `${path} should skip`);
  }
  for (const path of [
    '/public/../private',
    '/public/%2e%2e/private',
    '/public/%2E%2E/private',
    '/public/.%2e/private',
    '/public\\..\\private',
    '/public/x/../../private',
    '/private?x=/public/',
    '/private?/public/',
    '/private#/public/',
    '/publicity',
    '/healthz-application',
    // An entry is a directory: the bare path is not under it (see skip-auth-bare-prefix.test.ts).
    '/healthz-app',
    '/healthz-app?x=1',
    '/public',
    '/public%2F..%2Fprivate',
    '/PUBLIC/x',
    // BASE (Istio's default) does not merge slashes: the gateway does not route this under /public either.
    '//public//x',
  ]) {
    assert.equal(await check(path), 401, `${path} must not skip`);
  }
});

test('PORTICO_CHECK_PATH_PREFIX is stripped before matching, and cannot be used to skip', async (t) => {
  const stack = await startAuthStack(t, { env: { SKIP_AUTH_URLS: '/public/', PORTICO_CHECK_PATH_PREFIX: '/check' } });
  if (!stack) return;
  const check = async (path: string) => (await rawRequest(stack.authservice, path, { headers: { accept: 'application/json' } })).status;
  assert.equal(await check('/check/public/x'), 200);
  assert.equal(await check('/check/private'), 401);
  assert.equal(await check('/check/../public/x/../../private'), 401);
});
