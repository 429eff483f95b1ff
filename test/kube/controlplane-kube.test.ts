/**
 * `portico controlplane --kubernetes` against a real kube-apiserver (test/helpers/kube.ts), with
 * an in-process gateway fed only by the control plane (what `portico gateway --controlplane`
 * does). Runs inside its own network namespace: EndpointSlices may not hold loopback addresses,
 * so the upstream "pods" listen on 10.244.0.1x on that namespace's `lo`.
 *
 *   kubectl apply of a VirtualService changes routing; EndpointSlice scale-up/down and a
 *   terminating endpoint lose no request; subsets follow pod labels; a credentialName Secret is
 *   served and its rotation picked up; an invalid object is left out and reported while the
 *   rest keeps updating.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { ModuleCache } from '../../wasm/fetch.ts';
import { WasmManager } from '../../wasm/plugins.ts';
import { ociTools, pluginPath, startRegistry } from '../helpers/wasm.ts';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { Agent, request } from 'undici';
import { generateKeyPairSync } from 'node:crypto';
import { createCsr, createRootCa, issueServerCert } from '../../certs/index.ts';
import { connectProxyToControlPlane, waitForSnapshot } from '../../controlplane/client.ts';
import { CredentialFiles } from '../../controlplane/credential-files.ts';
import { startControlPlane, type ControlPlane } from '../../controlplane/server.ts';
import { GatewayRuntime } from '../../gateway/runtime.ts';
import { KubeApi } from '../../kube/api.ts';
import { ownImage } from '../../kube/inject.ts';
import { loadOrCreateSharedCa } from '../../kube/lease.ts';
import { inNetns, runInNetns, startKube, type KubeCluster } from '../helpers/kube.ts';
import { freePort } from '../helpers/net.ts';

const POD_IPS = ['10.244.0.10', '10.244.0.11', '10.244.0.12'];

if (!inNetns()) {
  test('Kubernetes control plane tests (in a network namespace of their own)', async (t) => {
    await runInNetns(t, import.meta.url, POD_IPS.map((ip) => `${ip}/32`));
  });
} else {
  test('portico controlplane --kubernetes against a real API server', async (t) => {
    const kube = await startKube(t);
    if (!kube) return;
    const env = await setUp(t, kube);
    await t.test('kubectl apply of a VirtualService changes gateway routing', () => vsApply(env));
    await t.test('EndpointSlice scale-up, scale-down and a terminating endpoint lose no request', () => endpoints(env));
    await t.test('DestinationRule subsets follow pod labels', () => subsets(env));
    await t.test('a credentialName Secret is served and its rotation picked up without a restart', () => credentials(env));
    await t.test('a WasmPlugin imagePullSecret (dockerconfigjson Secret) pulls from a registry with auth; the credentials are in no snapshot', () => wasmPullSecret(env));
    await t.test('an invalid object is left out and reported; the rest keeps updating', () => invalidObject(env));
    await t.test('portico validate --kubernetes prints Kind/ns/name: field: message and exits 1 on an error', () => validateCli(env));
    await t.test('the deploy kits apply with kubectl apply --dry-run=server; the control plane RBAC is least privilege', () => deployKit(env));
    await t.test('two replicas: one Lease holder, both serve proxies, the leader hands over; one shared mesh CA Secret', () => ha(env));
    await t.test('portico controlplane --kubernetes (the CLI): shared CA Secret, Lease, ready; SIGTERM exits in under 5 s', () => controlplaneCli(env));
    await t.test('certificates for projected service-account tokens (TokenReview, audience istio-ca); forged, other-audience and deleted-pod tokens refused', () => identity(env));
    await t.test('portico gateway --controlplane (no --config) serves the Gateways selecting its labels, with routes and certificates pushed', () => gatewayCli(env));
  });
}

interface Env {
  kube: KubeCluster;
  cp: ControlPlane;
  gwPort: number;
  tlsPort: number;
  applied: number[];
  t: TestContext;
  /** The control plane's credential directory (a gateway sharing it, as the native kit does, reads pull secrets there). */
  secretsDir: string;
}

const NS = 'shop';
const TOKEN = 'kube-test-bootstrap-token-0123456789';

/** An HTTP server on a pod address that says who it is. */
async function pod(t: TestContext, ip: string, port: number, name: string): Promise<Server> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'x-pod': name });
      res.end(name);
    });
  });
  await new Promise<void>((resolve) => server.listen(port, ip, resolve));
  t.after(() => new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  }));
  return server;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function get(port: number, path: string, host = 'shop.example.com'): Promise<{ status: number; pod?: string; marker?: string }> {
  const res = await request(`http://127.0.0.1:${port}${path}`, { headers: { host } });
  await res.body.dump();
  return { status: res.statusCode, pod: res.headers['x-pod'] as string | undefined, marker: res.headers['x-config'] as string | undefined };
}

function slice(name: string, endpoints: { ip: string; pod: string; ready?: boolean; terminating?: boolean }[]): string {
  return JSON.stringify({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: NS, labels: { 'kubernetes.io/service-name': 'web' } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready ?? true, serving: true, terminating: e.terminating ?? false },
      targetRef: { kind: 'Pod', name: e.pod, namespace: NS },
    })),
  });
}

function virtualService(marker: string, extraRoutes = ''): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: ${NS}}
spec:
  hosts: [shop.example.com, secure.example.com]
  gateways: [edge]
  http:
${extraRoutes}  - headers: {response: {set: {x-config: "${marker}"}}}
    route: [{destination: {host: web, port: {number: 80}}}]
`;
}

async function setUp(t: TestContext, kube: KubeCluster): Promise<Env> {
  const [gwPort, tlsPort] = [await freePort(), await freePort()];
  await pod(t, POD_IPS[0], 8080, 'web-1');
  await pod(t, POD_IPS[1], 8080, 'web-2');
  await pod(t, POD_IPS[2], 8080, 'web-3');
  await kube.apply(`apiVersion: v1
kind: Namespace
metadata: {name: ${NS}}
---
apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: ${NS}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ${NS}}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
`);
  for (const [i, name] of ['web-1', 'web-2', 'web-3'].entries()) {
    await kube.apply(JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: NS, labels: { app: 'web', version: i === 1 ? 'v2' : 'v1' } },
      spec: { serviceAccountName: 'web', containers: [{ name: 'web', image: 'example.invalid/web:1' }] },
    }));
    // No kubelet: the pod's IP is set through the status subresource, as a kubelet would.
    const r = await kube.api('PATCH', `/api/v1/namespaces/${NS}/pods/${name}/status`, { status: { phase: 'Running', podIP: POD_IPS[i], podIPs: [{ ip: POD_IPS[i] }] } }, 'application/merge-patch+json');
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }
  await kube.apply(slice('web-1', [{ ip: POD_IPS[0], pod: 'web-1' }]));
  await kube.apply(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: ${NS}}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ${gwPort}, name: http, protocol: HTTP}
    hosts: ["*"]
---
${virtualService('v1')}`);

  const secretsDir = mkdtempSync(join(tmpdir(), 'portico-kube-secrets-'));
  t.after(() => rmSync(secretsDir, { recursive: true, force: true }));
  const api = new KubeApi(kube.kubeConfig());
  t.after(() => api.close());
  const cp = await startControlPlane({
    kubernetes: { api, meshConfig: { namespace: 'istio-system', name: 'istio' }, secretsDir },
    port: 0,
    host: '127.0.0.1',
    ca: createRootCa({ commonName: 'Kube test mesh CA' }),
    heartbeatMs: 500,
    debounceMs: 50,
    token: TOKEN,
  });
  t.after(() => cp.close());
  const first = await waitForSnapshot({ url: cp.url, token: TOKEN, timeoutMs: 20_000 });
  const runtime = new GatewayRuntime(first.snapshot);
  await runtime.start();
  t.after(() => runtime.close(100));
  const applied: number[] = [];
  const link = connectProxyToControlPlane(runtime, { url: cp.url, token: TOKEN, node: 'kube-gateway', initial: first, minBackoffMs: 50, maxBackoffMs: 200, onApplied: (_s, rev) => void applied.push(rev) });
  t.after(() => link.close());
  await waitFor('the gateway connected', async () => (link.connected() ? true : undefined));
  const r = await get(gwPort, '/');
  assert.deepEqual(r, { status: 200, pod: 'web-1', marker: 'v1' });
  return { kube, cp, gwPort, tlsPort, applied, t, secretsDir };
}

async function vsApply(env: Env): Promise<void> {
  const start = Date.now();
  await env.kube.apply(virtualService('v2'));
  const applied = Date.now();
  await waitFor('the new VirtualService served', async () => ((await get(env.gwPort, '/')).marker === 'v2' ? true : undefined));
  const end = Date.now();
  env.t.diagnostic(`kubectl apply (${applied - start} ms) → gateway routes by the new VirtualService: ${end - applied} ms after kubectl returned`);
}

/** Requests in a loop until stopped; every answer must be a 200. */
function load(port: number): { stop(): Promise<{ total: number; failed: string[]; pods: Map<string, number> }>; pods: Map<string, number> } {
  let running = true;
  const failed: string[] = [];
  const pods = new Map<string, number>();
  let total = 0;
  const loop = (async () => {
    while (running) {
      try {
        const r = await get(port, '/');
        total++;
        if (r.status !== 200) failed.push(`status ${r.status}`);
        else pods.set(r.pod ?? '?', (pods.get(r.pod ?? '?') ?? 0) + 1);
      } catch (err) {
        failed.push((err as Error).message);
      }
    }
  })();
  return {
    pods,
    stop: async () => {
      running = false;
      await loop;
      return { total, failed, pods };
    },
  };
}

async function endpoints(env: Env): Promise<void> {
  const l = load(env.gwPort);
  // Scale up: web-2 and web-3 join the slice.
  await env.kube.apply(slice('web-1', [{ ip: POD_IPS[0], pod: 'web-1' }, { ip: POD_IPS[1], pod: 'web-2' }, { ip: POD_IPS[2], pod: 'web-3' }]));
  const scaledAt = Date.now();
  await waitFor('web-2 and web-3 receive traffic', async () => (l.pods.has('web-2') && l.pods.has('web-3') ? true : undefined));
  env.t.diagnostic(`EndpointSlice scale-up → new pods receive traffic: ${Date.now() - scaledAt} ms`);
  // web-1 terminates (ready=false, terminating=true): it must get no new requests.
  await env.kube.apply(slice('web-1', [{ ip: POD_IPS[0], pod: 'web-1', ready: false, terminating: true }, { ip: POD_IPS[1], pod: 'web-2' }, { ip: POD_IPS[2], pod: 'web-3' }]));
  const cp = env.cp;
  await waitFor('web-1 out of the snapshot', async () => {
    const cl = JSON.stringify(cp.feed.latest?.snapshot.clusters ?? []);
    return !cl.includes(POD_IPS[0]) ? true : undefined;
  });
  await waitFor('the gateway applied it', async () => {
    const before = new Map(l.pods);
    await new Promise((r) => setTimeout(r, 300));
    return (l.pods.get('web-1') ?? 0) === (before.get('web-1') ?? 0) ? true : undefined;
  });
  const seenWeb1 = l.pods.get('web-1') ?? 0;
  // Scale down to web-3 only.
  await env.kube.apply(slice('web-1', [{ ip: POD_IPS[2], pod: 'web-3' }]));
  await waitFor('only web-3 serves', async () => {
    const before = new Map(l.pods);
    await new Promise((r) => setTimeout(r, 300));
    return (l.pods.get('web-2') ?? 0) === (before.get('web-2') ?? 0) && (l.pods.get('web-3') ?? 0) > (before.get('web-3') ?? 0) ? true : undefined;
  });
  const result = await l.stop();
  assert.deepEqual(result.failed, [], `every request during the endpoint changes succeeded (${result.total} requests)`);
  assert.equal(l.pods.get('web-1') ?? 0, seenWeb1, 'the terminating endpoint got no new requests');
  env.t.diagnostic(`${result.total} requests across scale-up, terminate and scale-down: ${result.failed.length} failed; per pod ${JSON.stringify([...result.pods])}`);
}

async function subsets(env: Env): Promise<void> {
  await env.kube.apply(slice('web-1', POD_IPS.map((ip, i) => ({ ip, pod: `web-${i + 1}` }))));
  await env.kube.apply(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: ${NS}}
spec:
  host: web
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
${virtualService('subsets', `  - match: [{uri: {prefix: /v2}}]
    route: [{destination: {host: web, subset: v2, port: {number: 80}}}]
`)}`);
  // Only web-2 has version=v2.
  await waitFor('subset v2 is web-2', async () => {
    for (let i = 0; i < 6; i++) if ((await get(env.gwPort, '/v2')).pod !== 'web-2') return undefined;
    return true;
  });
  // Relabel web-3 to v2: the subset follows the pod's labels.
  await env.kube.api('PATCH', `/api/v1/namespaces/${NS}/pods/web-3`, { metadata: { labels: { version: 'v2' } } }, 'application/merge-patch+json');
  await waitFor('web-3 joins subset v2', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) seen.add((await get(env.gwPort, '/v2')).pod ?? '?');
    return seen.has('web-3') && !seen.has('web-1') ? true : undefined;
  });
}

async function servedCert(port: number, servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => {
      const fp = s.getPeerX509Certificate()?.fingerprint256 ?? '';
      s.end();
      resolve(fp);
    });
    s.once('error', reject);
  });
}

async function credentials(env: Env): Promise<void> {
  const ca = createRootCa({ commonName: 'Shop CA' });
  const one = issueServerCert(ca, { commonName: 'secure.example.com' });
  const two = issueServerCert(ca, { commonName: 'secure.example.com' });
  const secret = (pair: { certPem: string; keyPem: string }): string =>
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/tls',
      metadata: { name: 'secure-credential', namespace: NS },
      data: { 'tls.crt': Buffer.from(pair.certPem).toString('base64'), 'tls.key': Buffer.from(pair.keyPem).toString('base64') },
    });
  await env.kube.apply(secret(one));
  await env.kube.apply(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: ${NS}}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ${env.gwPort}, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: ${env.tlsPort}, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: secure-credential}
`);
  const fp1 = new X509Certificate(one.certPem).fingerprint256;
  const fp2 = new X509Certificate(two.certPem).fingerprint256;
  await waitFor('the Secret is served', async () => ((await servedCert(env.tlsPort, 'secure.example.com')) === fp1 ? true : undefined));
  const dispatcher = new Agent({ connect: { ca: ca.certPem, servername: 'secure.example.com' } });
  env.t.after(() => dispatcher.close());
  const res = await request(`https://127.0.0.1:${env.tlsPort}/`, { headers: { host: 'secure.example.com' }, dispatcher });
  await res.body.dump();
  assert.equal(res.statusCode, 200);
  await env.kube.apply(secret(two));
  const rotatedAt = Date.now();
  await waitFor('the rotated Secret is served', async () => ((await servedCert(env.tlsPort, 'secure.example.com')) === fp2 ? true : undefined));
  env.t.diagnostic(`Secret rotation → new certificate on the listener: ${Date.now() - rotatedAt} ms`);
}

async function wasmPullSecret(env: Env): Promise<void> {
  const { t } = env;
  const tools = ociTools(t);
  const plugin = pluginPath(t, 'as-header');
  if (!tools || !plugin) return;
  const dir = mkdtempSync(join(tmpdir(), 'portico-kube-oci-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const reg = await startRegistry(t, tools.registry, dir);
  copyFileSync(plugin, join(dir, 'plugin.wasm'));
  execFileSync(tools.oras, ['push', `${reg.address}/plugins/hdr:v1`, '--artifact-type', 'application/vnd.module.wasm.config.v1+json', 'plugin.wasm:application/vnd.module.wasm.content.layer.v1+wasm', '--plain-http', '-u', reg.user, '-p', reg.password], { cwd: dir, stdio: 'ignore' });
  const auth = Buffer.from(`${reg.user}:${reg.password}`).toString('base64');
  const docker = JSON.stringify({ auths: { [reg.address]: { auth } } });
  await env.kube.apply(`apiVersion: v1
kind: Secret
metadata: {name: regcred, namespace: ${NS}}
type: kubernetes.io/dockerconfigjson
data: {.dockerconfigjson: ${Buffer.from(docker).toString('base64')}}
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: hdr, namespace: ${NS}}
spec:
  selector: {matchLabels: {app: nothing-here}}
  url: oci://${reg.address}/plugins/hdr:v1
  imagePullPolicy: Always
  imagePullSecret: regcred
  pluginName: add_header
`);
  // The Secret named by the WasmPlugin, in the plugin's namespace, lands in the credential directory.
  const file = join(env.secretsDir, 'regcred', '.dockerconfigjson');
  await waitFor('the pull secret is written', async () => (existsSync(file) ? true : undefined));
  assert.equal(readFileSync(file, 'utf8'), docker);
  const snap = await waitFor('the WasmPlugin in a snapshot', async () => {
    const s = await waitForSnapshot({ url: env.cp.url, token: TOKEN, timeoutMs: 5_000 });
    return s.snapshot.wasmPlugins?.some((p) => p.id === `WasmPlugin/${NS}/hdr`) ? s.snapshot : undefined;
  });
  const cfg = snap.wasmPlugins!.find((p) => p.id === `WasmPlugin/${NS}/hdr`)!;
  // A gateway sharing the credential directory pulls the module with those credentials.
  const mgr = new WasmManager({ secretsDir: env.secretsDir, cache: new ModuleCache(join(dir, 'cache')) });
  const bytes = await mgr.fetchModule(cfg);
  assert.equal(createHash('sha256').update(bytes).digest('hex'), createHash('sha256').update(readFileSync(plugin)).digest('hex'));
  // A gateway fed by the control plane alone (no credential directory of its own) gets the pull
  // secret with /v1/credentials, as a local file its snapshot names, and pulls with it.
  const own = mkdtempSync(join(tmpdir(), 'portico-kube-creds-'));
  t.after(() => rmSync(own, { recursive: true, force: true }));
  const localized = await new CredentialFiles({ url: env.cp.url, token: TOKEN }, own).localize(snap);
  const fed = localized.wasmPlugins!.find((p) => p.id === `WasmPlugin/${NS}/hdr`)!;
  assert.ok(fed.imagePullSecretFile?.startsWith(own), `the pull secret is a local copy: ${fed.imagePullSecretFile}`);
  assert.equal(readFileSync(fed.imagePullSecretFile!, 'utf8'), docker);
  const fedMgr = new WasmManager({ secretsDir: join(own, 'no-such-dir'), cache: new ModuleCache(join(dir, 'cache-fed')) });
  assert.equal(createHash('sha256').update(await fedMgr.fetchModule(fed)).digest('hex'), createHash('sha256').update(readFileSync(plugin)).digest('hex'));
  // Without the copy that gateway has no credentials, and the registry refuses it.
  await assert.rejects(fedMgr.fetchModule(cfg), /imagePullSecret regcred: cannot read/);
  // Snapshots name the Secret, never its content.
  const text = JSON.stringify(snap);
  assert.ok(text.includes('regcred'));
  for (const secret of [auth, reg.password, Buffer.from(docker).toString('base64')]) assert.ok(!text.includes(secret), 'the registry credentials are not in the snapshot');
  await env.kube.kubectl(['delete', '-n', NS, 'wasmplugin/hdr', 'secret/regcred']);
  // Its directory goes with the last reference.
  await waitFor('the pull secret is removed', async () => (existsSync(file) ? undefined : true));
}

async function invalidObject(env: Env): Promise<void> {
  await env.kube.apply(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: ${NS}}
spec:
  hosts: [broken.example.com]
  gateways: [edge]
  http:
  - route: [{destination: {host: web}, weight: -5}]
`);
  const status = await waitFor('the broken VirtualService reported', async () => {
    const r = await request(`${env.cp.url}/v1/status`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const body = (await r.body.json()) as { kubernetes?: { rejected?: Record<string, string[]> } };
    return body.kubernetes?.rejected?.[`VirtualService/${NS}/broken`];
  });
  assert.ok(status.some((l) => l.startsWith(`VirtualService/${NS}/broken: spec.http[0].route[0].weight:`)), status.join('\n'));
  // Reported where Kubernetes users look: status.validationMessages in Istio's shape, and an Event.
  type Vs = { status?: { validationMessages?: { type: { code: string; name: string }; level: string; description: string }[] } };
  const messages = await waitFor('status.validationMessages', async () => {
    const r = await env.kube.api<Vs>('GET', `/apis/networking.istio.io/v1/namespaces/${NS}/virtualservices/broken`);
    return r.body.status?.validationMessages?.length ? r.body.status.validationMessages : undefined;
  });
  assert.equal(messages[0].level, 'Error');
  assert.deepEqual(messages[0].type, { code: 'IST0106', name: 'SchemaValidationError' });
  assert.match(messages[0].description, /^spec\.http\[0\]\.route\[0\]\.weight: /);
  const event = await waitFor('a Warning Event on the object', async () => {
    const r = await env.kube.api<{ items: { type: string; reason: string; message: string; involvedObject: { kind: string; name: string } }[] }>('GET', `/api/v1/namespaces/${NS}/events`);
    return r.body.items.find((e) => e.involvedObject.kind === 'VirtualService' && e.involvedObject.name === 'broken');
  });
  assert.equal(event.type, 'Warning');
  assert.match(event.message, /weight/);
  // Not frozen: a valid change still goes through, and the broken object is not served.
  await env.kube.apply(virtualService('after-broken'));
  await waitFor('a later valid change served', async () => ((await get(env.gwPort, '/')).marker === 'after-broken' ? true : undefined));
  assert.equal((await get(env.gwPort, '/', 'broken.example.com')).status, 404);
  // Fixing it brings it in.
  await env.kube.apply(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: ${NS}}
spec:
  hosts: [broken.example.com]
  gateways: [edge]
  http:
  - route: [{destination: {host: web}}]
`);
  await waitFor('the fixed object served', async () => ((await get(env.gwPort, '/', 'broken.example.com')).status === 200 ? true : undefined));
  await waitFor('validationMessages cleared', async () => {
    const r = await env.kube.api<Vs>('GET', `/apis/networking.istio.io/v1/namespaces/${NS}/virtualservices/broken`);
    return r.body.status?.validationMessages?.length ? undefined : true;
  });
}

const ROOT = new URL('../..', import.meta.url).pathname;

async function gatewayCli(env: Env): Promise<void> {
  const [httpPort, httpsPort] = [await freePort(), await freePort()];
  const ca = createRootCa({ commonName: 'CLI CA' });
  const pair = (): { certPem: string; keyPem: string } => issueServerCert(ca, { commonName: 'cli.example.com' });
  const one = pair();
  const two = pair();
  const secret = (p: { certPem: string; keyPem: string }): string =>
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'Opaque',
      metadata: { name: 'cli-credential', namespace: NS },
      // Istio's generic-secret key names.
      data: { cert: Buffer.from(p.certPem).toString('base64'), key: Buffer.from(p.keyPem).toString('base64') },
    });
  await env.kube.apply(secret(one));
  await env.kube.apply(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: cli, namespace: ${NS}}
spec:
  selector: {istio: cli-gateway}
  servers:
  - port: {number: ${httpPort}, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: ${httpsPort}, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: cli-credential}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cli, namespace: ${NS}}
spec:
  hosts: [cli.example.com]
  gateways: [cli]
  http:
  - headers: {response: {set: {x-config: cli}}}
    route: [{destination: {host: web, port: {number: 80}}}]
`);
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'bin/portico.ts', 'gateway', '--controlplane', env.cp.url, '--labels', 'istio=cli-gateway', '--namespace', NS, '--workers', '1', '--admin-port=-1', '--metrics-port=-1'],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PORTICO_BOOTSTRAP_TOKEN: TOKEN } },
  );
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c));
  child.stderr!.on('data', (c: Buffer) => (out += c));
  const exited = new Promise((r) => child.once('exit', r));
  env.t.after(async () => {
    child.kill('SIGTERM');
    await exited;
  });
  try {
    const r = await waitFor('the CLI gateway serves the route', async () => {
      const g = await get(httpPort, '/', 'cli.example.com');
      return g.status === 200 ? g : undefined;
    }, 60_000);
    assert.equal(r.marker, 'cli');
    // The other gateway's Gateway (istio=ingressgateway) is not served here.
    assert.equal((await get(httpPort, '/', 'shop.example.com')).status, 404);
    const fp1 = new X509Certificate(one.certPem).fingerprint256;
    const fp2 = new X509Certificate(two.certPem).fingerprint256;
    await waitFor('the pushed certificate is served', async () => ((await servedCert(httpsPort, 'cli.example.com')) === fp1 ? true : undefined));
    await env.kube.apply(secret(two));
    await waitFor('the rotated certificate is served without a restart', async () => ((await servedCert(httpsPort, 'cli.example.com')) === fp2 ? true : undefined));
    assert.equal(child.exitCode, null, 'the gateway process kept running');
  } catch (err) {
    throw new Error(`${(err as Error).message}\ngateway output:\n${out.slice(-4000)}`);
  }
}

async function identity(env: Env): Promise<void> {
  const keyPem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const csr = createCsr(keyPem, 'web');
  const csrWith = async (token: string, workload?: string): Promise<{ status: number; body: { spiffeId?: string; error?: { message: string } } }> => {
    const r = await request(`${env.cp.url}/v1/certificates`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(workload === undefined ? { csr } : { csr, workload }),
    });
    return { status: r.statusCode, body: (await r.body.json()) as { spiffeId?: string; error?: { message: string } } };
  };
  const token = async (args: string[]): Promise<string> => (await env.kube.kubectl(['create', 'token', '-n', NS, ...args])).trim();
  // What the injected sidecar has at /var/run/secrets/tokens/istio-token: bound to its pod.
  const bound = await token(['web', '--audience', 'istio-ca', '--bound-object-kind', 'Pod', '--bound-object-name', 'web-1']);
  const ok = await csrWith(bound);
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(ok.body.spiffeId, `spiffe://cluster.local/ns/${NS}/sa/web`);
  assert.equal((await csrWith(bound, `${NS}/web-1`)).status, 200, 'the pod it is bound to may be named');
  assert.equal((await csrWith(bound, `${NS}/web-2`)).status, 401, 'another workload may not be named');
  // Another audience (the API server's own): refused.
  const apiAudience = await token(['web']);
  const other = await csrWith(apiAudience);
  assert.equal(other.status, 401, JSON.stringify(other.body));
  // Forged: a JWT-shaped string nobody signed; and the bootstrap-less anonymous caller.
  const forged = `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: `system:serviceaccount:${NS}:web`, aud: ['istio-ca'] })).toString('base64url')}.c2lnbmF0dXJl`;
  assert.equal((await csrWith(forged)).status, 401);
  // A token bound to a pod that is gone: refused.
  await env.kube.apply(JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'gone', namespace: NS }, spec: { serviceAccountName: 'web', containers: [{ name: 'c', image: 'example.invalid/c:1' }] } }));
  const gone = await token(['web', '--audience', 'istio-ca', '--bound-object-kind', 'Pod', '--bound-object-name', 'gone']);
  await env.kube.kubectl(['delete', 'pod', '-n', NS, 'gone', '--grace-period=0', '--force', '--wait=false']);
  await waitFor('the pod is gone', async () => ((await env.kube.api('GET', `/api/v1/namespaces/${NS}/pods/gone`)).status === 404 ? true : undefined));
  const refused = await csrWith(gone);
  assert.equal(refused.status, 401, JSON.stringify(refused.body));
}

async function validateCli(env: Env): Promise<void> {
  await env.kube.apply(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: bad-dr, namespace: ${NS}}
spec:
  host: web
  trafficPolicy: {loadBalancer: {simple: SOMETIMES}}
`);
  const run = (): Promise<{ code: number | null; out: string }> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'bin/portico.ts', 'validate', '--kubernetes', '--kubeconfig', env.kube.kubeconfig, '--mesh-config', 'istio-system/istio'], { cwd: ROOT });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c));
      child.stderr.on('data', (c: Buffer) => (out += c));
      child.once('exit', (code) => resolve({ code, out }));
    });
  const bad = await run();
  assert.equal(bad.code, 1, bad.out);
  assert.match(bad.out, new RegExp(`^DestinationRule/${NS}/bad-dr: spec\\.trafficPolicy\\.loadBalancer\\.simple: `, 'm'));
  await env.kube.kubectl(['delete', 'destinationrule', '-n', NS, 'bad-dr']);
  const good = await run();
  assert.equal(good.code, 0, good.out);
  assert.match(good.out, /^ok: \d+ objects from https:/m);
}

async function deployKit(env: Env): Promise<void> {
  await env.kube.apply('apiVersion: v1\nkind: Namespace\nmetadata: {name: portico-system}\n');
  for (const kit of ['deploy/kubernetes', 'deploy/kubernetes-native']) {
    const out = await env.kube.kubectl(['apply', '--dry-run=server', '-k', join(ROOT, kit)]);
    assert.match(out, /deployment\.apps\/portico-controlplane (created|configured) \(server dry run\)/, out);
  }
  // The RBAC for real, then what the control plane's service account may and may not do.
  await env.kube.kubectl(['apply', '-n', 'portico-system', '-f', join(ROOT, 'deploy/kubernetes-native/rbac.yaml')]);
  // `can-i --quiet` answers with its exit code only.
  const can = (...args: string[]): Promise<string> =>
    env.kube.kubectl(['auth', 'can-i', '--quiet', '--as=system:serviceaccount:portico-system:portico-controlplane', ...args]).then(
      () => 'yes',
      () => 'no',
    );
  assert.equal(await can('watch', 'virtualservices.networking.istio.io', '-A'), 'yes');
  assert.equal(await can('list', 'endpointslices.discovery.k8s.io', '-A'), 'yes');
  assert.equal(await can('create', 'tokenreviews.authentication.k8s.io'), 'yes');
  assert.equal(await can('watch', 'secrets', '-n', 'portico-system'), 'yes');
  assert.equal(await can('list', 'secrets', '-n', NS), 'no');
  assert.equal(await can('delete', 'pods', '-n', NS), 'no');
}

async function ha(env: Env): Promise<void> {
  const api = new KubeApi(env.kube.kubeConfig());
  env.t.after(() => api.close());
  await env.kube.apply('apiVersion: v1\nkind: Namespace\nmetadata: {name: portico-ha}\n');
  // Both replicas race to create the CA Secret: one wins, both end up with the same root.
  const [a, b] = await Promise.all([loadOrCreateSharedCa(api, 'portico-ha'), loadOrCreateSharedCa(api, 'portico-ha')]);
  assert.equal(a.ca.certPem, b.ca.certPem);
  assert.equal([a.created, b.created].filter(Boolean).length, 1);
  // The same credentials path on both (as the kit's --secrets-dir), so they compile the same snapshot version.
  const dir = mkdtempSync(join(tmpdir(), 'portico-ha-'));
  env.t.after(() => rmSync(dir, { recursive: true, force: true }));
  const start = async (identity: string): Promise<ControlPlane> => {
    const cp = await startControlPlane({
      kubernetes: { api, meshConfig: { namespace: 'portico-ha', name: 'istio' }, secretsDir: dir, leaderElection: { namespace: 'portico-ha', identity, renewMs: 300 } },
      port: 0,
      host: '127.0.0.1',
      ca: a.ca,
      token: TOKEN,
      debounceMs: 50,
    });
    env.t.after(() => cp.close());
    return cp;
  };
  const one = await start('portico-controlplane-0');
  await waitFor('replica 0 leads', async () => (one.election?.isLeader ? true : undefined));
  const two = await start('portico-controlplane-1');
  type LeaseObj = { spec: { holderIdentity: string } };
  const holder = async (): Promise<string> => (await env.kube.api<LeaseObj>('GET', '/apis/coordination.k8s.io/v1/namespaces/portico-ha/leases/portico-controlplane')).body.spec.holderIdentity;
  assert.equal(await holder(), 'portico-controlplane-0');
  await new Promise((r) => setTimeout(r, 700));
  assert.equal(two.election?.isLeader, false, 'one leader at a time');
  // Both serve the same config to proxies.
  const [s1, s2] = await Promise.all([one, two].map((cp) => waitForSnapshot({ url: cp.url, token: TOKEN, timeoutMs: 10_000 })));
  assert.equal(s1.version, s2.version);
  // A proxy that last heard from the newer replica moves to the older one: it takes that
  // replica's config and its changes (epoch order does not hold between equal replicas).
  const seen: string[] = [];
  const moved = connectProxyToControlPlane({ apply: async (snap) => void seen.push(snap.version) }, { url: one.url, token: TOKEN, node: 'ha-mover', initial: s2, minBackoffMs: 50, maxBackoffMs: 200 });
  env.t.after(() => moved.close());
  await waitFor('the proxy connected to the older replica', async () => (moved.connected() ? true : undefined));
  await env.kube.apply('apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ha-moved, namespace: portico-ha}\nspec:\n  hosts: [ha-moved.example.com]\n  location: MESH_EXTERNAL\n  resolution: DNS\n  ports: [{number: 80, name: http, protocol: HTTP}]\n');
  const changed = await waitFor('the older replica\'s change reached the proxy', async () => seen.find((v) => v !== s2.version), 10_000);
  assert.notEqual(changed, s2.version);
  moved.close();
  // The leader goes away: the other takes over (the lease is handed back on shutdown).
  const stoppedAt = Date.now();
  await one.close();
  await waitFor('replica 1 leads', async () => (two.election?.isLeader ? true : undefined), 15_000);
  assert.equal(await holder(), 'portico-controlplane-1');
  env.t.diagnostic(`leader handover after SIGTERM-equivalent close(): ${Date.now() - stoppedAt} ms`);
}

async function controlplaneCli(env: Env): Promise<void> {
  await env.kube.apply('apiVersion: v1\nkind: Namespace\nmetadata: {name: portico-cli}\n');
  const dir = mkdtempSync(join(tmpdir(), 'portico-cp-cli-'));
  env.t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'token'), TOKEN);
  // The control plane in a pod injects its own image (the kit sets it once, in `images:`).
  await env.kube.apply('apiVersion: v1\nkind: Pod\nmetadata: {name: portico-controlplane-cli, namespace: portico-cli}\nspec:\n  containers: [{name: controlplane, image: "ghcr.io/example/portico:own-pod"}]\n');
  const api = new KubeApi(env.kube.kubeConfig());
  env.t.after(() => api.close());
  assert.equal(await ownImage(api, 'portico-cli', 'portico-controlplane-cli'), 'ghcr.io/example/portico:own-pod');
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'bin/portico.ts', 'controlplane', '--kubernetes', '--kubeconfig', env.kube.kubeconfig, '--namespace', 'portico-cli', '--port', '0', '--token-file', join(dir, 'token'), '--heartbeat', '500ms'],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, POD_NAME: 'portico-controlplane-cli' } },
  );
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c));
  child.stderr!.on('data', (c: Buffer) => (out += c));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  env.t.after(() => child.kill('SIGKILL'));
  try {
    const url = await waitFor('the control plane is ready', async () => /"msg":"control plane ready","url":"([^"]+)"/.exec(out)?.[1], 60_000);
    assert.match(out, /"msg":"created the mesh CA Secret"/);
    const secret = await env.kube.api<{ data: Record<string, string> }>('GET', '/api/v1/namespaces/portico-cli/secrets/portico-ca');
    const caRes = await request(`${url}/v1/ca`);
    assert.equal(await caRes.body.text(), Buffer.from(secret.body.data['ca.crt'], 'base64').toString(), 'it signs with the Secret\'s CA');
    await waitFor('it holds the Lease', async () => {
      const r = await env.kube.api<{ spec: { holderIdentity: string } }>('GET', '/apis/coordination.k8s.io/v1/namespaces/portico-cli/leases/portico-controlplane');
      return r.body?.spec?.holderIdentity === 'portico-controlplane-cli' ? true : undefined;
    });
    const snap = await waitForSnapshot({ url, token: TOKEN, timeoutMs: 10_000 });
    assert.ok(snap.revision >= 1);
    // A proxy connected, then SIGTERM.
    const link = connectProxyToControlPlane({ apply: async () => undefined }, { url, token: TOKEN, node: 'cli-probe', initial: snap, minBackoffMs: 1000, maxBackoffMs: 1000 });
    await waitFor('the proxy connected', async () => (link.connected() ? true : undefined));
    const sent = Date.now();
    child.kill('SIGTERM');
    const code = await exited;
    link.close();
    const took = Date.now() - sent;
    assert.equal(code, 0);
    assert.ok(took < 5000, `SIGTERM took ${took} ms`);
    assert.ok(!out.includes(TOKEN), 'the token is never logged');
  } catch (err) {
    throw new Error(`${(err as Error).message}\ncontrol plane output:\n${out.slice(-4000)}`);
  }
}
