/**
 * Sidecar injection, the pure part (kube/inject.ts, kube/iptables.ts): Istio's inject / skip
 * rules (webhook selectors + injectRequired), the JSON patch, probe rewriting and the iptables rules.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { APP_PROBERS_ENV, injectionDecision, injectionPatch, INIT_CONTAINER, PROXY_CONTAINER, STATUS_ANNOTATION, type Container, type PodLike } from '../../kube/inject.ts';
import { parseInboundMap, renderRules } from '../../kube/iptables.ts';

const pod = (over: { labels?: Record<string, string>; annotations?: Record<string, string>; hostNetwork?: boolean; namespace?: string; containers?: Container[] } = {}): PodLike => ({
  metadata: { name: 'reviews-1', namespace: over.namespace ?? 'bookinfo', labels: { app: 'reviews', ...over.labels }, annotations: over.annotations },
  spec: { hostNetwork: over.hostNetwork, serviceAccountName: 'reviews', containers: over.containers ?? [{ name: 'app', image: 'reviews:1', ports: [{ containerPort: 9080, name: 'http' }] }] },
});

test('injection decision follows Istio: namespace label, istio.io/rev, pod label over annotation, hostNetwork, already injected', () => {
  const enabled = { 'istio-injection': 'enabled' };
  const cases: [string, PodLike, Record<string, string>, boolean][] = [
    ['labelled namespace', pod(), enabled, true],
    ['unlabelled namespace', pod(), {}, false],
    ['istio-injection=disabled', pod(), { 'istio-injection': 'disabled' }, false],
    ['istio.io/rev=default', pod(), { 'istio.io/rev': 'default' }, true],
    ['istio.io/rev=canary (another revision)', pod(), { 'istio.io/rev': 'canary' }, false],
    ['pod label inject=true in an unlabelled namespace', pod({ labels: { 'sidecar.istio.io/inject': 'true' } }), {}, true],
    ['pod annotation inject=true in an unlabelled namespace (selectors see labels only)', pod({ annotations: { 'sidecar.istio.io/inject': 'true' } }), {}, false],
    ['pod annotation inject=false in a labelled namespace', pod({ annotations: { 'sidecar.istio.io/inject': 'false' } }), enabled, false],
    ['pod label inject=false in a labelled namespace', pod({ labels: { 'sidecar.istio.io/inject': 'false' } }), enabled, false],
    ['label wins over annotation', pod({ labels: { 'sidecar.istio.io/inject': 'true' }, annotations: { 'sidecar.istio.io/inject': 'false' } }), enabled, true],
    ['annotation yes', pod({ annotations: { 'sidecar.istio.io/inject': 'yes' } }), enabled, true],
    ['hostNetwork', pod({ hostNetwork: true }), enabled, false],
    ['kube-system', pod({ namespace: 'kube-system' }), enabled, false],
    ['already injected', pod({ annotations: { [STATUS_ANNOTATION]: '{}' } }), enabled, false],
  ];
  for (const [name, p, ns, want] of cases) assert.equal(injectionDecision(p, ns).inject, want, name);
});

test('the patch adds istio-init, istio-proxy (uid 1337, downward-API identity, istio-ca token) and rewrites HTTP and TCP probes', () => {
  const p = pod({
    containers: [
      {
        name: 'app',
        ports: [{ containerPort: 9080, name: 'http' }, { containerPort: 9090 }],
        livenessProbe: { httpGet: { path: '/live', port: 'http' }, timeoutSeconds: 3 },
        readinessProbe: { tcpSocket: { port: 9090 } },
      },
    ],
    annotations: { 'traffic.sidecar.istio.io/excludeOutboundPorts': '5432', 'sidecar.istio.io/unknownKnob': 'x' },
  });
  const r = injectionPatch(p, { image: 'ghcr.io/example/portico:0.1.0', controlPlaneUrl: 'http://cp:15010' });
  const get = (path: string): unknown => r.patch.find((o) => o.path === path)?.value;
  const containers = get('/spec/containers') as Container[];
  assert.deepEqual(containers.map((c) => c.name), [PROXY_CONTAINER, 'app']);
  const proxy = containers[0] as Container & { env: { name: string; value?: string; valueFrom?: { fieldRef: { fieldPath: string } } }[]; securityContext: { runAsUser: number } };
  assert.equal(proxy.securityContext.runAsUser, 1337);
  assert.deepEqual(
    proxy.env.filter((e) => e.valueFrom).map((e) => `${e.name}=${e.valueFrom!.fieldRef.fieldPath}`),
    ['POD_NAME=metadata.name', 'POD_NAMESPACE=metadata.namespace', 'INSTANCE_IP=status.podIP', 'SERVICE_ACCOUNT=spec.serviceAccountName'],
  );
  assert.deepEqual(JSON.parse(proxy.env.find((e) => e.name === APP_PROBERS_ENV)!.value!), {
    '/app-health/app/livez': { httpGet: { path: '/live', port: 9080, scheme: 'HTTP' }, timeoutSeconds: 3 },
    '/app-health/app/readyz': { tcpSocket: { port: 9090 } },
  });
  assert.deepEqual(containers[1]!.livenessProbe, { timeoutSeconds: 3, httpGet: { path: '/app-health/app/livez', port: 15020, scheme: 'HTTP' } });
  assert.deepEqual(containers[1]!.readinessProbe, { httpGet: { path: '/app-health/app/readyz', port: 15020, scheme: 'HTTP' } });
  const init = (get('/spec/initContainers') as Container[])[0] as Container & { args: string[] };
  assert.equal(init.name, INIT_CONTAINER);
  assert.deepEqual(init.args, ['iptables', '--inbound-ports', '9080=15100,9090=15101', '--exclude-outbound-ports', '5432']);
  const volumes = get('/spec/volumes') as { name: string; projected: { sources: { serviceAccountToken: { audience: string; path: string } }[] } }[];
  assert.deepEqual(volumes[0]!.projected.sources[0]!.serviceAccountToken, { audience: 'istio-ca', expirationSeconds: 43200, path: 'istio-token' });
  assert.ok((get('/metadata/annotations') as Record<string, string>)[STATUS_ANNOTATION]);
  assert.match(r.warnings.join('\n'), /sidecar\.istio\.io\/unknownKnob: accepted but not enforced/);

  const off = injectionPatch({ ...p, metadata: { ...p.metadata, annotations: { 'sidecar.istio.io/rewriteAppHTTPProbers': 'false' } } }, { image: 'i', controlPlaneUrl: 'http://cp' });
  assert.deepEqual(((off.patch.find((o) => o.path === '/spec/containers')!.value as Container[])[1]!.livenessProbe as { httpGet: unknown }).httpGet, { path: '/live', port: 'http' });
  assert.throws(() => injectionPatch(pod({ annotations: { 'traffic.sidecar.istio.io/excludeInboundPorts': 'abc' } }), { image: 'i', controlPlaneUrl: 'u' }), /Pod\/bookinfo\/reviews-1: metadata\.annotations\.traffic\.sidecar\.istio\.io\/excludeInboundPorts: 'abc' is not a port/);
  const excluded = injectionPatch(pod({ annotations: { 'traffic.sidecar.istio.io/excludeInboundPorts': '9080' } }), { image: 'i', controlPlaneUrl: 'u' });
  assert.equal(excluded.capture.inbound.size, 0);
});

test('iptables rules: Istio chains, uid 1337 excluded, one REDIRECT per inbound port, jumps not stacked on re-run', () => {
  const c = { inbound: parseInboundMap('9080=15100', 'x'), excludeOutboundPorts: [5432], includeOutboundPorts: [], includeOutboundIPRanges: ['*'], excludeOutboundIPRanges: ['10.0.0.0/8'] };
  const rules = renderRules(c);
  for (const want of [
    '-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001',
    '-A ISTIO_IN_REDIRECT -p tcp -m tcp --dport 9080 -j REDIRECT --to-ports 15100',
    '-A PREROUTING -p tcp -j ISTIO_INBOUND',
    '-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN',
    '-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN',
    '-A ISTIO_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN',
    '-A ISTIO_OUTPUT -d 10.0.0.0/8 -j RETURN',
    '-A ISTIO_OUTPUT -j ISTIO_REDIRECT',
  ]) assert.ok(rules.split('\n').includes(want), want);
  const again = renderRules(c, '-A PREROUTING -p tcp -j ISTIO_INBOUND\n-A OUTPUT -p tcp -j ISTIO_OUTPUT\n');
  assert.ok(!again.includes('-A PREROUTING'));
  assert.ok(!again.includes('-A OUTPUT -p tcp -j ISTIO_OUTPUT'));
  assert.throws(() => parseInboundMap('9080:15100', '--inbound-ports'), /--inbound-ports: '9080:15100' is not APP_PORT=LISTENER_PORT/);
});

test('an injected sidecar takes its workload from the env the injector set (downward API, labels, captured ports)', async () => {
  const { podFromEnv } = await import('../../bin/commands/sidecar.ts');
  const r = injectionPatch(pod(), { image: 'i', controlPlaneUrl: 'http://cp:15010' });
  const proxy = (r.patch.find((o) => o.path === '/spec/containers')!.value as (Container & { env: { name: string; value?: string }[] })[])[0]!;
  const env: NodeJS.ProcessEnv = { POD_NAME: 'reviews-1', POD_NAMESPACE: 'bookinfo', INSTANCE_IP: '10.244.0.10', SERVICE_ACCOUNT: 'reviews' };
  for (const e of proxy.env) if (e.value !== undefined) env[e.name] = e.value;
  const p = podFromEnv(env);
  assert.deepEqual(p.workload, { key: 'bookinfo/reviews-1', name: 'reviews-1', namespace: 'bookinfo', address: '10.244.0.10', labels: { app: 'reviews' }, ports: { 'port-9080': 9080 }, serviceAccount: 'reviews', weight: 1 });
  assert.deepEqual([...p.listen], [[9080, 15100]]);
  assert.throws(() => podFromEnv({ ...env, POD_NAME: '' }), /--kubernetes-pod: env POD_NAME is not set/);
});
