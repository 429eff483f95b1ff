/**
 * Real Dex (built by scripts/build-dex.sh) end to end: discovery, JWKS, the password login with
 * plain fetch, code exchange, ID token verification, refresh. Skips loudly without a dex binary;
 * fails instead under PORTICO_REQUIRE=dex.
 */
import { test } from 'node:test';
import { assertFullPasswordLogin, startCallbackServer, startDex } from '../helpers/dex.ts';

test('real Dex: full password login, token exchange, refresh, and refusals', async (t) => {
  const callback = await startCallbackServer(t);
  const dex = await startDex(t, { redirectURIs: [callback.url] });
  if (!dex) return;
  await assertFullPasswordLogin(dex, callback);
});
