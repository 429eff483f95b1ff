import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { before, describe, test } from 'node:test';
import forge from 'node-forge';
import {
  CertErrorCodes,
  certInfo,
  createRootCa,
  issueServerCert,
  isCertError,
  type CaPair,
  type CertKeyPair,
} from '../../certs/index.ts';
import { parseSubjectAltName } from '../../certs/info.ts';

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';

type Ext = { critical?: boolean } & Record<string, unknown>;
function ext(pem: string, name: string): Ext | undefined {
  return forge.pki.certificateFromPem(pem).getExtension(name) as Ext | undefined;
}

function assertCertError(fn: () => unknown, code: string, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isCertError(err), `expected a CertError, got ${String(err)}`);
    assert.equal(err.code, code);
    if (message) assert.match(err.message, message);
    return true;
  });
}

let ca: CaPair;
let caX509: X509Certificate;
let server: CertKeyPair;

before(() => {
  ca = createRootCa({ commonName: 'example.com', organization: 'example Inc.', validityDays: 30 });
  caX509 = new X509Certificate(ca.certPem);
  server = issueServerCert(ca, {
    commonName: 'httpbin.example.com',
    dnsNames: ['www.example.com', 'HTTPBIN.example.com', '*.apps.example.com'],
    ipAddresses: ['127.0.0.1', '::1'],
    organization: 'httpbin organization',
  });
});

describe('createRootCa', () => {
  test('is a self-signed CA with the required, critical extensions', () => {
    assert.equal(caX509.ca, true);
    assert.equal(caX509.subject, 'O=example Inc.\nCN=example.com');
    assert.equal(caX509.issuer, caX509.subject);
    assert.ok(caX509.verify(caX509.publicKey), 'self-signature verifies');
    assert.ok(caX509.checkPrivateKey(createPrivateKey(ca.keyPem)));
    assert.match(ca.keyPem, /^-----BEGIN PRIVATE KEY-----/);
    assert.match(ca.certPem, /^-----BEGIN CERTIFICATE-----\n/);
    assert.ok(!ca.certPem.includes('\r'), 'LF line ends, as openssl writes');

    const bc = ext(ca.certPem, 'basicConstraints');
    assert.equal(bc?.cA, true);
    assert.equal(bc?.critical, true);
    const ku = ext(ca.certPem, 'keyUsage');
    assert.equal(ku?.keyCertSign, true);
    assert.equal(ku?.cRLSign, true);
    assert.equal(ku?.digitalSignature, false);
    assert.equal(ku?.critical, true);
    assert.ok(ext(ca.certPem, 'subjectKeyIdentifier'), 'has a subjectKeyIdentifier');
  });

  test('lasts validityDays and is back-dated a minute for clock skew', () => {
    const info = certInfo(ca.certPem);
    const lifetime = info.notAfter.getTime() - info.notBefore.getTime();
    assert.equal(lifetime, 30 * 86_400_000 + 60_000);
    assert.ok(info.notBefore.getTime() <= Date.now() - 59_000);
  });

  test('rejects bad arguments', () => {
    assertCertError(() => createRootCa({ commonName: '' }), CertErrorCodes.BAD_ARGUMENT, /common name/);
    assertCertError(() => createRootCa({ commonName: 'x', validityDays: 0 }), CertErrorCodes.BAD_ARGUMENT, /validity/);
    assertCertError(() => createRootCa({ commonName: 'a\nb' }), CertErrorCodes.BAD_ARGUMENT);
  });
});

describe('issueServerCert', () => {
  test('chains to the CA and matches its own key', () => {
    const cert = new X509Certificate(server.certPem);
    assert.ok(cert.verify(caX509.publicKey), 'signature verifies with the CA public key');
    assert.ok(cert.checkIssued(caX509));
    assert.ok(cert.checkPrivateKey(createPrivateKey(server.keyPem)));
    assert.equal(cert.checkPrivateKey(createPrivateKey(ca.keyPem)), false);
    assert.equal(cert.ca, false);
    // a different CA's key does not verify it
    const other = new X509Certificate(createRootCa({ commonName: 'other' }).certPem);
    assert.equal(cert.verify(other.publicKey), false);
  });

  test('puts the host in CN and SAN, deduplicated and lower-cased, with IPs', () => {
    const info = certInfo(server.certPem);
    assert.equal(info.subject, 'CN=httpbin.example.com\nO=httpbin organization');
    assert.equal(info.issuer, 'O=example Inc.\nCN=example.com');
    assert.deepEqual(info.dnsNames, ['httpbin.example.com', 'www.example.com', '*.apps.example.com']);
    assert.deepEqual(info.ipAddresses, ['127.0.0.1', '0:0:0:0:0:0:0:1']);
    assert.deepEqual(info.uris, []);
    const cert = new X509Certificate(server.certPem);
    assert.equal(cert.checkHost('httpbin.example.com'), 'httpbin.example.com');
    assert.equal(cert.checkHost('foo.apps.example.com'), '*.apps.example.com');
    assert.equal(cert.checkHost('evil.example.com'), undefined);
    assert.equal(cert.checkIP('127.0.0.1'), '127.0.0.1');
    assert.equal(cert.checkIP('10.0.0.1'), undefined);
  });

  test('is for TLS servers and clients, with an authority key identifier and a random positive serial', () => {
    const cert = new X509Certificate(server.certPem);
    assert.deepEqual([...cert.keyUsage].sort(), [SERVER_AUTH, CLIENT_AUTH].sort());
    const ku = ext(server.certPem, 'keyUsage');
    assert.equal(ku?.digitalSignature, true);
    assert.equal(ku?.keyCertSign, false);
    const bc = ext(server.certPem, 'basicConstraints');
    assert.equal(bc?.cA, false);

    const aki = forge.pki.certificateFromPem(server.certPem).getExtension('authorityKeyIdentifier') as
      | { value: string }
      | undefined;
    const ski = ext(ca.certPem, 'subjectKeyIdentifier') as { subjectKeyIdentifier: string } | undefined;
    assert.ok(aki && ski);
    // AuthorityKeyIdentifier ::= SEQUENCE { [0] keyIdentifier } : the [0] content is the CA's SKI
    const akiAsn1 = forge.asn1.fromDer(aki.value);
    const keyId = (akiAsn1.value as forge.asn1.Asn1[])[0]!;
    assert.equal(forge.util.bytesToHex(keyId.value as string), ski.subjectKeyIdentifier);

    const serial = cert.serialNumber;
    assert.equal(serial.length, 32, '16 bytes');
    assert.ok(parseInt(serial[0]!, 16) < 8, 'top bit clear: positive');
    const again = issueServerCert(ca, { commonName: 'httpbin.example.com' });
    assert.notEqual(new X509Certificate(again.certPem).serialNumber, serial);
  });

  test('defaults to 365 days but never outlives the CA', () => {
    const shortCa = createRootCa({ commonName: 'short', validityDays: 10 });
    const leaf = certInfo(issueServerCert(shortCa, { commonName: 'a.example.com' }).certPem);
    assert.equal(leaf.notAfter.getTime(), certInfo(shortCa.certPem).notAfter.getTime());
    const year = certInfo(server.certPem);
    // capped by the 30-day CA too
    assert.equal(year.notAfter.getTime(), certInfo(ca.certPem).notAfter.getTime());
    const longCa = createRootCa({ commonName: 'long', validityDays: 1000 });
    const y = certInfo(issueServerCert(longCa, { commonName: 'a.example.com' }).certPem);
    assert.equal(y.notAfter.getTime() - y.notBefore.getTime(), 365 * 86_400_000 + 60_000);
  });

  test('a CN that is an IP goes into the IP SANs; a free-text CN into none', () => {
    const ipCert = certInfo(issueServerCert(ca, { commonName: '10.1.2.3' }).certPem);
    assert.deepEqual(ipCert.ipAddresses, ['10.1.2.3']);
    assert.deepEqual(ipCert.dnsNames, []);
    const named = certInfo(issueServerCert(ca, { commonName: 'My Server', dnsNames: ['svc.local'] }).certPem);
    assert.deepEqual(named.dnsNames, ['svc.local']);
  });

  test('rejects bad names with the offending value', () => {
    assertCertError(() => issueServerCert(ca, { commonName: 'x', dnsNames: ['bad host'] }), CertErrorCodes.BAD_ARGUMENT, /'bad host'/);
    assertCertError(() => issueServerCert(ca, { commonName: 'x', dnsNames: ['-a.example.com'] }), CertErrorCodes.BAD_ARGUMENT);
    assertCertError(() => issueServerCert(ca, { commonName: 'x', dnsNames: ['*.com'] }), CertErrorCodes.BAD_ARGUMENT);
    assertCertError(() => issueServerCert(ca, { commonName: 'x', dnsNames: ['a.*.example.com'] }), CertErrorCodes.BAD_ARGUMENT);
    assertCertError(() => issueServerCert(ca, { commonName: 'x.example.com', ipAddresses: ['300.1.1.1'] }), CertErrorCodes.BAD_ARGUMENT, /300\.1\.1\.1/);
    assertCertError(() => issueServerCert(ca, { commonName: 'Free Text' }), CertErrorCodes.BAD_ARGUMENT, /at least one DNS name or IP/);
    assertCertError(() => issueServerCert(ca, { commonName: 'a.example.com', validityDays: -1 }), CertErrorCodes.BAD_ARGUMENT);
  });

  test('refuses a CA that is not usable', () => {
    // a leaf is not a CA
    assertCertError(() => issueServerCert(server, { commonName: 'a.example.com' }), CertErrorCodes.NOT_A_CA);
    // key from another pair
    assertCertError(
      () => issueServerCert({ certPem: ca.certPem, keyPem: server.keyPem }, { commonName: 'a.example.com' }),
      CertErrorCodes.KEY_MISMATCH,
    );
    assertCertError(
      () => issueServerCert({ certPem: 'not a pem', keyPem: ca.keyPem }, { commonName: 'a.example.com' }),
      CertErrorCodes.BAD_PEM,
    );
    assertCertError(
      () => issueServerCert({ certPem: ca.certPem, keyPem: 'nope' }, { commonName: 'a.example.com' }),
      CertErrorCodes.BAD_PEM,
    );
    // expired: a 1-day CA made 3 days ago
    const old = createRootCa({ commonName: 'old', validityDays: 1, now: new Date(Date.now() - 3 * 86_400_000) });
    assertCertError(() => issueServerCert(old, { commonName: 'a.example.com' }), CertErrorCodes.CA_EXPIRED, /expired/);
    // the same CA is fine at a time it was valid
    const then = new Date(Date.now() - 2.5 * 86_400_000);
    const leaf = issueServerCert(old, { commonName: 'a.example.com', now: then });
    assert.ok(new X509Certificate(leaf.certPem).verify(new X509Certificate(old.certPem).publicKey));
  });
});

describe('certInfo', () => {
  test('reports serial and fingerprint as openssl does', () => {
    const info = certInfo(server.certPem);
    assert.match(info.fingerprint256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    assert.match(info.serialNumber, /^[0-9A-F]{32}$/);
    assert.equal(info.isCa, false);
    assert.equal(certInfo(ca.certPem).isCa, true);
  });

  test('rejects non-certificates', () => {
    assertCertError(() => certInfo('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'), CertErrorCodes.BAD_PEM);
  });

  test('parses node subjectAltName strings, including JSON-quoted values', () => {
    assert.deepEqual(parseSubjectAltName('DNS:a.example.com, URI:spiffe://td/ns/a/sa/b, IP Address:10.0.0.1'), [
      { type: 'DNS', value: 'a.example.com' },
      { type: 'URI', value: 'spiffe://td/ns/a/sa/b' },
      { type: 'IP Address', value: '10.0.0.1' },
    ]);
    assert.deepEqual(parseSubjectAltName('URI:"http://x/a, b", DNS:c'), [
      { type: 'URI', value: 'http://x/a, b' },
      { type: 'DNS', value: 'c' },
    ]);
    assert.deepEqual(parseSubjectAltName(''), []);
  });
});
