/**
 * Fields Istio added in 1.24–1.31 are accepted (Portico does not reject valid Istio config), and
 * each one Portico does not act on is a `warning:` naming the field — never an "unknown field"
 * error, and never silently ignored.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildSnapshotFromText, ConfigErrorCodes, formatIssue } from '../../config/index.ts';

const YAML = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api}
spec:
  host: api.example.com
  trafficPolicy:
    loadBalancer:
      simple: LEAST_REQUEST
      warmup: {duration: 60s, minimumPercent: 10, aggression: 1.5}
    connectionPool:
      http:
        http2KeepAlive: {interval: 30s, timeout: 5s}
    retryBudget: {percent: {value: 20}, minRetryConcurrency: 3, budgetInterval: 10s}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: sticky}
spec:
  host: sticky.example.com
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpCookie:
          name: session
          ttl: 0s
          attributes: [{name: SameSite, value: Strict}]
        ringHash: {minimumRingSize: 2048}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api}
spec:
  hosts: [api.example.com]
  http:
  - retries: {attempts: 3, retryIgnorePreviousHosts: false, backoff: 50ms}
    route: [{destination: {host: api.example.com}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: sticky}
spec:
  hosts: [sticky.example.com]
  http:
  - route: [{destination: {host: sticky.example.com}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-sa, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: ALLOW
  rules:
  - from: [{source: {serviceAccounts: [kubeflow/ml-pipeline]}}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: dex, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  jwtRules:
  - issuer: http://dex.auth.svc.cluster.local:5556/dex
    jwksUri: http://dex.auth.svc.cluster.local:5556/dex/keys
    spaceDelimitedClaims: [scope]
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: waypoint, namespace: istio-system}
spec:
  configPatches:
  - applyTo: CLUSTER
    match: {context: WAYPOINT}
    patch:
      operation: MERGE_AND_REPLACE_LIST
      value: {common_lb_config: {healthy_panic_threshold: {value: 0}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    serviceEntryVisibility: EXPORTED
    pathNormalization: {normalization: MERGE_SLASHES}
`;

test('Istio 1.24–1.31 fields validate; the ones Portico does not act on warn by name', async () => {
  const r = await buildSnapshotFromText(YAML, 'new.yaml');
  assert.ok(r.ok, r.ok ? '' : r.issues.map((i) => formatIssue(i)).join('\n'));
  const unknown = r.warnings.filter((w) => w.code === ConfigErrorCodes.UNKNOWN_FIELD);
  assert.deepEqual(unknown.map((w) => formatIssue(w)), []);
  const warned = new Set(r.warnings.filter((w) => w.code === ConfigErrorCodes.NOT_ENFORCED).map((w) => `${w.kind}:${w.path}`));
  for (const want of [
    'DestinationRule:spec.trafficPolicy.loadBalancer.warmup',
    'DestinationRule:spec.trafficPolicy.connectionPool.http.http2KeepAlive',
    'DestinationRule:spec.trafficPolicy.retryBudget',
    'DestinationRule:spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes',
    'VirtualService:spec.http[0].retries.retryIgnorePreviousHosts',
    'VirtualService:spec.http[0].retries.backoff',
    'AuthorizationPolicy:spec.rules[0].from[0].source.serviceAccounts',
    'RequestAuthentication:spec.jwtRules[0].spaceDelimitedClaims',
    'MeshConfig:spec.serviceEntryVisibility',
  ]) assert.ok(warned.has(want), `no not-enforced warning for ${want}; got ${[...warned].join(', ')}`);
  // Enforced, so no warning: ringHash.minimumRingSize feeds the ring, pathNormalization the normaliser.
  assert.ok(![...warned].some((w) => w.includes('ringHash') || w.includes('pathNormalization')));
  const sticky = r.snapshot.clusters.find((c) => c.host === 'sticky.example.com');
  assert.deepEqual(sticky?.trafficPolicy.loadBalancer, { consistentHash: { httpCookie: { name: 'session', ttlMs: 0 }, minimumRingSize: 2048 } });
});

test('policy targetRefs of kind Gateway are resolved (no warning); other kinds warn that they select nothing', async () => {
  const ap = (kind: string): string => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: istio-system}
spec:
  targetRefs: [{kind: ${kind}, group: gateway.networking.k8s.io, name: istio-ingressgateway}]
  action: DENY
  rules: [{}]
`;
  const gw = await buildSnapshotFromText(ap('Gateway'), 'ap.yaml');
  assert.ok(gw.ok);
  assert.deepEqual(gw.warnings.map((w) => formatIssue(w)), []);
  const svc = await buildSnapshotFromText(ap('Service'), 'ap.yaml');
  assert.ok(svc.ok);
  assert.deepEqual(svc.warnings.map((w) => [w.path, w.code]), [['spec.targetRefs[0]', ConfigErrorCodes.NOT_ENFORCED]]);
});
