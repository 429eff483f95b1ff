/**
 * Module fetch: file://, http(s):// with sha256, and a real OCI registry (distribution v3,
 * htpasswd auth) with the plugin pushed by oras as an OCI artifact and as Istio's "compat"
 * image (one tar.gz layer holding plugin.wasm).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { WasmManager } from '../../wasm/plugins.ts';
import type { WasmPluginConfig } from '../../config/snapshot.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:http';
import { gzipSync } from 'node:zlib';
import { ModuleCache, WasmFetchError, extractModule, parseOciRef } from '../../wasm/fetch.ts';
import { ociTools, pluginBytes, pluginPath, startRegistry } from '../helpers/wasm.ts';
import type { TestContext } from 'node:test';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function tmp(t: TestContext): string {
  const d = mkdtempSync(join(tmpdir(), 'portico-wasm-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('file:// reads the module and checks sha256', async (t) => {
  const p = pluginPath(t, 'go-header');
  if (!p) return;
  const bytes = pluginBytes(t, 'go-header')!;
  const cache = new ModuleCache(tmp(t));
  assert.equal((await cache.fetch({ url: `file://${p}`, pullPolicy: 'IfNotPresent' })).length, bytes.length);
  assert.ok(await cache.fetch({ url: `file://${p}`, sha256: sha(bytes), pullPolicy: 'IfNotPresent' }));
  await assert.rejects(cache.fetch({ url: `file://${p}`, sha256: '0'.repeat(64), pullPolicy: 'IfNotPresent' }), /does not match the configured/);
  await assert.rejects(cache.fetch({ url: 'file:///nonexistent/x.wasm', pullPolicy: 'IfNotPresent' }), WasmFetchError);
});

test('http(s):// downloads, checks sha256, caches by digest for IfNotPresent', async (t) => {
  const bytes = pluginBytes(t, 'as-header');
  if (!bytes) return;
  let hits = 0;
  const server = createServer((_req, res) => {
    hits++;
    res.end(bytes);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/plugin.wasm`;
  const dir = tmp(t);
  const cache = new ModuleCache(dir);
  assert.equal(sha(await cache.fetch({ url, sha256: sha(bytes), pullPolicy: 'IfNotPresent' })), sha(bytes));
  assert.equal(hits, 1);
  // a fresh cache object on the same folder: served from disk
  assert.equal(sha(await new ModuleCache(dir).fetch({ url, sha256: sha(bytes), pullPolicy: 'IfNotPresent' })), sha(bytes));
  assert.equal(hits, 1);
  await new ModuleCache(dir).fetch({ url, sha256: sha(bytes), pullPolicy: 'Always' });
  assert.equal(hits, 2, 'Always goes to the network');
  await assert.rejects(new ModuleCache(tmp(t)).fetch({ url, sha256: 'f'.repeat(64), pullPolicy: 'IfNotPresent' }), /does not match/);
});

test('oci references: tag, digest, default latest, loopback is plain http', () => {
  assert.deepEqual(parseOciRef('oci://127.0.0.1:5000/a/b:v1'), { scheme: 'http', registry: '127.0.0.1:5000', repository: 'a/b', tag: 'v1', digest: undefined });
  assert.equal(parseOciRef('oci://ghcr.io/x/y').tag, 'latest');
  assert.equal(parseOciRef('oci://ghcr.io/x/y').scheme, 'https');
  assert.equal(parseOciRef(`oci://r.io/x/y@sha256:${'a'.repeat(64)}`).digest, `sha256:${'a'.repeat(64)}`);
});

test('compat image layer: plugin.wasm inside a tar.gz', (t) => {
  const bytes = pluginBytes(t, 'as-header');
  if (!bytes) return;
  const layer = gzipSync(tarOf('plugin.wasm', Buffer.from(bytes)));
  assert.equal(sha(extractModule(layer, 'x')), sha(bytes));
  assert.throws(() => extractModule(gzipSync(tarOf('other.txt', Buffer.from('hi'))), 'x'), /no plugin\.wasm/);
});

test('a real OCI registry with auth: oras-pushed artifact and compat image, manifest digest check, bad credentials', async (t) => {
  const tools = ociTools(t);
  const wasmFile = pluginPath(t, 'as-basic-auth');
  if (!tools || !wasmFile) return;
  const dir = tmp(t);
  const reg = await startRegistry(t, tools.registry, dir);
  const registry = reg.address;
  const oras = (...args: string[]) => execFileSync(tools.oras, [...args, '--plain-http', '-u', 'puller', '-p', 's3cret'], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();

  writeFileSync(join(dir, 'plugin.wasm'), pluginBytes(t, 'as-basic-auth')!);
  oras('push', `${registry}/plugins/basic-auth:v1`, '--artifact-type', 'application/vnd.module.wasm.config.v1+json', 'plugin.wasm:application/vnd.module.wasm.content.layer.v1+wasm');
  writeFileSync(join(dir, 'layer.tar.gz'), gzipSync(tarOf('plugin.wasm', pluginBytes(t, 'as-basic-auth') as Buffer)));
  oras('push', `${registry}/plugins/basic-auth-compat:v1`, 'layer.tar.gz:application/vnd.oci.image.layer.v1.tar+gzip');
  const digest = oras('resolve', `${registry}/plugins/basic-auth:v1`).replace(/^sha256:/, '');
  const want = sha(pluginBytes(t, 'as-basic-auth')!);

  const docker = JSON.stringify({ auths: { [registry]: { auth: Buffer.from('puller:s3cret').toString('base64') } } });
  const cache = new ModuleCache(join(dir, 'cache'));
  const got = await cache.fetch({ url: `oci://${registry}/plugins/basic-auth:v1`, sha256: digest, pullPolicy: 'IfNotPresent', dockerConfig: docker });
  assert.equal(sha(got), want, 'OCI artifact form');
  const compat = await cache.fetch({ url: `oci://${registry}/plugins/basic-auth-compat:v1`, pullPolicy: 'Always', dockerConfig: docker });
  assert.equal(sha(compat), want, 'compat image form');

  await assert.rejects(
    new ModuleCache(join(dir, 'c2')).fetch({ url: `oci://${registry}/plugins/basic-auth:v1`, sha256: 'e'.repeat(64), pullPolicy: 'Always', dockerConfig: docker }),
    /manifest digest sha256:[0-9a-f]{64} does not match the configured sha256/,
  );
  await assert.rejects(new ModuleCache(join(dir, 'c3')).fetch({ url: `oci://${registry}/plugins/basic-auth:v1`, pullPolicy: 'Always' }), /wants credentials/);
  const wrong = JSON.stringify({ auths: { [registry]: { username: 'puller', password: 'nope' } } });
  await assert.rejects(new ModuleCache(join(dir, 'c4')).fetch({ url: `oci://${registry}/plugins/basic-auth:v1`, pullPolicy: 'Always', dockerConfig: wrong }), /refused/);

  // imagePullSecret off Kubernetes: the folder of that name under --secrets-dir holding .dockerconfigjson
  mkdirSync(join(dir, 'secrets', 'regcred'), { recursive: true });
  writeFileSync(join(dir, 'secrets', 'regcred', '.dockerconfigjson'), docker);
  const mgr = new WasmManager({ secretsDir: join(dir, 'secrets'), cache: new ModuleCache(join(dir, 'c5')) });
  const cfg = (secret?: string): WasmPluginConfig => ({
    id: 'WasmPlugin/istio-system/p', name: 'p', source: { file: 'x', line: 1 }, namespace: 'istio-system', meshWide: true, selector: {},
    url: `oci://${registry}/plugins/basic-auth:v1`, sha256: digest, imagePullPolicy: 'Always', pluginConfig: '', pluginName: '', vmId: 'p',
    phase: 'UNSPECIFIED', priority: 0, failStrategy: 'FAIL_CLOSE', env: [], match: [], context: 'ANY', ...(secret ? { imagePullSecret: secret } : {}),
  });
  assert.equal(sha(await mgr.fetchModule(cfg('regcred'))), want);
  await assert.rejects(mgr.fetchModule(cfg('nosuch')), /imagePullSecret nosuch: cannot read/);
  await assert.rejects(mgr.fetchModule(cfg()), /wants credentials/);

  // IfNotPresent: with the registry gone, the cached module is used
  await reg.stop();
  const again = await new ModuleCache(join(dir, 'cache')).fetch({ url: `oci://${registry}/plugins/basic-auth:v1`, sha256: digest, pullPolicy: 'IfNotPresent', dockerConfig: docker });
  assert.equal(sha(again), want);
});

/** A one-file ustar archive. */
function tarOf(name: string, data: Buffer): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0);
  h.write('0000644\0', 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${data.length.toString(8).padStart(11, '0')}\0`, 124);
  h.write('00000000000\0', 136);
  h.write('        ', 148);
  h.write('0', 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  const pad = Buffer.alloc((512 - (data.length % 512)) % 512);
  return Buffer.concat([h, data, pad, Buffer.alloc(1024)]);
}
