/**
 * The installed CLI runs Wasm VMs: `portico` as npm installs it is the esbuild bundle
 * (scripts/build.mjs), and tsx is only a devDependency. The sources are copied beside a
 * node_modules that lacks tsx, built there, and a gateway started from the bundle must run a
 * plugin in a worker-thread VM (the worker entry used to register tsx's loader).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { freePort } from '../helpers/net.ts';
import { startEcho } from '../helpers/upstream.ts';
import { bookinfoYaml, pluginPath, wasmPluginYaml } from '../helpers/wasm.ts';

const REPO = new URL('../..', import.meta.url).pathname;
/** What the bundle needs beside it at run time (sources it reads next to themselves) and to build. */
const COPY = ['package.json', 'scripts/build.mjs', 'bin', 'lib', 'config', 'dataplane', 'wasm', 'kube', 'gateway', 'authservice', 'controlplane', 'telemetry', 'certs', 'demo'];

/** A copy of the package whose node_modules has every installed package except tsx. */
function installedCopy(dir: string): void {
  for (const p of COPY) cpSync(join(REPO, p), join(dir, p), { recursive: true, filter: (src) => !src.includes('/certs/out') });
  const nm = join(REPO, 'node_modules');
  mkdirSync(join(dir, 'node_modules'));
  for (const name of readdirSync(nm)) {
    if (name === 'tsx' || name === '.bin' || name.startsWith('.')) continue;
    symlinkSync(join(nm, name), join(dir, 'node_modules', name));
  }
}

test('the built CLI (no tsx) runs a WasmPlugin in a worker-thread VM', { timeout: 120_000 }, async (t) => {
  const plugin = pluginPath(t, 'as-header');
  if (!plugin) return;
  const dir = mkdtempSync(join(tmpdir(), 'portico-dist-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  installedCopy(dir);
  const built = spawnSync(process.execPath, ['scripts/build.mjs'], { cwd: dir, encoding: 'utf8' });
  assert.equal(built.status, 0, built.stderr);
  // The premise: nothing in the copy can load tsx.
  const tsx = spawnSync(process.execPath, ['--input-type=module', '-e', "await import('tsx/esm/api')"], { cwd: dir, encoding: 'utf8' });
  assert.notEqual(tsx.status, 0, 'tsx must not be importable from the installed copy');

  const app = await startEcho(t, 'productpage');
  const port = await freePort();
  const config = join(dir, 'gateway.yaml');
  writeFileSync(
    config,
    bookinfoYaml(port, app.port) + wasmPluginYaml('header', plugin, '  pluginName: add_header\n  pluginConfig: {header: x-from-wasm, value: built}'),
  );
  const gw = spawn(
    process.execPath,
    [join(dir, 'dist/bin/portico.js'), 'gateway', '--config', config, '--workers', '1', '--admin-port', '-1', '--metrics-port', '-1', '--no-watch', '--wasm-cache', join(dir, 'wasm-cache')],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  t.after(() => {
    gw.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    const onData = (b: Buffer): void => {
      output += b.toString();
      // The module loads off the request path: wait for its VM (or its failure).
      if (output.includes('gateway ready') && /wasm plugin ready|wasm VM failed|wasm module fetch failed/.test(output)) resolve();
    };
    gw.stdout.on('data', onData);
    gw.stderr.on('data', onData);
    gw.once('exit', (code) => reject(new Error(`gateway exited (${code}):\n${output}`)));
  });
  assert.doesNotMatch(output, /wasm VM failed|wasm module fetch failed/);
  const r = await request(`http://127.0.0.1:${port}/productpage`);
  await r.body.dump();
  assert.equal(r.statusCode, 200, `gateway answered ${r.statusCode}:\n${output}`);
  assert.equal(r.headers['x-from-wasm'], 'built');
  assert.equal(app.seen.at(-1)?.headers['x-from-wasm'], 'built');
  assert.doesNotMatch(output, /WASI is an experimental feature/);
});
