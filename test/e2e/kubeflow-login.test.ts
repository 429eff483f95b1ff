/**
 * config/examples/kubeflow as written (ports aside), both ext_authz forms, against the dev IdP
 * and real Dex: a person reaching an app through the gateway without a session is sent to Dex
 * (through the gateway's /dex/ route), logs in, lands back on the URL they asked for, and the app
 * receives `kubeflow-userid` from the session, never the value the client sent. API calls get
 * 401, and a bearer ID token from the same issuer works.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Browser, submitIdpLogin } from '../helpers/authservice-harness.ts';
import { authURL, discover, loginForCode, startCallbackServer, tokenRequest } from '../helpers/dex.ts';
import { exampleDexConfig, exampleEnv, IDPS, startKubeflowStack, type AuthzForm } from '../helpers/stack.ts';

const FORMS: readonly AuthzForm[] = ['envoy-filter', 'istio-custom', 'istio-jwt'];
const SPOOF = { 'kubeflow-userid': 'mallory@evil.example', 'Kubeflow_UserID': 'mallory@evil.example' };

interface HeadersEcho {
  headers: Record<string, string>;
}

function echoed(body: string): Record<string, string> {
  const parsed = JSON.parse(body) as HeadersEcho;
  return Object.fromEntries(Object.entries(parsed.headers).map(([k, v]) => [k.toLowerCase(), v]));
}

for (const form of FORMS) {
  // The same journey with the in-gateway session fast path on (issue 14.2): identical answers.
  for (const [idpKind, fastPath] of [...IDPS.map((i) => [i, undefined] as const), ['devidp', { ttl: 30 }] as const]) {
    const variant = fastPath ? `${idpKind}, session fast path` : idpKind;
    test(`kubeflow example (${form}, ${variant}): browser login through the gateway reaches the app as jason`, async (t) => {
      const stack = await startKubeflowStack(t, { form, idp: idpKind, ...(fastPath ? { fastPath } : {}) });
      if (!stack) return;
      const jason = stack.users.find((u) => u.email === 'jason@example.com')!;
      const browser = new Browser();
      const start = `${stack.http}/httpbin/headers?tab=notebooks`;

      // No session: a page load is sent to Dex, through the gateway's /dex/ VirtualService.
      const first = await browser.request(start, { headers: SPOOF });
      assert.equal(first.status, 302, first.body);
      const toDex = new URL(first.headers.get('location')!);
      assert.equal(`${toDex.origin}${toDex.pathname}`, `${stack.http}/dex/auth`);
      assert.equal(toDex.searchParams.get('client_id'), stack.env.CLIENT_ID);
      assert.equal(toDex.searchParams.get('redirect_uri'), `${stack.http}/authservice/oidc/callback`);

      const loginPage = await browser.navigate(toDex, { headers: SPOOF });
      assert.equal(loginPage.status, 200);
      assert.match(loginPage.url, new RegExp(`^${stack.http}/dex/`), 'the login form is served through the gateway');
      assert.match(loginPage.body, /name="?password/);

      const landed = await submitIdpLogin(browser, loginPage, jason.email, jason.password);
      assert.equal(landed.status, 200, landed.body.slice(0, 500));
      assert.equal(landed.url, start, 'back on the original URL, query included');
      assert.ok(browser.visited.some((u) => u.startsWith(`${stack.http}/authservice/oidc/callback?`)), 'callback went through the gateway');
      const seen = echoed(landed.body);
      assert.equal(seen['kubeflow-userid'], 'jason@example.com');
      assert.ok(!Object.values(seen).some((v) => v.includes('mallory')), `spoofed identity reached the app: ${landed.body}`);
      assert.ok(browser.cookie('authservice_session'), 'session cookie set');

      // Logged in: other apps behind the gateway see the same user.
      const page = await browser.navigate(`${stack.http}/productpage`, { headers: SPOOF });
      assert.equal(page.status, 200);
      assert.match(page.body, /Signed in as <b id="user">jason@example\.com<\/b>/);

      // An XHR from the logged-in page carries the cookie and works too.
      const xhr = await browser.request(`${stack.http}/httpbin/headers`, { headers: { accept: 'application/json', ...SPOOF } });
      assert.equal(xhr.status, 200);
      assert.equal(echoed(xhr.body)['kubeflow-userid'], 'jason@example.com');

      // Logout from a script (Kubeflow's dashboard does this with XHR): a non-2xx JSON answer (a 2xx
      // would mean "allow" on the check path), cookie cleared, session gone.
      const sid = browser.cookie('authservice_session')!;
      const out = await browser.request(`${stack.http}/authservice/logout`, {
        method: 'POST',
        headers: { accept: 'application/json', origin: stack.http, 'sec-fetch-site': 'same-origin' },
      });
      assert.equal(out.status, 401, out.body);
      assert.equal((JSON.parse(out.body) as { loggedOut?: boolean }).loggedOut, true);
      assert.ok((JSON.parse(out.body) as { afterLogoutURL?: string }).afterLogoutURL?.endsWith('/productpage'));
      assert.equal(browser.cookie('authservice_session'), undefined, 'cookie cleared');
      const replay = await fetch(`${stack.http}/httpbin/headers`, { headers: { accept: 'application/json', cookie: `authservice_session=${sid}` } });
      assert.equal(replay.status, 401, 'the old session cookie no longer works');
      await replay.arrayBuffer();
    });

    if (fastPath) continue; // bearer tokens never use the fast path
    test(`kubeflow example (${form}, ${idpKind}): API calls without a session get 401; a bearer ID token works`, async (t) => {
      const script = await startCallbackServer(t);
      const stack = await startKubeflowStack(t, { form, idp: idpKind, extraRedirectURIs: [script.url] });
      if (!stack) return;
      const jason = stack.users.find((u) => u.email === 'jason@example.com')!;

      const api = await fetch(`${stack.http}/httpbin/headers`, { headers: { accept: 'application/json', ...SPOOF }, redirect: 'manual' });
      assert.equal(api.status, 401);
      assert.equal(api.headers.get('location'), null);
      const body = (await api.json()) as { error?: string };
      assert.equal(body.error, 'PORTICO_ERR_AUTHN_REQUIRED');

      const xrw = await fetch(`${stack.http}/httpbin/headers`, { headers: { 'x-requested-with': 'XMLHttpRequest' }, redirect: 'manual' });
      assert.equal(xrw.status, 401);
      await xrw.arrayBuffer();

      // A script gets an ID token from the same Dex (code flow to its own callback) and sends it.
      const d = await discover(stack.idp.issuer);
      const params = await loginForCode(d, { clientId: stack.env.CLIENT_ID!, redirectURI: script.url, scope: 'openid email profile', login: jason.email, password: jason.password }, script);
      assert.ok(authURL(d, { clientId: 'x', redirectURI: script.url }).startsWith(stack.idp.issuer));
      const tokens = await tokenRequest(d, {
        clientId: stack.env.CLIENT_ID!,
        clientSecret: stack.env.CLIENT_SECRET!,
        params: { grant_type: 'authorization_code', code: params.get('code')!, redirect_uri: script.url },
      });
      assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
      const idToken = String(tokens.body.id_token);

      const withBearer = await fetch(`${stack.http}/httpbin/headers`, { headers: { accept: 'application/json', authorization: `Bearer ${idToken}`, ...SPOOF } });
      assert.equal(withBearer.status, 200);
      const seen = echoed(await withBearer.text());
      assert.equal(seen['kubeflow-userid'], 'jason@example.com');
      assert.ok(!Object.values(seen).some((v) => v.includes('mallory')));

      // A token that is not from this issuer, or tampered with, is refused.
      const [h, p, s] = idToken.split('.');
      const tampered = `${h}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), email: 'admin@example.com' })).toString('base64url')}.${s}`;
      const bad = await fetch(`${stack.http}/httpbin/headers`, { headers: { accept: 'application/json', authorization: `Bearer ${tampered}` } });
      assert.equal(bad.status, 401);
      await bad.arrayBuffer();
    });
  }
}

test('kubeflow example: the Dex ConfigMap and the authservice params.env agree', () => {
  const env = exampleEnv();
  const dex = exampleDexConfig() as { issuer: string; staticClients: { id: string; secret: string; redirectURIs: string[] }[] };
  assert.equal(dex.issuer, env.OIDC_PROVIDER);
  const client = dex.staticClients.find((c) => c.id === env.CLIENT_ID);
  assert.ok(client, `Dex has no client ${env.CLIENT_ID}`);
  assert.equal(client.secret, env.CLIENT_SECRET);
  // OIDC_AUTH_URL is Kubeflow's relative /dex/auth: the callback is on whichever gateway origin the browser used.
  assert.equal(env.OIDC_AUTH_URL, '/dex/auth');
  for (const origin of ['http://localhost:8080', 'https://localhost:8443']) {
    assert.ok(client.redirectURIs.includes(`${origin}${env.AUTHSERVICE_URL_PREFIX!.replace(/\/$/, '')}/oidc/callback`), origin);
  }
});
