import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import {
  CertErrorCodes,
  certInfo,
  createRootCa,
  defaultCredentialName,
  ensureDemoCerts,
  isCertError,
  issueServerCert,
  loadOrCreateCa,
} from '../../certs/index.ts';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'portico-certs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const mode = (path: string) => statSync(path).mode & 0o777;
const DAY = 86_400_000;

describe('loadOrCreateCa', () => {
  test('creates ca.crt (0644) and ca.key (0600), then reuses them', (t) => {
    const dir = join(tempDir(t), 'nested', 'ca');
    const first = loadOrCreateCa(dir);
    assert.equal(first.created, true);
    assert.equal(first.reason, 'missing');
    assert.equal(first.certPath, join(dir, 'ca.crt'));
    assert.equal(mode(join(dir, 'ca.key')), 0o600);
    assert.equal(mode(join(dir, 'ca.crt')), 0o644);
    assert.equal(readFileSync(first.keyPath, 'utf8'), first.keyPem);
    assert.equal(new X509Certificate(first.certPem).ca, true);

    const second = loadOrCreateCa(dir);
    assert.equal(second.created, false);
    assert.equal(second.certPem, first.certPem);
    assert.equal(second.keyPem, first.keyPem);
    // the loaded CA signs
    const leaf = issueServerCert(second, { commonName: 'a.example.com' });
    assert.ok(new X509Certificate(leaf.certPem).verify(new X509Certificate(first.certPem).publicKey));
  });

  test('replaces an expired CA, keeping the old files as *.expired', (t) => {
    const dir = tempDir(t);
    const old = loadOrCreateCa(dir, { validityDays: 1, now: new Date(Date.now() - 3 * DAY) });
    const fresh = loadOrCreateCa(dir);
    assert.equal(fresh.created, true);
    assert.equal(fresh.reason, 'expired');
    assert.notEqual(fresh.certPem, old.certPem);
    assert.equal(readFileSync(join(dir, 'ca.crt.expired'), 'utf8'), old.certPem);
    assert.equal(readFileSync(join(dir, 'ca.key.expired'), 'utf8'), old.keyPem);
    assert.equal(mode(join(dir, 'ca.key')), 0o600);
  });

  test('refuses to overwrite files that are not a usable CA', (t) => {
    const dir = tempDir(t);
    const ca = loadOrCreateCa(dir);
    // key belongs to another certificate
    const other = createRootCa({ commonName: 'other' });
    writeFileSync(join(dir, 'ca.key'), other.keyPem);
    assert.throws(
      () => loadOrCreateCa(dir),
      (e: unknown) => isCertError(e, CertErrorCodes.KEY_MISMATCH) && e.message.includes(join(dir, 'ca.crt')),
    );
    assert.equal(readFileSync(join(dir, 'ca.crt'), 'utf8'), ca.certPem, 'left untouched');
    // not a CA
    const leaf = issueServerCert(ca, { commonName: 'a.example.com' });
    writeFileSync(join(dir, 'ca.crt'), leaf.certPem);
    writeFileSync(join(dir, 'ca.key'), leaf.keyPem);
    assert.throws(() => loadOrCreateCa(dir), (e: unknown) => isCertError(e, CertErrorCodes.NOT_A_CA));
    // garbage
    writeFileSync(join(dir, 'ca.crt'), 'garbage');
    assert.throws(() => loadOrCreateCa(dir), (e: unknown) => isCertError(e, CertErrorCodes.BAD_PEM));
    // one half missing
    unlinkSync(join(dir, 'ca.crt'));
    assert.throws(
      () => loadOrCreateCa(dir),
      (e: unknown) => isCertError(e, CertErrorCodes.CA_INCOMPLETE) && /ca\.key exists but .*ca\.crt does not/.test(e.message),
    );
    assert.equal(existsSync(join(dir, 'ca.crt')), false);
  });
});

describe('ensureDemoCerts', () => {
  test('creates the example.com CA and a credential per host, once', (t) => {
    const out = tempDir(t);
    const hosts = ['httpbin.example.com', 'bookinfo.example.com'];
    const first = ensureDemoCerts(out, hosts);
    assert.equal(first.ca.created, true);
    assert.equal(first.ca.certFile, join(out, 'example.com.crt'));
    assert.equal(certInfo(readFileSync(first.ca.certFile)).subject, 'O=example Inc.\nCN=example.com');
    const caX509 = new X509Certificate(readFileSync(first.ca.certFile));
    for (const host of hosts) {
      const files = first.hosts[host]!;
      assert.equal(files.issued, true);
      assert.equal(files.certFile, join(out, `${host}.crt`));
      assert.equal(files.credentialName, defaultCredentialName(host));
      assert.equal(files.credential.dir, join(out, 'credentials', files.credentialName));
      const cert = new X509Certificate(readFileSync(files.credential.certFile));
      assert.ok(cert.verify(caX509.publicKey));
      assert.equal(cert.checkHost(host), host);
      assert.equal(readFileSync(files.credential.caFile, 'utf8'), caX509.toString());
      assert.equal(readFileSync(files.credential.keyFile, 'utf8'), readFileSync(files.keyFile, 'utf8'));
      assert.equal(mode(files.credential.keyFile), 0o600);
      assert.equal(mode(files.keyFile), 0o600);
    }
    assert.equal(first.hosts['httpbin.example.com']!.credentialName, 'httpbin-credential');

    const second = ensureDemoCerts(out, hosts);
    assert.equal(second.ca.created, false);
    assert.equal(second.hosts['httpbin.example.com']!.issued, false);
    assert.equal(
      readFileSync(second.hosts['httpbin.example.com']!.certFile, 'utf8'),
      readFileSync(first.hosts['httpbin.example.com']!.certFile, 'utf8'),
    );
  });

  test('re-issues what is missing, past half-life, or signed by a replaced CA', (t) => {
    const out = tempDir(t);
    const host = 'httpbin.example.com';
    const first = ensureDemoCerts(out, [host]);
    const certFile = first.hosts[host]!.certFile;
    const original = readFileSync(certFile, 'utf8');

    // a deleted credential folder file is restored from the host files without re-issuing
    unlinkSync(first.hosts[host]!.credential.certFile);
    const restored = ensureDemoCerts(out, [host]);
    assert.equal(restored.hosts[host]!.issued, false);
    assert.equal(readFileSync(first.hosts[host]!.credential.certFile, 'utf8'), original);

    // missing key: re-issued
    unlinkSync(first.hosts[host]!.keyFile);
    assert.equal(ensureDemoCerts(out, [host]).hosts[host]!.issued, true);
    const reissued = readFileSync(certFile, 'utf8');
    assert.notEqual(reissued, original);

    // 200 days later a 365-day certificate is past half its life
    assert.equal(ensureDemoCerts(out, [host], new Date(Date.now() + 100 * DAY)).hosts[host]!.issued, false);
    assert.equal(ensureDemoCerts(out, [host], new Date(Date.now() + 200 * DAY)).hosts[host]!.issued, true);

    // a new CA: old server certificates no longer chain, so they are replaced
    rmSync(join(out, 'example.com.crt'));
    rmSync(join(out, 'example.com.key'));
    const again = ensureDemoCerts(out, [host]);
    assert.equal(again.ca.created, true);
    assert.equal(again.hosts[host]!.issued, true);
    const caX509 = new X509Certificate(readFileSync(again.ca.certFile));
    assert.ok(new X509Certificate(readFileSync(certFile)).verify(caX509.publicKey));
  });

  test('rejects bad hosts and colliding credential names before writing anything', (t) => {
    const out = tempDir(t);
    assert.throws(() => ensureDemoCerts(out, ['../etc.example.com']), (e: unknown) => isCertError(e, CertErrorCodes.BAD_ARGUMENT));
    assert.throws(() => ensureDemoCerts(out, ['api.example.com', 'api.example.org']), /share the credential name 'api-credential'/);
    assert.equal(existsSync(join(out, 'example.com.crt')), false);
  });
});
