/**
 * Workload certificates from the control plane: identity comes from the registry (WorkloadEntry
 * namespace + serviceAccount), never from the CSR; unknown workloads and bad CSRs are refused;
 * the rotator renews at the configured share of the lifetime.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import forge from 'node-forge';
import { request } from 'undici';
import { certInfo, createRootCa, type CaPair } from '../../certs/index.ts';
import { CertRotator, requestWorkloadCertificate, type WorkloadCertificate } from '../../controlplane/client.ts';
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from '../../controlplane/server.ts';

const TOKEN = 'ca-test-token-abcdefghijklmnop';
let sharedCa: CaPair | undefined;
const ca = (): CaPair => (sharedCa ??= createRootCa({ commonName: 'Test Mesh CA', organization: 'Portico tests' }));

const REGISTRY = `
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: bookinfo}
spec:
  address: 127.0.0.1
  ports: {http: 9080}
  labels: {app: reviews, version: v1}
  serviceAccount: bookinfo-reviews
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-v1, namespace: default}
spec:
  address: 127.0.0.1
  labels: {app: ratings}
`;

async function startCp(t: TestContext, extra: Partial<ControlPlaneOptions> = {}): Promise<ControlPlane> {
  const dir = mkdtempSync(join(tmpdir(), 'portico-cp-ca-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'registry.yaml'), REGISTRY);
  const cp = await startControlPlane({ config: [dir], port: 0, ca: ca(), token: TOKEN, host: '127.0.0.1', trustDomain: 'mesh.example', ...extra });
  t.after(() => cp.close());
  return cp;
}

function keyPem(): string {
  return generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** A CSR asking for someone else's identity (istiod's) in its subject and SANs. */
function greedyCsr(pem: string): string {
  const key = forge.pki.privateKeyFromPem(pem) as forge.pki.rsa.PrivateKey;
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  csr.setSubject([{ name: 'commonName', value: 'istiod.istio-system.svc' }]);
  csr.setAttributes([
    {
      name: 'extensionRequest',
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 6, value: 'spiffe://mesh.example/ns/istio-system/sa/istiod' }] }],
    },
  ]);
  csr.sign(key, forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
}

async function post(cp: ControlPlane, body: unknown, token = TOKEN): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await request(new URL('/v1/certificates', cp.url), {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
}

test('the certificate carries the registry identity even when the CSR asks for another', async (t) => {
  const cp = await startCp(t);
  const pem = keyPem();
  const r = await post(cp, { csr: greedyCsr(pem), workload: 'bookinfo/reviews-v1' });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.spiffeId, 'spiffe://mesh.example/ns/bookinfo/sa/bookinfo-reviews');
  const info = certInfo(r.json.certChain as string);
  assert.deepEqual(info.uris, ['spiffe://mesh.example/ns/bookinfo/sa/bookinfo-reviews']);
  assert.equal(info.subject, '', 'nothing of the CSR subject is copied');
  assert.equal(r.json.caCert, ca().certPem);
  assert.equal(new Date(r.json.notAfter as string).getTime(), info.notAfter.getTime());
  const hours = (info.notAfter.getTime() - Date.now()) / 3_600_000;
  assert.ok(hours > 23.9 && hours <= 24, `default TTL is 24 h, got ${hours}`);
  const leaf = new X509Certificate(r.json.certChain as string);
  assert.ok(leaf.verify(new X509Certificate(ca().certPem).publicKey), 'signed by the mesh CA');
  assert.ok(leaf.checkPrivateKey(await import('node:crypto').then((c) => c.createPrivateKey(pem))), 'for the CSR key');
});

test('client library: key + CSR made locally, bare names mean namespace default, no serviceAccount means "default"', async (t) => {
  const cp = await startCp(t);
  const cert = await requestWorkloadCertificate({ url: cp.url, token: TOKEN, workload: 'ratings-v1' });
  assert.equal(cert.spiffeId, 'spiffe://mesh.example/ns/default/sa/default');
  assert.match(cert.keyPem, /BEGIN PRIVATE KEY/);
  assert.ok(new X509Certificate(cert.certPem).checkPrivateKey((await import('node:crypto')).createPrivateKey(cert.keyPem)));
  assert.equal(cert.caCertPem, ca().certPem);
});

test('unknown workload → 404, bad CSR → 400, malformed requests → 400, wrong token → 401', async (t) => {
  const cp = await startCp(t);
  const csr = greedyCsr(keyPem());
  const unknown = await post(cp, { csr, workload: 'bookinfo/nobody' });
  assert.equal(unknown.status, 404);
  assert.deepEqual(unknown.json.error, {
    code: 'PORTICO_ERR_CP_UNKNOWN_WORKLOAD',
    message: "workload 'bookinfo/nobody': no WorkloadEntry of that name in namespace 'bookinfo' (revision 1)",
  });
  // Same name, other namespace: still unknown (the namespace is part of the identity).
  assert.equal((await post(cp, { csr, workload: 'default/reviews-v1' })).status, 404);

  const bad = await post(cp, { csr: '-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----\n', workload: 'bookinfo/reviews-v1' });
  assert.equal(bad.status, 400);
  assert.equal((bad.json.error as { code: string }).code, 'PORTICO_ERR_CP_BAD_CSR');

  // A CSR whose signature does not match its public key: no proof of possession.
  const claimed = forge.pki.privateKeyFromPem(keyPem()) as forge.pki.rsa.PrivateKey;
  const signer = forge.pki.privateKeyFromPem(keyPem()) as forge.pki.rsa.PrivateKey;
  const tampered = forge.pki.createCertificationRequest();
  tampered.publicKey = forge.pki.setRsaPublicKey(claimed.n, claimed.e);
  tampered.setSubject([{ name: 'commonName', value: 'x' }]);
  tampered.sign(signer, forge.md.sha256.create());
  const forged = await post(cp, { csr: forge.pki.certificationRequestToPem(tampered), workload: 'bookinfo/reviews-v1' });
  assert.equal(forged.status, 400);
  assert.match((forged.json.error as { message: string }).message, /signature/);

  for (const body of [{ workload: 'bookinfo/reviews-v1' }, { csr }, { csr, workload: 'a/b/c' }, { csr, workload: 7 }, ['x']]) {
    const r = await post(cp, body);
    assert.equal(r.status, 400, JSON.stringify(body).slice(0, 80));
    assert.equal((r.json.error as { code: string }).code, 'PORTICO_ERR_CP_BAD_REQUEST');
  }
  assert.equal((await post(cp, { csr, workload: 'bookinfo/reviews-v1' }, 'wrong')).status, 401);

  await assert.rejects(requestWorkloadCertificate({ url: cp.url, token: TOKEN, workload: 'bookinfo/nobody' }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'PORTICO_ERR_CP_UNKNOWN_WORKLOAD');
    assert.match(err.message, /no WorkloadEntry of that name/);
    return true;
  });
});

test('CertRotator renews at the configured share of the lifetime and delivers each new pair', async (t) => {
  // 2 s certificates; notBefore is back-dated 60 s for clock skew, so renew at 98 % of the window.
  const cp = await startCp(t, { certTtlHours: 2 / 3600 });
  const rotated: WorkloadCertificate[] = [];
  const rotator = new CertRotator({ url: cp.url, token: TOKEN, workload: 'bookinfo/reviews-v1', fraction: 0.98, minIntervalMs: 100, onRotate: (c) => void rotated.push(c) });
  t.after(() => rotator.close());
  const first = await rotator.start();
  assert.equal(rotated.length, 0, 'start() returns the first pair; onRotate is for renewals');
  assert.ok(rotator.nextRotation()!.getTime() < first.notAfter.getTime());
  const deadline = Date.now() + 10_000;
  while (rotated.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.ok(rotated.length >= 2, `rotated ${rotated.length} times`);
  const all = [first, ...rotated];
  assert.equal(new Set(all.map((c) => c.serialNumber)).size, all.length, 'each renewal is a new certificate');
  assert.equal(new Set(all.map((c) => c.keyPem)).size, all.length, 'and a new key');
  for (const c of all) assert.equal(c.spiffeId, 'spiffe://mesh.example/ns/bookinfo/sa/bookinfo-reviews');
  for (let i = 1; i < all.length; i++) {
    assert.ok(all[i]!.notAfter >= all[i - 1]!.notAfter);
    // delivered before the previous one expired
    assert.ok(all[i]!.notBefore.getTime() + 60_000 <= all[i - 1]!.notAfter.getTime());
  }
  assert.equal(rotator.current(), rotated.at(-1));
});

test('CertRotator keeps retrying while the control plane is down, then delivers', async (t) => {
  const cp = await startCp(t, { certTtlHours: 2 / 3600 });
  const errors: Error[] = [];
  const rotated: WorkloadCertificate[] = [];
  const rotator = new CertRotator({
    url: cp.url,
    token: TOKEN,
    workload: 'bookinfo/reviews-v1',
    fraction: 0.98,
    minIntervalMs: 100,
    retryMinMs: 50,
    retryMaxMs: 100,
    onRotate: (c) => void rotated.push(c),
    onError: (e) => void errors.push(e),
  });
  t.after(() => rotator.close());
  await rotator.start();
  await cp.close();
  const until = async (cond: () => boolean): Promise<void> => {
    const deadline = Date.now() + 10_000;
    while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  };
  await until(() => errors.length >= 2);
  assert.ok(errors.length >= 2, 'renewal failures are reported');
  assert.equal(rotated.length, 0);
  const back = await startCp(t, { port: cp.port, certTtlHours: 2 / 3600 });
  assert.equal(back.port, cp.port);
  await until(() => rotated.length >= 1);
  assert.ok(rotated.length >= 1, 'renewed once the control plane is back');
});
