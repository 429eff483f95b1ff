/**
 * EnvoyFilter forms older Kubeflow releases ship must load as Istio loads them.
 * Kubeflow ≤ 1.6's authn-filter (common/oidc-authservice/base/envoy-filter.yaml) matches
 * `filter.name: envoy.http_connection_manager` with `subFilter: {name: ""}`; an empty subFilter
 * name is proto3's default, i.e. no sub-filter constraint, and Istio accepts it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildSnapshotFromText, formatIssue, type ConfigIssue } from '../../config/index.ts';

type Built = Awaited<ReturnType<typeof buildSnapshotFromText>>;
const allIssues = (b: Built): readonly ConfigIssue[] => (b.ok ? b.warnings : [...b.issues, ...(b.warnings ?? [])]);
const show = (b: Built) => allIssues(b).map((i) => formatIssue(i)).join('\n');

const REGISTRY = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: authservice
  namespace: istio-system
spec:
  hosts: [authservice.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1}]
---
`;

const filter = (subFilter: string) => `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: authn-filter
  namespace: istio-system
spec:
  workloadSelector:
    labels:
      istio: ingressgateway
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener:
        filterChain:
          filter:
            name: "envoy.http_connection_manager"
${subFilter}
    patch:
      operation: INSERT_BEFORE
      value:
        name: "envoy.filters.http.ext_authz"
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
          http_service:
            server_uri:
              uri: http://authservice.istio-system.svc.cluster.local
              cluster: outbound|8080||authservice.istio-system.svc.cluster.local
              timeout: 10s
            authorization_request:
              allowed_headers:
                patterns:
                - exact: "authorization"
                - exact: "cookie"
                - exact: "x-auth-token"
            authorization_response:
              allowed_upstream_headers:
                patterns:
                - exact: "kubeflow-userid"
`;

test("Kubeflow ≤ 1.6 authn-filter: subFilter {name: ''} is accepted as no sub-filter constraint", async () => {
  const built = await buildSnapshotFromText(REGISTRY + filter('            subFilter:\n              name: ""'), 'authn-filter.yaml');
  assert.ok(built.ok, show(built));
  assert.ok(!allIssues(built).some((i) => i.path.includes('subFilter')), show(built));
  assert.equal(built.snapshot.extAuthz.length, 1);
});

test('the same filter with no subFilter, and with a named one, compile to the same ext_authz', async () => {
  const empty = await buildSnapshotFromText(REGISTRY + filter('            subFilter:\n              name: ""'), 'a.yaml');
  const absent = await buildSnapshotFromText(REGISTRY + filter(''), 'a.yaml');
  assert.ok(empty.ok, show(empty));
  assert.ok(absent.ok, show(absent));
  assert.deepEqual(empty.snapshot.extAuthz, absent.snapshot.extAuthz);
  const named = await buildSnapshotFromText(REGISTRY + filter('            subFilter:\n              name: "envoy.filters.http.router"'), 'a.yaml');
  assert.ok(named.ok, show(named));
});

test('a subFilter name of the wrong type is still reported', async () => {
  const built = await buildSnapshotFromText(REGISTRY + filter('            subFilter:\n              name: [1]'), 'a.yaml');
  assert.ok(!built.ok && built.issues.some((i) => i.path.endsWith('subFilter.name')), show(built));
});
