/**
 * Weights are relative since Istio 1.15: a destination gets weight / (sum of weights). A 90/30
 * split validates and the router sends 3 in 4 requests to the first destination. The random draw
 * is replaced by fixed values so the split is checked exactly, not statistically.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildSnapshotFromText, formatIssue } from '../../config/index.ts';
import { compileL4Routes, compileRoutes } from '../../gateway/router.ts';

const YAML = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: 9000, name: tcp, protocol: TCP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: split}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route:
    - destination: {host: a.example.com}
      weight: 90
    - destination: {host: b.example.com}
      weight: 30
  tcp:
  - route:
    - destination: {host: a.example.com, port: {number: 9000}}
      weight: 90
    - destination: {host: b.example.com, port: {number: 9000}}
      weight: 30
`;

function withRandom<T>(value: number, fn: () => T): T {
  const real = Math.random;
  Math.random = () => value;
  try {
    return fn();
  } finally {
    Math.random = real;
  }
}

test('a 90/30 split is valid and routes 75% / 25%', async () => {
  const r = await buildSnapshotFromText(YAML, 'split.yaml');
  assert.ok(r.ok, r.ok ? '' : r.issues.map((i) => formatIssue(i)).join('\n'));
  const port80 = r.snapshot.gateways[0].ports.find((p) => p.number === 80);
  assert.ok(port80);
  const [route] = compileRoutes(port80.virtualHosts[0].routes, 'default/gw');
  // 90 / 120 = 0.75: draws below go to a, draws above to b.
  assert.equal(withRandom(0.749, () => route.pick())?.host, 'a.example.com');
  assert.equal(withRandom(0.751, () => route.pick())?.host, 'b.example.com');
  const port9000 = r.snapshot.gateways[0].ports.find((p) => p.number === 9000);
  assert.ok(port9000?.tcpRoutes);
  const [l4] = compileL4Routes(port9000.tcpRoutes, 'default/gw');
  assert.equal(withRandom(0.749, () => l4.pick())?.host, 'a.example.com');
  assert.equal(withRandom(0.751, () => l4.pick())?.host, 'b.example.com');
});
