/**
 * Threat: after login the authservice sends the browser "back" to a URL an attacker chose
 * (`https://site/login?next=//evil.example`-style). Only same-origin relative paths are kept.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openLoginState, parseCookies } from '../../authservice/cookies.ts';
import { Browser, browseAndLogin, rawRequest, startAuthStack } from '../helpers/authservice-harness.ts';

const EVIL = [
  '//evil.example',
  '//evil.example/path',
  '/\\evil.example',
  '/\\/evil.example',
  '/%2F%2Fevil.example',
  '/%2f/evil.example',
  '/%5Cevil.example',
  '/%252F%252Fevil.example',
  '/%09/evil.example',
  '/%0d%0a/evil.example',
  'https://evil.example/',
  'http://evil.example',
];

async function returnToFor(stack: NonNullable<Awaited<ReturnType<typeof startAuthStack>>>, path: string): Promise<string | undefined> {
  const r = await rawRequest(stack.authservice, path, { headers: { accept: 'text/html', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'kf.example.com' } });
  assert.equal(r.status, 302, `${path}: ${r.status} ${r.body.slice(0, 200)}`);
  const setCookie = ([] as string[]).concat(r.headers['set-cookie'] ?? []);
  const cookies = parseCookies(setCookie.map((c) => c.split(';')[0]).join('; '));
  const [, value] = [...cookies].find(([name]) => name.startsWith('authservice_login_')) ?? [];
  const state = await openLoginState(stack.app.authservice.keys.login, value);
  return state?.returnTo;
}

test('every redirect trick falls back to / (no AFTER_LOGIN_URL)', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  assert.equal(await returnToFor(stack, '/notebooks/?ns=a'), '/notebooks/?ns=a', 'positive control');
  for (const path of EVIL) assert.equal(await returnToFor(stack, path), '/', path);
});

test('…or to AFTER_LOGIN_URL when set', async (t) => {
  const stack = await startAuthStack(t, { env: { AFTER_LOGIN_URL: '/home' } });
  if (!stack) return;
  for (const path of EVIL) assert.equal(await returnToFor(stack, path), '/home', path);
});

test('end to end: logging in from //evil.example and /%5Cevil.example lands on this site', async (t) => {
  const stack = await startAuthStack(t);
  if (!stack) return;
  for (const path of ['//evil.example', '/%5Cevil.example', '/%2F%2Fevil.example']) {
    const browser = new Browser();
    const final = await browseAndLogin(browser, `${stack.gateway.url}${path}`, stack.users[0]!);
    assert.equal(final.status, 200, `${path}: ${final.status}`);
    assert.equal(final.url, `${stack.gateway.url}/`, path);
    assert.ok(browser.visited.every((u) => !new URL(u).hostname.includes('evil')), browser.visited.join('\n'));
  }
});
