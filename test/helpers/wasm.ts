/**
 * The Wasm test plugins and OCI tools built by scripts/build-wasm-plugins.sh into
 * ${PORTICO_CACHE:-$HOME/.cache/portico}/wasm. The first test that needs them runs the script
 * (it is idempotent and locks against concurrent runs); when they are still missing the test is
 * skipped loudly, or fails under PORTICO_REQUIRE=wasm.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
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
