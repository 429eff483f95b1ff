/**
 * A real browser for e2e tests: playwright-core driving Debian's Chromium (`apt-get install
 * chromium`). Skips the test loudly when Chromium is absent, and fails instead under
 * PORTICO_REQUIRE=chromium. Closed by `t.after`.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { findDex, findDexWebDir } from './dex.ts';
import { isRequired, missing, which } from './external.ts';
import type { IdpKind } from './stack.ts';

/** Where Chromium is: $CHROMIUM_BIN, else Debian's /usr/bin/chromium, else `chromium` on PATH. */
export function findChromium(): string | undefined {
  return which(process.env.CHROMIUM_BIN ?? '/usr/bin/chromium') ?? which('chromium');
}

export const CHROMIUM_ARGS: readonly string[] = Object.freeze([
  '--no-sandbox',
  '--headless',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]);

/** Launches headless Chromium, or returns undefined after skipping the test (see module comment). */
export async function launchChromium(t: TestContext): Promise<Browser | undefined> {
  const executablePath = findChromium();
  if (!executablePath) {
    missing(t, 'chromium', 'no /usr/bin/chromium ($CHROMIUM_BIN); apt-get install -y chromium');
    return undefined;
  }
  const browser = await chromium.launch({ executablePath, args: [...CHROMIUM_ARGS], timeout: 30_000 });
  t.after(() => browser.close());
  return browser;
}

/** Real Dex when it is built (or required), else the dev IdP. */
export function preferredIdp(): IdpKind {
  const bin = findDex();
  return (bin && findDexWebDir(bin)) || isRequired('dex') ? 'dex' : 'devidp';
}

/** A temp dir for screenshots; kept after the run so a person can look at them. */
export function screenshotDir(name: string): string {
  return mkdtempSync(join(tmpdir(), `portico-${name}-`));
}

/** Fills Dex's (or the dev IdP's) password form on `page` and submits it, like a person. */
export async function fillIdpLogin(page: Page, login: string, password: string): Promise<void> {
  await page.locator('#login').fill(login);
  await page.locator('#password').fill(password);
  await page.locator('#submit-login').click();
}
