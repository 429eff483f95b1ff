/**
 * The Wasm test plugins and OCI tools built by scripts/build-wasm-plugins.sh into
 * ${PORTICO_CACHE:-$HOME/.cache/portico}/wasm. The first test that needs them runs the script
 * (it is idempotent and locks against concurrent runs); when they are still missing the test is
 * skipped loudly, or fails under PORTICO_REQUIRE=wasm.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import bcrypt from 'bcryptjs';
import { freePort } from './net.ts';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { missing } from './external.ts';

export const WASM_CACHE = join(process.env.PORTICO_CACHE ?? join(homedir(), '.cache/portico'), 'wasm');
const REPO = new URL('../..', import.meta.url).pathname;

export type PluginName = 'as-header' | 'as-basic-auth' | 'as-body' | 'go-header' | 'go-misbehave' | 'go-stateful';

let built: { ok: boolean; why: string } | undefined;

function build(withTools: boolean): { ok: boolean; why: string } {
  if (built && (built.ok || !withTools)) return built;
  const r = spawnSync('bash', [join(REPO, 'scripts/build-wasm-plugins.sh')], {
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
    timeout: 30 * 60_000,
    env: { ...process.env, ...(withTools ? {} : { PORTICO_WASM_SKIP_TOOLS: '1' }) },
  });
  built = { ok: r.status === 0, why: r.status === 0 ? '' : `build-wasm-plugins.sh failed (${r.status ?? r.signal}): ${(r.stderr || r.stdout).slice(-800)}` };
  return built;
}

/** Path of a built plugin, or undefined after skipping `t`. */
export function pluginPath(t: TestContext, name: PluginName): string | undefined {
  const file = join(WASM_CACHE, 'plugins', `${name}.wasm`);
  if (!existsSync(file)) {
    const r = build(false);
    if (!existsSync(file)) {
      missing(t, 'wasm', `${file} not built (${r.why || 'run scripts/build-wasm-plugins.sh'})`);
      return undefined;
    }
  }
  return file;
}

export function pluginBytes(t: TestContext, name: PluginName): Uint8Array | undefined {
  const p = pluginPath(t, name);
  return p ? readFileSync(p) : undefined;
}

/** registry and oras binaries, or undefined after skipping `t`. */
export function ociTools(t: TestContext): { registry: string; oras: string } | undefined {
  const registry = join(WASM_CACHE, 'bin/registry');
  const oras = join(WASM_CACHE, 'bin/oras');
  if (!existsSync(registry) || !existsSync(oras)) {
    const r = build(true);
    if (!existsSync(registry) || !existsSync(oras)) {
      missing(t, 'wasm', `OCI registry/oras not built (${r.why || 'run scripts/build-wasm-plugins.sh'})`);
      return undefined;
    }
  }
  return { registry, oras };
}

/** Bookinfo's gateway and productpage route (`/productpage`, `/static`, `/api/v1/products`, `/x`) to an upstream on `app`. */
export function bookinfoYaml(port: number, app: number): string {
  return `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: ${port}, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: default}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - match: [{uri: {exact: /productpage}}, {uri: {prefix: /static}}, {uri: {prefix: /api/v1/products}}, {uri: {prefix: /x}}]
    route: [{destination: {host: productpage.default.svc.cluster.local, port: {number: 9080}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: productpage, namespace: default}
spec:
  hosts: [productpage.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${app}}}]
---
`;
}

/** A WasmPlugin for the ingress gateway, loading `file`; `spec` adds indented spec lines. */
export function wasmPluginYaml(name: string, file: string, spec: string): string {
  return `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: ${name}, namespace: istio-system}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  url: file://${file}
${spec}
---
`;
}

/**
 * The distribution registry on loopback with htpasswd auth (user `puller`, password `s3cret`),
 * storing under `dir`; stopped after the test. Resolves once it accepts connections.
 */
export async function startRegistry(t: TestContext, registryBin: string, dir: string): Promise<{ address: string; user: string; password: string; stop(): Promise<void> }> {
  const port = await freePort();
  writeFileSync(join(dir, 'htpasswd'), `puller:${bcrypt.hashSync('s3cret', 8)}\n`);
  writeFileSync(
    join(dir, 'config.yml'),
    `version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: ${join(dir, 'data')}}}\nhttp: {addr: "127.0.0.1:${port}"}\nauth: {htpasswd: {realm: portico-test, path: ${join(dir, 'htpasswd')}}}\n`,
  );
  const reg = spawn(registryBin, ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.after(() => reg.kill());
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); r(true); });
      s.once('error', () => r(false));
    });
    if (ok) break;
    if (reg.exitCode !== null) throw new Error(`registry exited (${reg.exitCode})`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const stop = (): Promise<void> => (reg.exitCode !== null ? Promise.resolve() : new Promise((r) => { reg.once('exit', () => r()); reg.kill(); }));
  return { address: `127.0.0.1:${port}`, user: 'puller', password: 's3cret', stop };
}
