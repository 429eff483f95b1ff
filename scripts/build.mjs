#!/usr/bin/env node
/**
 * `npm run build`: bundles the CLI (bin/portico.ts and every bin/commands/*.ts) with esbuild into
 * dist/, so production runs `node dist/bin/portico.js <command>` without tsx's loader thread
 * (about 30 MB of RSS and a few % of CPU per request). `npm start` and the tests keep running
 * the TypeScript sources through tsx.
 *
 *   node scripts/build.mjs            build (always)
 *   node scripts/build.mjs --if-stale build only when dist/ is missing or older than a source
 *
 *   node scripts/build.mjs --outdir D build into D instead of dist/ (tests build a throwaway copy)
 *
 * Layout: dist/bin/portico.js, dist/bin/commands/<command>.js, the Wasm VM worker thread's entry
 * dist/bin/commands/wasm-worker.js (from wasm/worker-main.ts), shared code split into
 * dist/bin/commands/chunk-*.js (ESM, platform node, node_modules left external, source maps).
 * Code splitting keeps dynamic import() lazy: a module reached only through import() (and the
 * packages it imports) loads when first used, not at start-up.
 *
 * Files the sources read next to themselves (`new URL('page.html', import.meta.url)`, demo
 * configs) stay where they are: in every bundled module except the CLI entry, `import.meta.url`
 * is rewritten to that module's source URL, computed relative to the output file at run time, so
 * dist/ must sit beside the sources (as it does in the repo and the Docker image).
 */
import { build } from 'esbuild';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DIST = join(ROOT, 'dist');
const CLI = join(ROOT, 'bin/portico.ts');
/** Source folders that end up in the bundle (for the staleness check). */
const SOURCE_DIRS = ['bin', 'lib', 'config', 'dataplane', 'wasm', 'kube', 'gateway', 'authservice', 'controlplane', 'telemetry', 'certs', 'demo'];
/** The Wasm VM worker thread's entry, and where vm.ts finds it in the bundle (same folder as every chunk). */
const WASM_WORKER = join(ROOT, 'wasm/worker-main.ts');
const WASM_WORKER_OUT = 'bin/commands/wasm-worker';
const WASM_VM = join(ROOT, 'wasm/vm.ts');
const WASM_WORKER_URL_SRC = "new URL('./worker-entry.mjs', import.meta.url)";

function commandEntries() {
  const dir = join(ROOT, 'bin/commands');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .sort()
    .map((f) => join(dir, f));
}

function newestSourceMtime() {
  let newest = statSync(join(ROOT, 'package.json')).mtimeMs;
  const walk = (dir) => {
    if (!existsSync(dir)) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.name.startsWith('.') || e.name === 'node_modules' || e.name === 'out') continue;
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts') || e.name.endsWith('.json')) newest = Math.max(newest, statSync(p).mtimeMs);
    }
  };
  for (const d of SOURCE_DIRS) walk(join(ROOT, d));
  return newest;
}

/** True when dist/ is missing, incomplete or older than any source file. */
export function isStale() {
  const stamp = join(DIST, 'bin/portico.js');
  if (!existsSync(stamp)) return true;
  for (const entry of commandEntries()) {
    if (!existsSync(join(DIST, 'bin/commands', `${entry.slice(entry.lastIndexOf('/') + 1, -3)}.js`))) return true;
  }
  if (!existsSync(join(DIST, `${WASM_WORKER_OUT}.js`))) return true;
  return statSync(stamp).mtimeMs < newestSourceMtime();
}

/**
 * Rewrites what only works when running the .ts sources in place. `outPrefix` leads from
 * <outdir>/bin/commands/ (where every non-entry output lives) back to the repo root.
 */
const sourceLocations = (outPrefix) => ({
  name: 'portico-source-locations',
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, (args) => {
      let text = readFileSync(args.path, 'utf8');
      if (args.path === WASM_VM) {
        // The source starts worker-entry.mjs, which loads tsx (a devDependency); the bundle
        // starts its own built worker, beside the chunk vm.ts ends up in.
        if (!text.includes(WASM_WORKER_URL_SRC)) throw new Error(`${relative(ROOT, WASM_VM)}: expected ${WASM_WORKER_URL_SRC} (update scripts/build.mjs)`);
        text = text.replace(WASM_WORKER_URL_SRC, "new URL('./wasm-worker.js', __PORTICO_OUTPUT_URL__)");
      }
      if (args.path === CLI) {
        // The CLI loads `./commands/<name>.ts`; in dist/ those are `.js` files.
        const from = '`./commands/${command}.ts`';
        if (!text.includes(from)) throw new Error(`${relative(ROOT, CLI)}: expected ${from} (update scripts/build.mjs)`);
        text = text.replace(from, '`./commands/${command}.js`');
      } else if (text.includes('import.meta.url')) {
        const rel = outPrefix + relative(ROOT, args.path).split('\\').join('/');
        text = text.replace(/\bimport\.meta\.url\b/g, `new URL(${JSON.stringify(rel)}, import.meta.url).href`);
      }
      text = text.replace('__PORTICO_OUTPUT_URL__', 'import.meta.url');
      return { contents: text, loader: 'ts' };
    });
  },
});

export async function runBuild({ quiet = false, outdir = DIST } = {}) {
  const started = Date.now();
  const out = resolve(outdir);
  rmSync(out, { recursive: true, force: true });
  const outPrefix = relative(join(out, 'bin/commands'), ROOT).split('\\').join('/') + '/';
  const entryPoints = [CLI, ...commandEntries(), { in: WASM_WORKER, out: WASM_WORKER_OUT }];
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints,
    outbase: ROOT,
    outdir: out,
    entryNames: '[dir]/[name]',
    chunkNames: 'bin/commands/chunk-[hash]',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    sourcemap: true,
    metafile: true,
    logLevel: 'warning',
    plugins: [sourceLocations(outPrefix)],
  });
  // The import.meta.url rewrite assumes <outdir>/bin/commands/; the CLI entry (one level up)
  // must not carry any other module's code.
  const cliOut = result.metafile.outputs[relative(ROOT, join(out, 'bin/portico.js')).split('\\').join('/')];
  if (!cliOut) throw new Error('build: no bin/portico.js in the output');
  const foreign = Object.keys(cliOut.inputs).filter((i) => resolve(ROOT, i) !== CLI);
  if (foreign.length) throw new Error(`bin/portico.js unexpectedly bundles ${foreign.join(', ')}; keep bin/portico.ts free of static imports of our code`);
  if (!quiet) {
    const outs = Object.entries(result.metafile.outputs).filter(([f]) => f.endsWith('.js'));
    const kb = outs.reduce((n, [, o]) => n + o.bytes, 0) / 1024;
    process.stdout.write(`build: ${entryPoints.length} entries → ${outs.length} files in ${relative(ROOT, out).startsWith('..') ? out : relative(ROOT, out) || '.'}/ (${kb.toFixed(0)} KiB) in ${Date.now() - started} ms\n`);
  }
  return result;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const ifStale = process.argv.includes('--if-stale');
  const at = process.argv.indexOf('--outdir');
  const outdir = at > 0 ? process.argv[at + 1] : undefined;
  if (at > 0 && !outdir) {
    process.stderr.write('build: --outdir needs a folder\n');
    process.exit(2);
  }
  if (ifStale && !outdir && !isStale()) process.exit(0);
  runBuild(outdir ? { outdir } : {}).catch((err) => {
    process.stderr.write(`build: ${err.message}\n`);
    process.exit(1);
  });
}
