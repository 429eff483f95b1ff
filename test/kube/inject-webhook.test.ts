/**
 * The injection webhook against a real kube-apiserver: the API server calls it over TLS (serving
 * certificate from Portico's CA, caBundle in MutatingWebhookConfiguration portico-sidecar-injector)
 * and stores the patched Pod. A labelled namespace's pod gets istio-proxy + istio-init; an
 * opted-out pod and a pod of an unlabelled namespace are stored unchanged; with the webhook down,
 * unlabelled namespaces still create pods (the selectors keep them away), labelled ones refuse.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRootCa } from '../../certs/index.ts';
import { KubeApi } from '../../kube/api.ts';
import { ensureWebhookConfiguration, startWebhookServer, WEBHOOK_CONFIGURATION } from '../../kube/webhook.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startControlPlane } from '../../controlplane/server.ts';
import { startKube } from '../helpers/kube.ts';
import { freePort } from '../helpers/net.ts';

const NAMESPACES = `apiVersion: v1
kind: Namespace
metadata: {name: injected, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: plain}
`;

interface StoredPod {
  metadata: { annotations?: Record<string, string> };
  spec: { containers: { name: string; securityContext?: { runAsUser?: number } }[]; initContainers?: { name: string }[] };
}

test('the API server injects through Portico\'s webhook; opted-out and unlabelled pods are unchanged; an outage only blocks labelled namespaces', { timeout: 180_000 }, async (t) => {
  const kube = await startKube(t, { crds: false });
  if (!kube) return;
  const api = new KubeApi(kube.kubeConfig());
  const ca = createRootCa({ commonName: 'Portico mesh CA (test)', organization: 'Portico' });
  const hook = await startWebhookServer({ ca, inject: { image: 'ghcr.io/example/portico:0.1.0', controlPlaneUrl: 'http://portico-controlplane.portico-system.svc:15010' }, port: 0, host: '127.0.0.1', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  t.after(() => hook.close());
  const client = { url: `https://127.0.0.1:${hook.port}/inject` };
  assert.equal(await ensureWebhookConfiguration(api, ca.certPem, client), 'created');
  assert.equal(await ensureWebhookConfiguration(api, ca.certPem, client), 'unchanged');
  // Someone edits the caBundle: it is restored.
  await kube.kubectl(['patch', 'mutatingwebhookconfiguration', WEBHOOK_CONFIGURATION, '--type=json', '-p', JSON.stringify([{ op: 'replace', path: '/webhooks/0/clientConfig/caBundle', value: Buffer.from('bogus').toString('base64') }])]);
  assert.equal(await ensureWebhookConfiguration(api, ca.certPem, client), 'updated');

  await kube.apply(NAMESPACES);
  const pod = (ns: string, name: string, annotations = ''): string => `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: ${ns}
  labels: {app: ${name}}
${annotations ? `  annotations: {${annotations}}\n` : ''}spec:
  serviceAccountName: default
  containers:
  - name: app
    image: reviews:1
    ports: [{containerPort: 9080, name: http}]
    readinessProbe: {httpGet: {path: /ready, port: http}}
`;
  const create = async (yaml: string, ns: string, name: string): Promise<StoredPod> => {
    await kube.kubectl(['create', '-f', '-'], yaml);
    return (await kube.api<StoredPod>('GET', `/api/v1/namespaces/${ns}/pods/${name}`)).body;
  };

  const injected = await create(pod('injected', 'reviews'), 'injected', 'reviews');
  assert.deepEqual(injected.spec.containers.map((c) => c.name), ['istio-proxy', 'app']);
  assert.deepEqual(injected.spec.initContainers?.map((c) => c.name), ['istio-init']);
  assert.equal(injected.spec.containers[0]!.securityContext?.runAsUser, 1337);
  assert.ok(injected.metadata.annotations?.['sidecar.istio.io/status']);

  const optedOut = await create(pod('injected', 'opted-out', '"sidecar.istio.io/inject": "false"'), 'injected', 'opted-out');
  assert.deepEqual(optedOut.spec.containers.map((c) => c.name), ['app']);
  assert.equal(optedOut.spec.initContainers, undefined);
  const plain = await create(pod('plain', 'ratings'), 'plain', 'ratings');
  assert.deepEqual(plain.spec.containers.map((c) => c.name), ['app']);

  // Webhook down: unlabelled namespaces are never sent to it; a labelled one fails closed (Istio's failurePolicy: Fail).
  await hook.close();
  const stillCreated = await create(pod('plain', 'details'), 'plain', 'details');
  assert.deepEqual(stillCreated.spec.containers.map((c) => c.name), ['app']);
  await assert.rejects(kube.kubectl(['create', '-f', '-'], pod('injected', 'productpage')), /failed calling webhook/);
});

test('portico controlplane --kubernetes with injection writes the configuration and injects; stopped, unlabelled namespaces still create pods', { timeout: 180_000 }, async (t) => {
  const kube = await startKube(t, { crds: false });
  if (!kube) return;
  const api = new KubeApi(kube.kubeConfig());
  const secretsDir = mkdtempSync(join(tmpdir(), 'portico-inject-cp-'));
  t.after(() => rmSync(secretsDir, { recursive: true, force: true }));
  const webhookPort = await freePort();
  const cp = await startControlPlane({
    kubernetes: {
      api,
      meshConfig: { namespace: 'portico-system', name: 'istio' },
      secretsDir,
      injection: { inject: { image: 'ghcr.io/example/portico:0.1.0', controlPlaneUrl: 'http://cp:15010' }, client: { url: `https://127.0.0.1:${webhookPort}/inject` }, dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], port: webhookPort, host: '127.0.0.1', reconcileMs: 200 },
    },
    ca: createRootCa({ commonName: 'Portico mesh CA (test)', organization: 'Portico' }),
    port: 0,
    host: '127.0.0.1',
  });
  let stopped = false;
  t.after(() => (stopped ? undefined : cp.close()));
  // The leader (no election: this replica) creates the configuration.
  for (let i = 0; (await kube.api('GET', `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${WEBHOOK_CONFIGURATION}`)).status !== 200; i++) {
    assert.ok(i < 100, 'MutatingWebhookConfiguration not created');
    await new Promise((r) => setTimeout(r, 100));
  }
  await kube.apply(NAMESPACES);
  const pod = (ns: string, name: string): string => `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"${name}","namespace":"${ns}"},"spec":{"serviceAccountName":"default","containers":[{"name":"app","image":"app:1","ports":[{"containerPort":8080}]}]}}`;
  await kube.kubectl(['create', '-f', '-'], pod('injected', 'web'));
  const stored = (await kube.api<StoredPod>('GET', '/api/v1/namespaces/injected/pods/web')).body;
  assert.deepEqual(stored.spec.containers.map((c) => c.name), ['istio-proxy', 'app']);
  await cp.close();
  stopped = true;
  await kube.kubectl(['create', '-f', '-'], pod('plain', 'web'));
  assert.deepEqual((await kube.api<StoredPod>('GET', '/api/v1/namespaces/plain/pods/web')).body.spec.containers.map((c) => c.name), ['app']);
});
