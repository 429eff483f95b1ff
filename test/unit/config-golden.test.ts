/**
 * Golden tests for the compiler: test/fixtures/config/<name>.in.yaml → <name>.out.json, and for
 * the validator: invalid-<name>.in.yaml → invalid-<name>.out.txt, the issue lines `portico
 * validate` prints (errors, then `warning:` and `info:` lines).
 * Regenerate on purpose with `UPDATE_GOLDEN=1 npm test -- config-golden`.
 * Secrets (generated per run) and the repo root are replaced by placeholders before comparing;
 * `version` is checked separately (it hashes certificate bytes, which differ per run).
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildSnapshot, formatIssue } from '../../config/index.ts';
import { Balancer } from '../../gateway/balancer.ts';
import { JwksCache } from '../../gateway/jwt-authn.ts';
import { UpstreamPools } from '../../gateway/pools.ts';
import { buildRouteTable } from '../../gateway/router.ts';
import { DEFAULT_GATEWAY_LABELS } from '../../gateway/runtime.ts';
import { pairs, tempDir, writeCredential } from './config-tls-helper.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dir = join(root, 'test/fixtures/config');
const inputs = readdirSync(dir).filter((f) => f.endsWith('.in.yaml')).sort();

test('there are golden fixtures', () => {
  assert.ok(inputs.filter((f) => !f.startsWith('invalid-')).length >= 2, `found ${inputs.join(', ')}`);
});

function compare(out: string, got: string): void {
  if (process.env.UPDATE_GOLDEN || !existsSync(out)) {
    writeFileSync(out, got);
    if (!process.env.UPDATE_GOLDEN) assert.fail(`wrote missing golden ${out}; re-run to compare`);
  }
  assert.equal(got, readFileSync(out, 'utf8'));
}

test('there are invalid-input golden fixtures', () => {
  assert.ok(inputs.filter((f) => f.startsWith('invalid-')).length >= 4, `found ${inputs.join(', ')}`);
});

for (const input of inputs.filter((f) => f.startsWith('invalid-'))) {
  test(`golden issues: ${input}`, async (t) => {
    const secrets = tempDir(t);
    writeCredential(secrets, 'example-credential', pairs().a);
    const r = await buildSnapshot([join(dir, input)], { cwd: root, secretsDir: secrets });
    assert.equal(r.ok, false, `${input} is expected to be rejected`);
    const lines = [
      ...(r.ok ? [] : r.issues).map((i) => formatIssue(i, root)),
      ...(r.warnings ?? []).map((i) => `warning: ${formatIssue(i, root)}`),
      ...(r.infos ?? []).map((i) => `info: ${formatIssue(i, root)}`),
    ];
    compare(join(dir, input.replace(/\.in\.yaml$/, '.out.txt')), `${lines.join('\n').replaceAll(secrets, '<secrets>')}\n`);
  });
}

for (const input of inputs.filter((f) => !f.startsWith('invalid-'))) {
  test(`golden: ${input}`, async (t) => {
    const secrets = tempDir(t);
    writeCredential(secrets, 'example-credential', pairs().a);
    const r = await buildSnapshot([join(dir, input)], { cwd: root, secretsDir: secrets });
    assert.ok(r.ok, r.ok ? '' : r.issues.map((i) => formatIssue(i, root)).join('\n'));
    assert.match(r.snapshot.version, /^[0-9a-f]{64}$/);
    assert.ok(Object.isFrozen(r.snapshot) && Object.isFrozen(r.snapshot.gateways), 'snapshot is deep-frozen');
    const json = `${JSON.stringify({ ...r.snapshot, version: '<version>' }, null, 2)
      .replaceAll(secrets, '<secrets>')
      .replaceAll(root, '<root>/')}\n`;
    compare(join(dir, input.replace(/\.in\.yaml$/, '.out.json')), json);
  });

  // The next stage: the runtime route table an ingress gateway (Istio's default labels, in
  // istio-system) builds from that snapshot: per port, the virtual hosts and their Envoy routes
  // in match order (one per match entry, catch-alls last), and the filter chain.
  test(`golden route table: ${input}`, async (t) => {
    const secrets = tempDir(t);
    writeCredential(secrets, 'example-credential', pairs().a);
    const r = await buildSnapshot([join(dir, input)], { cwd: root, secretsDir: secrets });
    assert.ok(r.ok);
    const table = buildRouteTable(r.snapshot, DEFAULT_GATEWAY_LABELS, {
      identity: { namespace: 'istio-system', context: 'GATEWAY', workloadName: 'istio-ingressgateway' },
      chainDeps: { jwks: new JwksCache(), pools: new UpstreamPools(), balancer: new Balancer() },
    });
    const view = {
      chain: table.chain.map((f) => f.name),
      ports: [...table.ports.values()].map((pt) => ({
        port: pt.bindPort,
        kind: pt.kind,
        virtualHosts: pt.virtualHosts.map((vh) => ({
          domains: vh.domains,
          routes: vh.routes.map((cr) => ({
            rule: `${cr.route.virtualService}#${cr.route.index}`,
            match: cr.match ?? null,
            catchAll: cr.catchAll,
            action: cr.route.action.kind,
            ...(cr.rewritePath ? { rewriteOfSlashAB: cr.rewritePath('/a/b') } : {}),
          })),
        })),
      })),
    };
    compare(join(dir, input.replace(/\.in\.yaml$/, '.routes.json')), `${JSON.stringify(view, null, 2)}\n`);
  });
}
