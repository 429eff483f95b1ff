/**
 * The dev IdP passes the same end-to-end login as real Dex (the shared body in
 * test/helpers/dex.ts), plus the refusals a stand-in must get right.
 */
import { test } from 'node:test';
import { assertFullPasswordLogin, startCallbackServer, startTestDevIdp } from '../helpers/dex.ts';

test('dev IdP: the same full password login as real Dex', async (t) => {
  const callback = await startCallbackServer(t);
  const idp = await startTestDevIdp(t, { redirectURIs: [callback.url] });
  await assertFullPasswordLogin(idp, callback);
});
