/**
 * deploy/kubernetes: structural invariants a reviewer would otherwise check by eye. Every
 * manifest parses and is listed in the kustomization; every Deployment has probes, resources and
 * a locked-down securityContext; Services, PDBs and the HPA point at pods that exist; probe and
 * Service ports name real container ports; the Istio ConfigMap passes `portico validate` and the
 * gateway's container ports are the ones its Gateway servers bind.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { assertFullPasswordLogin, startCallbackServer, startDex } from '../helpers/dex.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DIR = join(REPO, 'deploy/kubernetes');

interface Port { name?: string; containerPort: number }
interface Probe { httpGet?: { port: string | number }; tcpSocket?: { port: string | number }; exec?: { command: string[] } }
interface Container {
  name: string;
  args?: string[];
  ports?: Port[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: { readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean; capabilities?: { drop?: string[] } };
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  securityContext?: { runAsNonRoot?: boolean };
  containers: Container[];
  volumes?: { name: string; configMap?: { name: string }; secret?: { secretName: string; optional?: boolean } }[];
}
interface K8s {
  kind: string;
  metadata: { name: string };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}
type Deployment = K8s & { spec: { replicas?: number; selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> }; spec: PodSpec } } };

function load(): { files: string[]; objects: K8s[] } {
  const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
  const objects: K8s[] = [];
  for (const f of files) {
    for (const doc of parseAllDocuments(readFileSync(join(DIR, f), 'utf8'))) {
      assert.deepEqual(doc.errors, [], `${f}: YAML errors`);
      const obj = doc.toJS() as K8s | null;
      if (obj) objects.push(obj);
    }
  }
  return { files, objects };
}

const { files, objects } = load();
const of = <T extends K8s>(kind: string): T[] => objects.filter((o) => o.kind === kind) as T[];
const deployments = of<Deployment>('Deployment');
const subset = (sel: Record<string, string>, labels: Record<string, string>): boolean => Object.entries(sel).every(([k, v]) => labels[k] === v);

test('every manifest is listed in the kustomization, and every object has a kind and a name', () => {
  const kustomization = parse(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
  assert.deepEqual([...kustomization.resources].sort(), [...files].sort());
  for (const o of objects) assert.ok(o.kind && o.metadata?.name, JSON.stringify(o).slice(0, 100));
});

test('every Deployment has probes, requests and limits, and a non-root read-only securityContext', () => {
  assert.ok(deployments.length >= 4);
  for (const d of deployments) {
    const pod = d.spec.template.spec;
    assert.ok(subset(d.spec.selector.matchLabels, d.spec.template.metadata.labels), `${d.metadata.name}: selector matches its template`);
    assert.equal(pod.securityContext?.runAsNonRoot, true, `${d.metadata.name}: runAsNonRoot`);
    for (const c of pod.containers) {
      const where = `${d.metadata.name}/${c.name}`;
      assert.ok(c.readinessProbe && c.livenessProbe, `${where}: readiness and liveness probes`);
      for (const k of ['cpu', 'memory']) {
        assert.ok(c.resources?.requests?.[k] && c.resources.limits?.[k], `${where}: ${k} request and limit`);
      }
      assert.equal(c.securityContext?.readOnlyRootFilesystem, true, `${where}: read-only root fs`);
      assert.equal(c.securityContext?.allowPrivilegeEscalation, false, `${where}: no privilege escalation`);
      assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL'], `${where}: drops all capabilities`);
      const names = new Set((c.ports ?? []).flatMap((p) => [p.name, p.containerPort]));
      for (const probe of [c.readinessProbe, c.livenessProbe]) {
        const port = probe?.httpGet?.port ?? probe?.tcpSocket?.port;
        if (port !== undefined) assert.ok(names.has(port), `${where}: probe port ${port} is a container port`);
      }
      for (const m of c.volumeMounts ?? []) assert.ok(pod.volumes?.some((v) => v.name === m.name), `${where}: volume ${m.name} exists`);
      for (const v of pod.volumes ?? []) {
        if (v.configMap) assert.ok(of('ConfigMap').some((cm) => cm.metadata.name === v.configMap!.name), `${where}: ConfigMap ${v.configMap.name} exists`);
      }
    }
  }
});

test('Services, PodDisruptionBudgets and the HPA select pods that exist', () => {
  for (const s of of<K8s & { spec: { selector: Record<string, string>; ports: { targetPort: string | number }[] } }>('Service')) {
    const pods = deployments.filter((d) => subset(s.spec.selector, d.spec.template.metadata.labels));
    assert.equal(pods.length, 1, `Service ${s.metadata.name} selects exactly one Deployment's pods`);
    const ports = new Set(pods[0]!.spec.template.spec.containers.flatMap((c) => (c.ports ?? []).flatMap((p) => [p.name, p.containerPort])));
    for (const p of s.spec.ports) assert.ok(ports.has(p.targetPort), `Service ${s.metadata.name}: targetPort ${p.targetPort} is a container port`);
  }
  for (const pdb of of<K8s & { spec: { selector: { matchLabels: Record<string, string> } } }>('PodDisruptionBudget')) {
    const d = deployments.find((x) => subset(pdb.spec.selector.matchLabels, x.spec.template.metadata.labels));
    assert.ok(d, `PDB ${pdb.metadata.name} selects a Deployment`);
    assert.ok((d.spec.replicas ?? 1) >= 2, `PDB ${pdb.metadata.name}: its Deployment runs 2+ replicas, or the PDB blocks every drain`);
  }
  const hpas = of<K8s & { spec: { scaleTargetRef: { kind: string; name: string }; minReplicas: number } }>('HorizontalPodAutoscaler');
  assert.ok(hpas.length >= 1);
  for (const h of hpas) assert.ok(deployments.some((d) => d.metadata.name === h.spec.scaleTargetRef.name), `HPA ${h.metadata.name} targets a Deployment`);
  const gatewaySvc = of<K8s & { spec: { type?: string; selector: Record<string, string> } }>('Service').find((s) => s.metadata.name === 'portico-gateway');
  assert.equal(gatewaySvc?.spec.type, 'LoadBalancer');
  const auth = deployments.find((d) => d.metadata.name === 'authservice')!;
  assert.ok((auth.spec.replicas ?? 1) >= 2, 'authservice runs 2+ replicas');
  const env = (auth.spec.template.spec.containers[0] as Container & { env: { name: string; value?: string }[] }).env;
  assert.equal(env.find((e) => e.name === 'SESSION_STORE_TYPE')?.value, 'redis', 'replicas share sessions in Redis');
});

test('the Istio ConfigMap passes `portico validate`, and the gateway exposes the ports its Gateways bind', () => {
  const cm = of('ConfigMap').find((c) => c.metadata.name === 'portico-istio-config');
  assert.ok(cm?.data);
  const tmp = mkdtempSync(join(tmpdir(), 'portico-deploy-'));
  try {
    const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', join(REPO, 'bin/portico.ts'), ...args], { cwd: REPO, encoding: 'utf8' });
    mkdirSync(join(tmp, 'istio'));
    for (const [k, v] of Object.entries(cm.data)) writeFileSync(join(tmp, 'istio', k), v);
    // The credentialName Secret (kubernetes.io/tls: tls.crt, tls.key), as the gateway mounts it.
    const issued = cli('certs', 'issue', '--host', 'gateway.example.com', '--name', 'portico-gateway-cert', '--out', join(tmp, 'certs'));
    assert.equal(issued.status, 0, issued.stderr);
    const r = cli('validate', '--secrets-dir', join(tmp, 'certs/credentials'), join(tmp, 'istio'));
    assert.equal(r.status, 0, `portico validate:\n${r.stdout}${r.stderr}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const gw = deployments.find((d) => d.metadata.name === 'portico-gateway')!;
  const c = gw.spec.template.spec.containers[0]!;
  const mount = c.volumeMounts?.find((m) => gw.spec.template.spec.volumes?.find((v) => v.name === m.name)?.configMap?.name === 'portico-istio-config');
  assert.ok(c.args?.includes(`--config=${mount?.mountPath}`), 'the gateway reads the ConfigMap mount as --config');
  const bound = new Set<number>();
  for (const doc of parseAllDocuments(cm.data['gateway.yaml']!)) {
    for (const s of (doc.toJS() as { spec: { servers: { port: { number: number; targetPort?: number } }[] } }).spec.servers) bound.add(s.port.targetPort ?? s.port.number);
  }
  assert.deepEqual([...bound].sort(), (c.ports ?? []).map((p) => p.containerPort).sort());
});

test("the kit's Dex is the authservice's IdP: same issuer, client and secret, and real Dex logs jason in with its config as shipped", async (t) => {
  const secret = objects.find((o) => o.kind === 'Secret' && o.metadata.name === 'dex-config');
  assert.ok(secret?.stringData?.['config.yaml'], 'dex.yaml ships its config as Secret dex-config');
  const config = parse(secret.stringData['config.yaml']) as { issuer: string; staticClients: { id: string; secret: string }[] };
  const auth = deployments.find((d) => d.metadata.name === 'authservice')!;
  const env = new Map(((auth.spec.template.spec.containers[0] as Container & { env?: { name: string; value?: string }[] }).env ?? []).map((e) => [e.name, e.value] as const));
  assert.equal(env.get('OIDC_PROVIDER'), config.issuer, "the authservice discovers the kit's Dex");
  assert.equal(env.get('CLIENT_ID'), config.staticClients[0]!.id);
  const authSecret = objects.find((o) => o.kind === 'Secret' && o.metadata.name === 'portico-authservice');
  assert.equal(authSecret?.stringData?.CLIENT_SECRET, config.staticClients[0]!.secret, 'CLIENT_SECRET matches the Dex client');
  const dexService = objects.find((o) => o.kind === 'Service' && o.metadata.name === 'dex');
  assert.ok(dexService, 'a Service dex');
  assert.ok(config.issuer.startsWith('http://dex.portico-system.svc.cluster.local:5556/'), "the issuer is the Service's in-cluster name");

  const callback = await startCallbackServer(t);
  const idp = await startDex(t, { redirectURIs: [callback.url], shipped: { config, users: [{ email: 'jason@example.com', username: 'jason', password: 'password', userID: '08a8684b-db88-4b73-90a9-3cd1661f5466' }] } });
  if (!idp) return;
  await assertFullPasswordLogin(idp, callback);
});

test('deploy/kubernetes-native/login.yaml (the Gateway, Dex and authservice routes, the CUSTOM provider and policy) passes `portico validate` in the kit namespace', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'portico-deploy-native-'));
  try {
    const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', join(REPO, 'bin/portico.ts'), ...args], { cwd: REPO, encoding: 'utf8' });
    // kustomize's `namespace: portico-system` sets every object's namespace.
    const docs = parseAllDocuments(readFileSync(join(REPO, 'deploy/kubernetes-native/login.yaml'), 'utf8'));
    for (const d of docs) d.setIn(['metadata', 'namespace'], 'portico-system');
    mkdirSync(join(tmp, 'istio'));
    writeFileSync(join(tmp, 'istio', 'login.yaml'), docs.map((d) => d.toString()).join('---\n'));
    const issued = cli('certs', 'issue', '--host', 'gateway.example.com', '--name', 'portico-gateway-cert', '--out', join(tmp, 'certs'));
    assert.equal(issued.status, 0, issued.stderr);
    const r = cli('validate', '--secrets-dir', join(tmp, 'certs/credentials'), join(tmp, 'istio'));
    assert.equal(r.status, 0, `portico validate:\n${r.stdout}${r.stderr}`);
    assert.doesNotMatch(r.stdout + r.stderr, /warning:/, 'no warnings either');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
