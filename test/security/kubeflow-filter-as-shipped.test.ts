/**
 * Threat: protections that silently depend on headers the gateway does not forward. Kubeflow's
 * authn-filter, exactly as shipped, forwards only `authorization`, `cookie` and `x-auth-token` to
 * the check (no accept, x-requested-with, x-forwarded-*, origin, sec-fetch-site). Through a real
 * Portico gateway running that filter: login still works (relative OIDC_AUTH_URL resolved from
 * Host), logout CSRF protection still holds (a browser's same-origin proof is dropped, so the
 * form post is refused, and the refusal names the headers to add), and a script's logout with
 * `Authorization: Bearer` (oidc-authservice's convention) works and clears the cookie — with a
 * non-2xx answer, so the check path cannot turn it into "allow".
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Browser, submitIdpLogin } from '../helpers/authservice-harness.ts';
import { startKubeflowStack } from '../helpers/stack.ts';

test("Kubeflow's authn-filter as shipped: login, CSRF-safe logout refusal naming the missing headers, bearer-style logout", async (t) => {
  const stack = await startKubeflowStack(t, { form: 'envoy-filter', idp: 'devidp', kubeflowFilterAsWritten: true });
  if (!stack) return;
  assert.equal(stack.env.OIDC_AUTH_URL, '/dex/auth', 'the example uses Kubeflow\'s relative OIDC_AUTH_URL');
  const jason = stack.users.find((u) => u.email === 'jason@example.com')!;
  const browser = new Browser();
  const start = `${stack.http}/httpbin/headers`;

  const first = await browser.request(start);
  assert.equal(first.status, 302, first.body);
  const toDex = new URL(first.headers.get('location')!);
  assert.equal(`${toDex.origin}${toDex.pathname}`, `${stack.http}/dex/auth`, 'relative OIDC_AUTH_URL resolved against the Host the browser used');
  const landed = await submitIdpLogin(browser, await browser.navigate(toDex), jason.email, jason.password);
  assert.equal(landed.status, 200, landed.body.slice(0, 300));
  const seen = Object.entries((JSON.parse(landed.body) as { headers: Record<string, string> }).headers).find(([k]) => k.toLowerCase() === 'kubeflow-userid');
  assert.equal(seen?.[1], 'jason@example.com');
  const alive = async () => (await browser.request(start)).status === 200;

  // A page's form post: the browser sends Origin and Sec-Fetch-Site, the filter drops them.
  const form = await browser.request(`${stack.http}/authservice/logout`, {
    method: 'POST',
    headers: { origin: stack.http, 'sec-fetch-site': 'same-origin', accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded' },
    body: '',
  });
  assert.equal(form.status, 403, form.body.slice(0, 300));
  assert.match(form.body, /origin/i);
  assert.match(form.body, /sec-fetch-site/i);
  assert.match(form.body, /allowed_headers/);
  assert.ok(await alive(), 'refused logout leaves the session alone');

  // A script in oidc-authservice's style: Authorization: Bearer (forwarded by the filter as shipped).
  const sid = browser.cookie('authservice_session')!;
  const out = await browser.request(`${stack.http}/authservice/logout`, { method: 'POST', headers: { authorization: 'Bearer logout' } });
  assert.equal(out.status, 401, out.body);
  assert.deepEqual(JSON.parse(out.body), { loggedOut: true, afterLogoutURL: '/productpage' });
  assert.equal(browser.cookie('authservice_session'), undefined, 'the clearing Set-Cookie reached the browser');
  const replay = await fetch(start, { headers: { cookie: `authservice_session=${sid}` }, redirect: 'manual' });
  await replay.arrayBuffer();
  assert.equal(replay.status, 302, 'the old session is gone');
});
