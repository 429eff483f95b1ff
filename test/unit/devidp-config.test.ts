/** Dex config parsing for the dev IdP: the example file, every problem reported at once, Dex's rules. */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import bcrypt from 'bcryptjs';
import { DexConfigError, loadDexConfig, parseDexConfig, parseGoDuration } from '../../demo/devidp/config.ts';
import { dexSubject } from '../../demo/devidp/server.ts';

const example = fileURLToPath(new URL('../../config/examples/dex.yaml', import.meta.url));
const HASH10 = bcrypt.hashSync('pw', 10);

test('config/examples/dex.yaml loads: client, users, password "password"', () => {
  const cfg = loadDexConfig(example);
  assert.equal(cfg.issuer, 'http://localhost:5556/dex');
  assert.equal(cfg.webHTTP, '127.0.0.1:5556', 'the demo binds loopback: its passwords are public');
  assert.equal(cfg.skipApprovalScreen, true);
  assert.equal(cfg.idTokenTTLSeconds, 3600);
  assert.deepEqual(
    cfg.staticClients.map((c) => [c.id, [...c.redirectURIs]]),
    [['portico-authservice', ['https://localhost:8443/authservice/oidc/callback', 'http://localhost:8080/authservice/oidc/callback']]],
  );
  assert.deepEqual(cfg.staticPasswords.map((u) => u.email), ['jason@example.com', 'admin@example.com']);
  for (const u of cfg.staticPasswords) assert.ok(bcrypt.compareSync('password', u.hash), u.email);
});

test('every problem is reported at once with its path', () => {
  const yaml = `
issuer: "not a url"
expiry: { idTokens: "soon" }
staticClients:
  - id: a
    redirectURIs: ["relative/path", "https://ok.example/cb#frag"]
  - id: a
    secret: s
    redirectURIs: []
staticPasswords:
  - email: x@example.com
    hash: "plaintext"
    userID: "1"
  - email: y@example.com
    hash: "${bcrypt.hashSync('pw', 4)}"
    username: y
    userID: "2"
    groups: "admins"
`;
  let err: unknown;
  try {
    parseDexConfig(yaml, 'dex.yaml');
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof DexConfigError);
  const expected = [
    'issuer: not a URL',
    'expiry.idTokens: not a positive duration',
    'staticClients[0].secret: required',
    'staticClients[0].redirectURIs[0]: not an absolute URL',
    'staticClients[0].redirectURIs[1]: must not have a fragment',
    'staticClients[1].id: duplicate client id',
    'staticClients[1].redirectURIs: must be a non-empty list',
    'staticPasswords[0].username: required',
    'staticPasswords[0].hash: not a bcrypt hash',
    'staticPasswords[1].hash: bcrypt cost 4 is outside 10..16',
    'staticPasswords[1].groups: must be a list of strings',
    'enablePasswordDB: must be true',
  ];
  for (const e of expected) assert.ok(err.problems.some((p) => p.startsWith(e)), `missing "${e}" in:\n${err.problems.join('\n')}`);
  assert.equal(err.problems.length, expected.length, err.problems.join('\n'));
  assert.match(err.message, /^invalid Dex config dex\.yaml:\n {2}dex\.yaml: issuer: /);
});

test('YAML syntax errors name the line', () => {
  assert.throws(() => parseDexConfig('issuer: [unclosed\n', 'bad.yaml'), (e: unknown) => e instanceof DexConfigError && /line \d+/.test(e.problems[0] ?? ''));
});

test('a base64-encoded bcrypt hash is accepted, as Dex does', () => {
  const cfg = parseDexConfig(
    `issuer: http://127.0.0.1:5556/dex\nenablePasswordDB: true\nstaticPasswords:\n  - {email: a@b.c, username: a, userID: "1", hash: "${Buffer.from(HASH10).toString('base64')}"}\n`,
  );
  assert.equal(cfg.staticPasswords[0]?.hash, HASH10);
});

test('Go durations as Dex writes them', () => {
  assert.equal(parseGoDuration('10m'), 600);
  assert.equal(parseGoDuration('1h30m'), 5400);
  assert.equal(parseGoDuration('90s'), 90);
  assert.equal(parseGoDuration('24h'), 86400);
  for (const bad of ['', '10', 'm', '1d', '10m junk']) assert.equal(parseGoDuration(bad), undefined, bad);
});

test('dexSubject encodes like Dex (protobuf user_id=1, conn_id=2, base64url)', () => {
  // test/integration/dex-smoke.test.ts checks this against the sub real Dex issues; here the bytes.
  const sub = dexSubject('123', 'local');
  assert.deepEqual([...Buffer.from(sub, 'base64url')], [0x0a, 3, 0x31, 0x32, 0x33, 0x12, 5, ...Buffer.from('local')]);
  assert.equal(dexSubject('08a8684b-db88-4b73-90a9-3cd1661f5466', 'local'), 'CiQwOGE4Njg0Yi1kYjg4LTRiNzMtOTBhOS0zY2QxNjYxZjU0NjYSBWxvY2Fs');
  // Lengths >= 128 need a multi-byte varint.
  const long = Buffer.from(dexSubject('x'.repeat(200), 'local'), 'base64url');
  assert.deepEqual([...long.subarray(0, 3)], [0x0a, 0xc8, 0x01]);
});
