/** Compiler properties: determinism, purity, examples, durations, regex rewrite, CLI, watcher. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { buildSnapshot, buildSnapshotFromText, formatIssue, parseDuration, watchConfig, type BuildResult } from '../../config/index.ts';
import { canonicalJson } from '../../config/compile.ts';
import { parseConfigText } from '../../config/load.ts';
import { validateConfig } from '../../config/validate.ts';
import { compileSnapshot } from '../../config/compile.ts';
import { pairs, tempDir, writeCredential } from './config-tls-helper.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const fixture = (name: string): string => readFileSync(join(root, 'test/fixtures/config', name), 'utf8');

function shuffle<T>(xs: T[], seed: number): T[] {
  const out = [...xs];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

test('document order does not change the snapshot (version or content)', async (t) => {
  const secrets = tempDir(t);
  writeCredential(secrets, 'example-credential', pairs().a);
  for (const name of ['routing.in.yaml', 'traffic-policy.in.yaml', 'policy.in.yaml']) {
    const docs = fixture(name).split(/^---$/m);
    const base = await buildSnapshotFromText(docs.join('---'), 'f.yaml', { secretsDir: secrets });
    assert.ok(base.ok);
    for (const seed of [1, 2, 3]) {
      const r = await buildSnapshotFromText(shuffle(docs, seed).join('\n---\n'), 'f.yaml', { secretsDir: secrets });
      assert.ok(r.ok);
      assert.equal(r.snapshot.version, base.snapshot.version, `${name} seed ${seed}`);
      assert.equal(canonicalJson(r.snapshot, (k) => k === 'source'), canonicalJson(base.snapshot, (k) => k === 'source'));
    }
  }
});

test('the version changes when routing changes or certificate bytes change', async (t) => {
  const secrets = tempDir(t);
  writeCredential(secrets, 'example-credential', pairs().a);
  const text = fixture('routing.in.yaml');
  const a = await buildSnapshotFromText(text, 'f.yaml', { secretsDir: secrets });
  const b = await buildSnapshotFromText(text.replace('weight: 75', 'weight: 70').replace('weight: 25', 'weight: 30'), 'f.yaml', { secretsDir: secrets });
  writeCredential(secrets, 'example-credential', pairs().b);
  const c = await buildSnapshotFromText(text, 'f.yaml', { secretsDir: secrets });
  assert.ok(a.ok && b.ok && c.ok);
  assert.notEqual(a.snapshot.version, b.snapshot.version);
  assert.notEqual(a.snapshot.version, c.snapshot.version);
});

test('compile neither mutates nor freezes its input', async () => {
  const { resources, issues } = parseConfigText(fixture('traffic-policy.in.yaml'), join(root, 'x.yaml'));
  assert.deepEqual(issues, []);
  const before = JSON.stringify(resources.map((r) => r.spec));
  const v = await validateConfig({ resources, files: [], issues: [] });
  assert.deepEqual(v.errors, []);
  const s = compileSnapshot(v.config);
  assert.equal(JSON.stringify(resources.map((r) => r.spec)), before);
  assert.ok(resources.every((r) => !Object.isFrozen(r.spec)));
  assert.ok(Object.isFrozen(s.clusters[0].endpoints[0].labels));
  assert.throws(() => {
    (s.clusters as unknown as unknown[]).push(1);
  });
});

test('the bookinfo example validates clean and routes jason to reviews v2', async () => {
  const r = await buildSnapshot([join(root, 'config/examples/bookinfo')], { cwd: root });
  assert.ok(r.ok, r.ok ? '' : r.issues.map((i) => formatIssue(i, root)).join('\n'));
  assert.deepEqual(r.warnings, []);
  const port = r.snapshot.gateways[0].ports[0];
  assert.deepEqual([port.number, port.bindPort, port.protocol], [80, 8080, 'HTTP']);
  assert.deepEqual(port.virtualHosts[0].domains, ['*']);
  assert.equal(port.virtualHosts[0].routes[0].match.length, 5);
  // The snapshot keeps FQDNs only; sidecars add the short forms (main 027dfe5).
  const reviews = r.snapshot.mesh.virtualHosts.find((v) => v.domains.includes('reviews.default.svc.cluster.local'));
  assert.ok(reviews);
  const [jason, rest] = reviews.routes;
  assert.deepEqual(jason.match[0].headers, [{ name: 'end-user', match: { exact: 'jason' } }]);
  assert.equal(jason.action.kind === 'route' && jason.action.destinations[0].cluster, 'outbound|9080|v2|reviews.default.svc.cluster.local');
  assert.equal(rest.action.kind === 'route' && rest.action.destinations[0].subset, 'v1');
  const v2 = r.snapshot.clusters.find((c) => c.name === 'outbound|9080|v2|reviews.default.svc.cluster.local');
  assert.deepEqual(v2?.endpoints.map((e) => [e.address, e.port]), [['127.0.0.1', 19083]]);
  const details = r.snapshot.clusters.find((c) => c.name === 'outbound|9080||details.default.svc.cluster.local');
  assert.deepEqual(details?.endpoints.map((e) => e.port), [19081]);
});

test('the httpbin-https example validates clean with its credential present', async (t) => {
  const secrets = tempDir(t);
  writeCredential(secrets, 'httpbin-credential', pairs().a);
  const r = await buildSnapshot([join(root, 'config/examples/httpbin-https')], { cwd: root, secretsDir: secrets });
  assert.ok(r.ok, r.ok ? '' : r.issues.map((i) => formatIssue(i, root)).join('\n'));
  assert.deepEqual(r.warnings, []);
  const port = r.snapshot.gateways[0].ports[0];
  assert.deepEqual([port.number, port.bindPort, port.protocol], [443, 8443, 'HTTPS']);
  assert.equal(port.servers[0].tls?.certFile, join(secrets, 'httpbin-credential', 'tls.crt'));
  assert.deepEqual(port.virtualHosts[0].domains, ['httpbin.example.com']);
  const cluster = r.snapshot.clusters.find((c) => c.name === 'outbound|8000||httpbin.default.svc.cluster.local');
  assert.deepEqual(cluster?.endpoints.map((e) => [e.address, e.port]), [['127.0.0.1', 18000]]);
});

test('durations: units, fractions and compositions; garbage rejected', () => {
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('100ms'), 100);
  assert.equal(parseDuration('1m'), 60_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('0'), 0);
  for (const bad of ['', '5', '-1s', '1 s', 's', '1d', '1.5', 'ms']) assert.equal(parseDuration(bad), undefined, bad);
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 10_000_000 }), fc.constantFrom(['h', 3_600_000], ['m', 60_000], ['s', 1000], ['ms', 1]), (n, [unit, scale]) => {
      return parseDuration(`${n}${unit}`) === n * (scale as number);
    }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 1_000_000 }), (millis) => parseDuration(`${millis / 1000}s`) === millis),
  );
  fc.assert(fc.property(fc.string(), (s) => {
    const v = parseDuration(s);
    return v === undefined || (Number.isFinite(v) && v >= 0);
  }));
});

test('portico validate prints one line per problem and exits 1; ok line and 0 when valid', (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'bad.yaml'), 'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\nspec:\n  hosts: [a]\n  htp: []\n  gateways: [nope]\n');
  const cli = join(root, 'bin/portico.ts');
  // tsx is resolved from cwd, so run from the repo root; files outside it print absolute.
  const bad = spawnSync(process.execPath, ['--import', 'tsx', cli, 'validate', join(dir, 'bad.yaml')], { cwd: root, encoding: 'utf8' });
  assert.equal(bad.status, 1, bad.stderr);
  assert.deepEqual(bad.stdout.trim().split('\n'), [
    `${dir}/bad.yaml:4: VirtualService/v: spec: http, tcp or tls must be provided in a VirtualService`,
    `${dir}/bad.yaml:6: VirtualService/v: spec.htp: unknown field 'htp' (did you mean 'http'?)`,
    // Istio accepts a missing gateway (istioctl analyze warns): a warning line, printed after the errors.
    `warning: ${dir}/bad.yaml:7: VirtualService/v: spec.gateways[0]: gateway 'nope' does not exist (looked for Gateway default/nope); the rules bound to it are not served`,
  ]);
  const good = spawnSync(process.execPath, ['--import', 'tsx', cli, 'validate', 'config/examples/bookinfo'], { cwd: root, encoding: 'utf8' });
  assert.equal(good.status, 0, good.stdout + good.stderr);
  assert.equal(good.stdout.trim(), 'ok: 17 resources in 4 files');
  const usage = spawnSync(process.execPath, ['--import', 'tsx', cli, 'validate'], { cwd: root, encoding: 'utf8' });
  assert.equal(usage.status, 2);
});

test('watchConfig reports a new version, then a failed build, and stops after close', async (t) => {
  const dir = tempDir(t);
  mkdirSync(join(dir, 'conf'));
  const file = join(dir, 'conf', 'se.yaml');
  const se = (port: number): string =>
    `apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec:\n  hosts: [a.example.com]\n  resolution: DNS\n  ports: [{number: ${port}, name: http}]\n`;
  writeFileSync(file, se(80));
  const first = await buildSnapshot([join(dir, 'conf')]);
  assert.ok(first.ok);
  const results: BuildResult[] = [];
  let wake: () => void = () => {};
  const next = (): Promise<void> => new Promise((res) => (wake = res));
  const w = watchConfig([join(dir, 'conf')], { debounceMs: 20, initialVersion: first.snapshot.version }, (r) => {
    results.push(r);
    wake();
  });
  t.after(() => w.close());
  let p = next();
  writeFileSync(file, se(8080));
  await p;
  assert.equal(results.length, 1);
  const r0 = results[0];
  assert.ok(r0.ok && r0.snapshot.version !== first.snapshot.version);
  assert.equal(r0.ok && r0.snapshot.services[0].ports[0].number, 8080);
  p = next();
  writeFileSync(file, 'kind: [');
  await p;
  assert.equal(results.at(-1)?.ok, false);
  w.close();
  writeFileSync(file, se(9090));
  await new Promise((res) => setTimeout(res, 200));
  assert.equal(results.length, 2);
});
