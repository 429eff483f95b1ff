/**
 * A Kubernetes ConfigMap volume: every key is a symlink into `..data/`, itself a symlink to a
 * timestamped `..<date>/` directory that the kubelet swaps atomically on update. The loader must
 * read each file once (not the hidden copies too) and the watcher must see the swap.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildSnapshot, formatIssue, watchConfig, type BuildResult } from '../../config/index.ts';

const gateway = (port: number) => `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: ${port}, name: http, protocol: HTTP}, hosts: ["*"]}]
`;

function writeVersion(dir: string, stamp: string, port: number): void {
  mkdirSync(join(dir, stamp));
  writeFileSync(join(dir, stamp, 'gateway.yaml'), gateway(port));
}

test('ConfigMap mounts load each key once and reload when ..data is swapped', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-cm-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeVersion(dir, '..2026_11_25_00_00_00.1', 8080);
  symlinkSync('..2026_11_25_00_00_00.1', join(dir, '..data'));
  symlinkSync('..data/gateway.yaml', join(dir, 'gateway.yaml'));

  const first = await buildSnapshot([dir]);
  assert.ok(first.ok, first.ok ? '' : first.issues.map((i) => formatIssue(i)).join('\n'));
  assert.equal(first.snapshot.gateways.length, 1);
  assert.equal(first.snapshot.gateways[0]!.ports[0]!.number, 8080);

  const changes: BuildResult[] = [];
  const watcher = watchConfig([dir], { debounceMs: 20, initialVersion: first.snapshot.version }, (r) => changes.push(r));
  t.after(() => watcher.close());
  // What the kubelet does: write the new copy, point a temp link at it, rename over ..data.
  writeVersion(dir, '..2026_11_25_00_01_00.2', 9090);
  symlinkSync('..2026_11_25_00_01_00.2', join(dir, '..data_tmp'));
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  const deadline = Date.now() + 3000;
  while (changes.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const last = changes.at(-1);
  assert.ok(last?.ok, 'the swap produced a new snapshot');
  assert.equal(last.snapshot.gateways[0]!.ports[0]!.number, 9090);
});
