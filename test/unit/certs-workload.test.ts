import assert from 'node:assert/strict';
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { before, describe, test } from 'node:test';
import tls from 'node:tls';
import forge from 'node-forge';
import {
  CertErrorCodes,
  certInfo,
  createCsr,
  createRootCa,
  isCertError,
  issueWorkloadCert,
  parseSpiffeId,
  signCsr,
  spiffeIdFor,
  type CaPair,
  type WorkloadCert,
} from '../../certs/index.ts';

function assertCertError(fn: () => unknown, code: string, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isCertError(err), `expected a CertError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (message) assert.match(err.message, message);
    return true;
  });
}

function rsaKeyPem(bits = 2048): string {
  return generateKeyPairSync('rsa', { modulusLength: bits }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** A CSR that asks for a powerful identity: CN, a SPIFFE URI SAN and a DNS SAN of its choosing. */
function greedyCsr(keyPem: string): string {
  const key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  csr.setSubject([{ name: 'commonName', value: 'istiod.istio-system.svc' }]);
  csr.setAttributes([
    {
      name: 'extensionRequest',
      extensions: [
        {
          name: 'subjectAltName',
          altNames: [
            { type: 6, value: 'spiffe://cluster.local/ns/istio-system/sa/istiod' },
            { type: 2, value: 'istiod.istio-system.svc' },
          ],
        },
        { name: 'basicConstraints', cA: true },
      ],
    },
  ]);
  csr.sign(key, forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
}

let ca: CaPair;
let caX509: X509Certificate;
let reviews: WorkloadCert;

before(() => {
  ca = createRootCa({ commonName: 'Portico Root CA', organization: 'Portico' });
  caX509 = new X509Certificate(ca.certPem);
  reviews = issueWorkloadCert(ca, { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'bookinfo-reviews' });
});

describe('issueWorkloadCert', () => {
  test('carries exactly the SPIFFE ID as a critical URI SAN and an empty subject', () => {
    assert.equal(reviews.spiffeId, 'spiffe://cluster.local/ns/default/sa/bookinfo-reviews');
    const info = certInfo(reviews.certPem);
    assert.deepEqual(info.uris, [reviews.spiffeId]);
    assert.deepEqual(info.dnsNames, []);
    assert.equal(info.subject, '');
    const san = forge.pki.certificateFromPem(reviews.certPem).getExtension('subjectAltName') as { critical?: boolean };
    assert.equal(san.critical, true);
    const cert = new X509Certificate(reviews.certPem);
    assert.ok(cert.verify(caX509.publicKey));
    assert.ok(cert.checkPrivateKey(createPrivateKey(reviews.keyPem)));
    assert.equal(cert.ca, false);
  });

  test('lives 24 hours by default; notAfter is what the certificate says', () => {
    const info = certInfo(reviews.certPem);
    assert.equal(reviews.notAfter.getTime(), info.notAfter.getTime());
    assert.equal(info.notAfter.getTime() - info.notBefore.getTime(), 24 * 3_600_000 + 60_000);
    const short = issueWorkloadCert(ca, { trustDomain: 'td', namespace: 'a', serviceAccount: 'b', ttlHours: 1, dnsNames: ['b.a.svc'] });
    const s = certInfo(short.certPem);
    assert.equal(s.notAfter.getTime() - s.notBefore.getTime(), 3_600_000 + 60_000);
    assert.deepEqual(s.dnsNames, ['b.a.svc']);
  });

  test('rejects bad identities and lifetimes', () => {
    const base = { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'x' };
    assertCertError(() => issueWorkloadCert(ca, { ...base, trustDomain: 'Cluster.Local' }), CertErrorCodes.BAD_ARGUMENT, /trust domain/);
    assertCertError(() => issueWorkloadCert(ca, { ...base, namespace: 'a/b' }), CertErrorCodes.BAD_ARGUMENT, /namespace/);
    assertCertError(() => issueWorkloadCert(ca, { ...base, serviceAccount: '..' }), CertErrorCodes.BAD_ARGUMENT);
    assertCertError(() => issueWorkloadCert(ca, { ...base, serviceAccount: '' }), CertErrorCodes.BAD_ARGUMENT);
    assertCertError(() => issueWorkloadCert(ca, { ...base, ttlHours: 0 }), CertErrorCodes.BAD_ARGUMENT);
    assertCertError(() => issueWorkloadCert(ca, { ...base, ttlHours: 24 * 91 }), CertErrorCodes.BAD_ARGUMENT, /maximum/);
  });

  test('SPIFFE IDs round-trip and malformed ones are refused', () => {
    const id = spiffeIdFor({ trustDomain: 'example.org', namespace: 'ns1', serviceAccount: 'sa_1' });
    assert.deepEqual(parseSpiffeId(id), { trustDomain: 'example.org', namespace: 'ns1', serviceAccount: 'sa_1' });
    for (const bad of ['spiffe://td/ns/a', 'https://td/ns/a/sa/b', 'spiffe://td/ns/a/sa/b/extra', 'spiffe://TD/ns/a/sa/b']) {
      assertCertError(() => parseSpiffeId(bad), CertErrorCodes.BAD_ARGUMENT);
    }
  });
});

describe('CSR signing', () => {
  test('createCsr makes a CSR whose signature verifies', () => {
    const csrPem = createCsr(rsaKeyPem(), 'reviews');
    const csr = forge.pki.certificationRequestFromPem(csrPem);
    assert.ok(csr.verify());
    assert.equal(csr.subject.getField('CN').value, 'reviews');
  });

  test('issues the authenticated identity only, ignoring what the CSR asks for', () => {
    const keyPem = rsaKeyPem();
    const csrPem = greedyCsr(keyPem);
    const spiffeId = 'spiffe://cluster.local/ns/default/sa/ratings';
    const signed = signCsr(ca, csrPem, { spiffeId, ttlHours: 2 });
    const info = certInfo(signed.certPem);
    assert.deepEqual(info.uris, [spiffeId]);
    assert.deepEqual(info.dnsNames, []);
    assert.equal(info.subject, '', 'requested CN is not copied');
    assert.equal(info.isCa, false, 'requested basicConstraints CA:true is not honoured');
    assert.equal(signed.spiffeId, spiffeId);
    assert.equal(info.notAfter.getTime() - info.notBefore.getTime(), 2 * 3_600_000 + 60_000);
    const cert = new X509Certificate(signed.certPem);
    assert.ok(cert.verify(caX509.publicKey));
    assert.ok(cert.checkPrivateKey(createPrivateKey(keyPem)), 'certificate is for the CSR key');
  });

  test('refuses a CSR whose signature does not match its key', () => {
    const spiffeId = 'spiffe://cluster.local/ns/a/sa/b';
    // 1. swap in someone else's public key after signing: no proof of possession
    const csr = forge.pki.certificationRequestFromPem(createCsr(rsaKeyPem(), 'a'));
    const other = forge.pki.privateKeyFromPem(rsaKeyPem()) as forge.pki.rsa.PrivateKey;
    csr.publicKey = forge.pki.setRsaPublicKey(other.n, other.e);
    // forge re-serialises the info it parsed unless told to rebuild it from the fields
    (csr as unknown as { certificationRequestInfo: unknown }).certificationRequestInfo = null;
    const swapped = forge.pki.certificationRequestToPem(csr);
    assert.notEqual(
      forge.pki.certificationRequestFromPem(swapped).publicKey,
      undefined,
      'the forged CSR still parses',
    );
    assertCertError(() => signCsr(ca, swapped, { spiffeId }), CertErrorCodes.CSR_BAD_SIGNATURE);

    // 2. flip one bit of the signature
    const der = Buffer.from(
      forge.asn1.toDer(forge.pki.certificationRequestToAsn1(forge.pki.certificationRequestFromPem(createCsr(rsaKeyPem(), 'a')))).getBytes(),
      'binary',
    );
    der[der.length - 5]! ^= 0x01;
    const flipped = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE REQUEST-----\n`;
    assertCertError(() => signCsr(ca, flipped, { spiffeId }), CertErrorCodes.CSR_BAD_SIGNATURE);
  });

  test('refuses garbage, weak keys and malformed identities', () => {
    assertCertError(() => signCsr(ca, 'hello', { spiffeId: 'spiffe://td/ns/a/sa/b' }), CertErrorCodes.CSR_INVALID);
    const weak = createCsrUnchecked(rsaKeyPem(1024));
    assertCertError(() => signCsr(ca, weak, { spiffeId: 'spiffe://td/ns/a/sa/b' }), CertErrorCodes.UNSUPPORTED_KEY, /1024/);
    const ok = createCsr(rsaKeyPem(), 'a');
    assertCertError(() => signCsr(ca, ok, { spiffeId: 'spiffe://td/a/b' }), CertErrorCodes.BAD_ARGUMENT);
    assertCertError(() => signCsr(ca, ok, { spiffeId: 'spiffe://td/ns/a/sa/b', ttlHours: 10_000 }), CertErrorCodes.BAD_ARGUMENT);
  });

  test('EC keys are refused with a clear error', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    assertCertError(() => createCsr(ec, 'a'), CertErrorCodes.UNSUPPORTED_KEY, /ec keys are not supported/);
  });
});

function createCsrUnchecked(keyPem: string): string {
  const key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  csr.setSubject([{ name: 'commonName', value: 'weak' }]);
  csr.sign(key, forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
}

describe('workload certificates in mutual TLS', () => {
  test('each side verifies the other against the CA and sees its SPIFFE ID', async (t) => {
    const ratings = issueWorkloadCert(ca, { trustDomain: 'cluster.local', namespace: 'default', serviceAccount: 'bookinfo-ratings' });
    const server = tls.createServer({
      cert: ratings.certPem,
      key: ratings.keyPem,
      ca: ca.certPem,
      requestCert: true,
      rejectUnauthorized: true,
    });
    const seen: string[] = [];
    server.on('secureConnection', (socket) => {
      seen.push(certInfo(socket.getPeerX509Certificate()!.toString()).uris.join(','));
      socket.end('ok');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => server.close());
    const { port } = server.address() as AddressInfo;

    // Workload certificates carry no DNS name: like Envoy, the client checks the peer's SPIFFE ID.
    const expectPeer = (want: string) => (_host: string, cert: tls.PeerCertificate) =>
      cert.subjectaltname === `URI:${want}` ? undefined : new Error(`peer is ${cert.subjectaltname}, want ${want}`);
    const connect = (cert: WorkloadCert | undefined, want: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = tls.connect({
          host: '127.0.0.1',
          port,
          ca: ca.certPem,
          ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}),
          checkServerIdentity: expectPeer(want),
        });
        let data = '';
        socket.setEncoding('utf8');
        socket.on('data', (d: string) => (data += d));
        socket.on('end', () => resolve(data));
        socket.on('error', reject);
      });

    assert.equal(await connect(reviews, ratings.spiffeId), 'ok');
    assert.deepEqual(seen, [reviews.spiffeId]);
    await assert.rejects(connect(reviews, 'spiffe://cluster.local/ns/default/sa/someone-else'), /want spiffe/);
    // without a client certificate the server refuses (TLS 1.3 reports it after the handshake)
    await assert.rejects(connect(undefined, ratings.spiffeId));
    assert.equal(seen.length, 1);
  });
});
