/**
 * Control plane shutdown (what SIGTERM runs) with proxies connected: open snapshot streams, a
 * reconnecting client and a raw stream must not hold `close()` up. Before forceCloseConnections
 * the server waited for the keep-alive sockets of the ended streams and close() took ~70 s.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { createRootCa } from '../../certs/index.ts';
import { subscribeSnapshots } from '../../controlplane/client.ts';
import { startControlPlane } from '../../controlplane/server.ts';

const TOKEN = 'shutdown-token-0123456789abcdefghij';

test('control plane close() with open streams and reconnecting clients finishes in under 5 s', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-cp-shutdown-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(
    join(dir, 'gw.yaml'),
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 18080, name: http, protocol: HTTP}, hosts: ["*"]}]
`,
  );
  const cp = await startControlPlane({ config: [dir], port: 0, ca: createRootCa({ commonName: 'Shutdown CA' }), token: TOKEN, host: '127.0.0.1', heartbeatMs: 200 });
  let got = 0;
  const subs = ['a', 'b', 'c'].map((node) =>
    subscribeSnapshots({ url: cp.url, token: TOKEN, node, minBackoffMs: 50, maxBackoffMs: 200, onSnapshot: () => void got++, onError: () => undefined }),
  );
  t.after(() => subs.forEach((s) => s.close()));
  const raw = await request(`${cp.url}/v1/snapshots/stream?node=raw`, { headers: { authorization: `Bearer ${TOKEN}` } });
  raw.body.on('data', () => undefined).on('error', () => undefined);
  // Streams a client opened and aborted, as a proxy restarting does.
  for (let i = 0; i < 3; i++) {
    const ac = new AbortController();
    const r = await request(`${cp.url}/v1/snapshots/stream?node=gone-${i}`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: ac.signal });
    const chunks = (async () => {
      try {
        for await (const _ of r.body) ac.abort();
      } catch {
        // aborted on purpose
      }
    })();
    await chunks;
  }
  await new Promise<void>((resolve) => {
    const check = (): void => (got >= 3 ? resolve() : void setTimeout(check, 10));
    check();
  });
  const started = Date.now();
  await cp.close();
  const took = Date.now() - started;
  assert.ok(took < 5000, `close() took ${took} ms with streams open (want < 5 s, Contracts: SIGTERM under 5 s)`);
});
