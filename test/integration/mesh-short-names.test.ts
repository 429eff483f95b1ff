/**
 * A sidecar's outbound listener resolves short host names in its own namespace first, as the
 * Kubernetes DNS search path does: `reviews` from namespace z-curl is reviews.z-curl
 * when that exists, not a-example's (the first one loaded, before).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'undici';
import { startGateway } from '../helpers/gateway.ts';
import { freePort } from '../helpers/net.ts';
import { startEcho, type Echo } from '../helpers/upstream.ts';

test('short names resolve in the caller\'s namespace first, then anywhere in the mesh', async (t) => {
  const example = await startEcho(t, 'a-example');
  const curl = await startEcho(t, 'z-curl');
  const only = await startEcho(t, 'ratings');
  const out = await freePort();
  const se = (name: string, ns: string, port: number): string => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${name}, namespace: ${ns}}
spec:
  hosts: [${name}.${ns}.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${port}}}]`;
  const vs = (ns: string): string => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: ${ns}}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]`;
  await startGateway(t, [se('reviews', 'a-example', example.port), se('reviews', 'z-curl', curl.port), se('ratings', 'a-example', only.port), vs('a-example'), vs('z-curl')].join('\n---\n'), {
    namespace: 'z-curl',
    meshOutbound: { port: out },
  });
  const via = async (host: string): Promise<string> => {
    const res = await request(`http://127.0.0.1:${out}/`, { headers: { host } });
    assert.equal(res.statusCode, 200, host);
    return ((await res.body.json()) as Echo).name;
  };
  assert.equal(await via('reviews:9080'), 'z-curl', 'VirtualService host, short form');
  assert.equal(await via('reviews.a-example:9080'), 'a-example', 'namespace-qualified');
  assert.equal(await via('ratings:9080'), 'ratings', 'no ratings in z-curl: the mesh one');
});
