/**
 * A real browser (Chromium through playwright-core) in front of config/examples/kubeflow over
 * HTTPS: the app → Dex's login form (through the gateway's /dex/ route) → back to the app, which
 * shows the kubeflow-userid it received; logout the way a page does it (a same-origin form POST);
 * and two tabs logging in at once. Real Dex when built (PORTICO_REQUIRE=dex on CI), else the dev
 * IdP. Screenshots are kept in a temp dir printed by the test.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { fillIdpLogin, launchChromium, preferredIdp, screenshotDir } from '../helpers/browser.ts';
import { startKubeflowStack, type AuthzForm, type KubeflowStack } from '../helpers/stack.ts';

const shots = screenshotDir('browser-login');
process.stderr.write(`browser-login screenshots: ${shots}\n`);

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

async function sessionCookie(context: BrowserContext): Promise<{ secure: boolean; httpOnly: boolean; sameSite: string } | undefined> {
  return (await context.cookies()).find((c) => c.name === 'authservice_session');
}

/** Waits until `page` shows Dex's (or the dev IdP's) password form, served through the gateway. */
async function expectLoginForm(page: Page, stack: KubeflowStack): Promise<void> {
  await page.locator('#password').waitFor({ timeout: 10_000 });
  assert.ok(page.url().startsWith(`${stack.https}/dex/auth`), `login form at ${page.url()}`);
}

for (const form of ['envoy-filter', 'istio-custom'] as const satisfies readonly AuthzForm[]) {
  test(`browser (${form}): app → Dex login form → back to the app as jason → logout`, async (t) => {
    const browser = await launchChromium(t);
    if (!browser) return;
    const idp = preferredIdp();
    const stack = await startKubeflowStack(t, { form, idp, browserScheme: 'https' });
    if (!stack) return;
    process.stderr.write(`browser-login (${form}): IdP ${stack.idpKind} at ${stack.idp.issuer}\n`);
    const jason = stack.users.find((u) => u.email === 'jason@example.com')!;
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    // A client-sent identity header on every request: the app must never see it.
    await context.setExtraHTTPHeaders({ 'kubeflow-userid': 'mallory@evil.example' });
    const page = await context.newPage();

    const app = `${stack.https}/productpage`;
    await page.goto(app);
    await expectLoginForm(page, stack);
    await page.screenshot({ path: join(shots, `${form}-1-dex-login.png`) });

    await fillIdpLogin(page, jason.email, jason.password);
    await page.waitForURL(app, { timeout: 10_000 });
    assert.equal(await page.locator('#user').textContent(), 'jason@example.com');
    await page.screenshot({ path: join(shots, `${form}-2-app-as-jason.png`), fullPage: true });

    const cookie = await sessionCookie(context);
    assert.ok(cookie, 'session cookie set');
    assert.equal(cookie.secure, true, 'Secure over https');
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Lax');

    // What the app receives, seen by httpbin in the same session.
    await page.goto(`${stack.https}/httpbin/headers`);
    const echoed = JSON.parse((await page.locator('body').textContent()) ?? '{}') as { headers: Record<string, string> };
    assert.equal(echoed.headers['Kubeflow-Userid'], 'jason@example.com');
    assert.ok(!JSON.stringify(echoed).includes('mallory'));

    // Logout as a page's "Sign out" button does it: a same-origin form POST.
    await page.goto(app);
    await Promise.all([
      page.waitForURL((u) => u.href.startsWith(`${stack.https}/dex/auth`), { timeout: 10_000 }),
      // (A string, as it runs in the page: this project compiles without the DOM lib.)
      page.evaluate(`{
        const f = document.createElement('form');
        f.method = 'POST';
        f.action = '/authservice/logout';
        document.body.appendChild(f);
        f.submit();
      }`),
    ]);
    // AFTER_LOGOUT_URL is /productpage: with the session gone, that is Dex's login form again.
    await expectLoginForm(page, stack);
    assert.equal(await sessionCookie(context), undefined, 'session cookie cleared');
    await page.screenshot({ path: join(shots, `${form}-3-after-logout.png`) });

    // Nothing logged in is left: an API call with the browser's cookies gets 401.
    const api = await context.request.get(`${stack.https}/httpbin/headers`, { headers: { accept: 'application/json' }, maxRedirects: 0 });
    assert.equal(api.status(), 401);
    await context.close();
  });
}

test('browser: two tabs logging in at once both end up logged in where they started', async (t) => {
  const browser = await launchChromium(t);
  if (!browser) return;
  const stack = await startKubeflowStack(t, { form: 'envoy-filter', idp: preferredIdp(), browserScheme: 'https' });
  if (!stack) return;
  const jason = stack.users.find((u) => u.email === 'jason@example.com')!;
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const [a, b] = [await context.newPage(), await context.newPage()];
  const urlA = `${stack.https}/productpage`;
  const urlB = `${stack.https}/httpbin/headers?tab=b`;

  // Both tabs start at the app and both reach the login form before either logs in.
  await Promise.all([a.goto(urlA), b.goto(urlB)]);
  await Promise.all([expectLoginForm(a, stack), expectLoginForm(b, stack)]);
  const loginCookies = (await context.cookies()).filter((c) => c.name.startsWith('authservice_login_'));
  assert.equal(loginCookies.length, 2, 'one login-state cookie per tab');

  await Promise.all([fillIdpLogin(a, jason.email, jason.password), fillIdpLogin(b, jason.email, jason.password)]);
  await Promise.all([a.waitForURL(urlA, { timeout: 10_000 }), b.waitForURL(new RegExp(`^${esc(urlB)}$`), { timeout: 10_000 })]);
  assert.equal(await a.locator('#user').textContent(), 'jason@example.com');
  const echoed = JSON.parse((await b.locator('body').textContent()) ?? '{}') as { headers: Record<string, string> };
  assert.equal(echoed.headers['Kubeflow-Userid'], 'jason@example.com');
  await a.screenshot({ path: join(shots, 'two-tabs-a.png') });
  await b.screenshot({ path: join(shots, 'two-tabs-b.png') });

  // Still logged in after both logins (the second login's session is the browser's session).
  await a.reload();
  assert.equal(await a.locator('#user').textContent(), 'jason@example.com');
  assert.ok(await sessionCookie(context));
  await context.close();
});
