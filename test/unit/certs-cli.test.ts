import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test, type TestContext } from 'node:test';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const cli = join(repo, 'bin', 'portico.ts');
// Absolute loader URL, so the CLI can run with a temp dir as its working directory.
const tsx = import.meta.resolve('tsx');

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function portico(cwd: string, ...args: string[]): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', tsx, cli, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'portico-certs-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const mode = (path: string) => statSync(path).mode & 0o777;

describe('portico certs', () => {
  test('ca then issue reproduce the Secure Gateways files under ./certs/out', async (t) => {
    const cwd = tempDir(t);
    const ca = await portico(cwd, 'certs', 'ca');
    assert.equal(ca.code, 0, ca.stderr);
    assert.match(ca.stdout, /wrote certs\/out\/example\.com\.crt .*CN=example\.com/);
    assert.match(ca.stdout, /wrote certs\/out\/example\.com\.key/);
    const out = join(cwd, 'certs', 'out');
    assert.equal(mode(join(out, 'example.com.key')), 0o600);
    const caCert = new X509Certificate(readFileSync(join(out, 'example.com.crt')));
    assert.equal(caCert.ca, true);
    assert.equal(caCert.subject, 'O=example Inc.\nCN=example.com');

    const issue = await portico(cwd, 'certs', 'issue', '--host', 'httpbin.example.com', '--san', 'www.example.com', '--ip', '127.0.0.1');
    assert.equal(issue.code, 0, issue.stderr);
    assert.match(issue.stdout, /using CA certs\/out\/example\.com\.crt/);
    assert.match(issue.stdout, /credentialName: httpbin-credential/);
    const cert = new X509Certificate(readFileSync(join(out, 'httpbin.example.com.crt')));
    assert.ok(cert.verify(caCert.publicKey));
    assert.equal(cert.subject, 'CN=httpbin.example.com');
    assert.equal(cert.subjectAltName, 'DNS:httpbin.example.com, DNS:www.example.com, IP Address:127.0.0.1');
    assert.equal(mode(join(out, 'httpbin.example.com.key')), 0o600);

    const cred = join(out, 'credentials', 'httpbin-credential');
    assert.equal(readFileSync(join(cred, 'tls.crt'), 'utf8'), readFileSync(join(out, 'httpbin.example.com.crt'), 'utf8'));
    assert.equal(readFileSync(join(cred, 'tls.key'), 'utf8'), readFileSync(join(out, 'httpbin.example.com.key'), 'utf8'));
    assert.equal(readFileSync(join(cred, 'ca.crt'), 'utf8'), readFileSync(join(out, 'example.com.crt'), 'utf8'));
    assert.equal(mode(join(cred, 'tls.key')), 0o600);

    const info = await portico(cwd, 'certs', 'info', join(cred, 'tls.crt'));
    assert.equal(info.code, 0, info.stderr);
    assert.match(info.stdout, /SAN: +DNS:httpbin\.example\.com, DNS:www\.example\.com, IP:127\.0\.0\.1/);
  });

  test('refuses to replace an existing CA unless --force', async (t) => {
    const cwd = tempDir(t);
    const out = join(cwd, 'pki');
    assert.equal((await portico(cwd, 'certs', 'ca', '--out', out, '--cn', 'Test Root')).code, 0);
    const before = readFileSync(join(out, 'Test_Root.crt'), 'utf8');
    const again = await portico(cwd, 'certs', 'ca', '--out', out, '--cn', 'Test Root');
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exist.*--force/);
    assert.equal(readFileSync(join(out, 'Test_Root.crt'), 'utf8'), before);
    const forced = await portico(cwd, 'certs', 'ca', '--out', out, '--cn', 'Test Root', '--force');
    assert.equal(forced.code, 0, forced.stderr);
    assert.notEqual(readFileSync(join(out, 'Test_Root.crt'), 'utf8'), before);
  });

  test('issue creates the CA when missing and honours --out, --name, --days', async (t) => {
    const cwd = tempDir(t);
    const out = join(cwd, 'elsewhere');
    const r = await portico(repo, 'certs', 'issue', '--host', 'bookinfo.example.com', '--out', out, '--name', 'bookinfo-tls', '--days', '30');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /created CA/);
    assert.ok(existsSync(join(out, 'example.com.key')));
    const cert = new X509Certificate(readFileSync(join(out, 'credentials', 'bookinfo-tls', 'tls.crt')));
    const days = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / 86_400_000;
    assert.ok(days > 30 && days < 30.01, `~30 days, got ${days}`);
    assert.equal(existsSync(join(repo, 'elsewhere')), false);
  });

  test('bad arguments exit 2 with a message and the usage, writing nothing', async (t) => {
    const cwd = tempDir(t);
    const cases: [string[], RegExp][] = [
      [['certs'], /missing subcommand/],
      [['certs', 'frobnicate'], /unknown subcommand 'frobnicate'/],
      [['certs', 'issue'], /--host is required/],
      [['certs', 'issue', '--host', 'bad host!'], /host 'bad host!' is not a valid DNS name/],
      [['certs', 'issue', '--host', 'a.example.com', '--ip', '999.1.1.1'], /'999\.1\.1\.1' is not an IPv4 or IPv6/],
      [['certs', 'issue', '--host', 'a.example.com', '--days', 'ten'], /--days must be a whole number/],
      [['certs', 'issue', '--host', 'a.example.com', '--name', '../x'], /credential name '\.\.\/x'/],
      [['certs', 'issue', '--host', 'a.example.com', '--bogus'], /Unknown option '--bogus'/],
      [['certs', 'ca', '--cn', '../evil'], /cannot be used as a file name/],
      [['certs', 'info'], /needs at least one certificate file/],
    ];
    for (const [args, message] of cases) {
      const r = await portico(cwd, ...args);
      assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, message, args.join(' '));
      assert.match(r.stderr, /usage:/, args.join(' '));
    }
    assert.equal(existsSync(join(cwd, 'certs', 'out', 'a.example.com.crt')), false);
    assert.equal(existsSync(join(cwd, 'certs', 'out', 'example.com.key')), false, 'no CA created for a rejected host');
    const help = await portico(cwd, 'certs', '--help');
    assert.equal(help.code, 0);
    assert.match(help.stdout, /portico certs issue --host HOST/);
  });
});
