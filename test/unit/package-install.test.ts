/**
 * A clean first install, checked on package.json and the lockfile (what `npm install` resolves):
 * no package that refuses the Node versions `engines` promises (EBADENGINE warnings: cookie@2 via
 * fastify's light-my-request and undici@8 via @kubernetes/client-node want Node 22), no install
 * script npm 11 would list as unreviewed (`allowScripts`), every build tool declared, and a bin
 * that needs no TypeScript loader at run time.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

const ROOT = new URL('../..', import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  engines: { node: string };
  bin: Record<string, string>;
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  allowScripts?: Record<string, boolean>;
};
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, { version?: string; engines?: { node?: string } | string[]; hasInstallScript?: boolean; optional?: boolean; os?: string[]; cpu?: string[] }>;
};

type Version = [number, number, number];
const parse = (v: string): Version => {
  const m = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?/.exec(v.trim());
  if (!m) throw new Error(`not a version: ${v}`);
  return [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)];
};
const cmp = (a: Version, b: Version): number => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];

/** Whether `v` satisfies an engines range; the forms found in lockfiles (`>=`, `^`, `||`, spaces). */
function satisfies(v: Version, range: string): boolean {
  return range.split('||').some((alt) =>
    alt
      .trim()
      .replace(/^(\S+)\s+-\s+(\S+)$/, '>=$1 <=$2') // hyphen range
      .replace(/(>=|<=|>|<|=|\^|~)\s+/g, '$1')
      .split(/\s+/)
      .filter(Boolean)
      .every((c) => {
        const m = /^(>=|>|<=|<|\^|~|=)?\s*v?(\d+(?:\.\d+){0,2})(?:\.x)?$/.exec(c);
        if (c === '*' || c === 'x') return true;
        if (!m) throw new Error(`engines range form not understood: '${range}'`);
        const w = parse(m[2]!);
        const d = cmp(v, w);
        switch (m[1]) {
          case '>=': return d >= 0;
          case '>': return d > 0;
          case '<=': return d <= 0;
          case '<': return d < 0;
          case '^': return d >= 0 && v[0] === w[0];
          case '~': return d >= 0 && v[0] === w[0] && v[1] === w[1];
          default: return m[2]!.split('.').length === 1 ? v[0] === w[0] : d === 0;
        }
      }),
  );
}

test('every locked package accepts the oldest Node that engines allows (no EBADENGINE)', () => {
  const oldest = parse(/>=\s*(\S+)/.exec(pkg.engines.node)?.[1] ?? '');
  const refusing: string[] = [];
  for (const [path, p] of Object.entries(lock.packages)) {
    if (!path) continue;
    const range = Array.isArray(p.engines) ? undefined : p.engines?.node;
    if (range && !satisfies(oldest, range)) refusing.push(`${path}@${p.version}: node ${range}`);
  }
  assert.deepEqual(refusing, [], `these want a newer Node than engines ${pkg.engines.node} promises`);
});

test('every install script in the tree is reviewed in allowScripts (npm 11 lists the others)', () => {
  const names = new Set(Object.keys(pkg.allowScripts ?? {}).map((k) => k.replace(/(?<=.)@.*$/, '')));
  const unreviewed = Object.entries(lock.packages)
    .filter(([path, p]) => path && p.hasInstallScript)
    .map(([path]) => path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length))
    .filter((name) => !names.has(name));
  assert.deepEqual(unreviewed, []);
});

test('build tools are declared, tsx is for development only, the bin is the bundle', () => {
  const build = readFileSync(join(ROOT, 'scripts/build.mjs'), 'utf8');
  assert.match(build, /from 'esbuild'/);
  assert.ok(pkg.devDependencies.esbuild, 'scripts/build.mjs imports esbuild: declare it');
  assert.equal(pkg.dependencies.tsx, undefined, 'tsx is not needed to run the CLI');
  assert.ok(pkg.devDependencies.tsx, 'npm start, npm run portico and the tests run the sources through tsx');
  assert.equal(pkg.bin.portico, 'dist/bin/portico.js');
  assert.match(build, /dist\/bin\/portico\.js/, 'scripts/build.mjs writes the bin');
  assert.match(pkg.scripts.prepare ?? '', /scripts\/build\.mjs/, 'npm install (and npm pack) build the bin');
  // dist/ is in .gitignore; without an .npmignore npm pack would use that and ship a bin that
  // is not there. Keys and local state must stay out either way.
  const npmignore = readFileSync(join(ROOT, '.npmignore'), 'utf8').split('\n').map((l) => l.trim());
  assert.ok(!npmignore.some((l) => /^\/?dist\/?$/.test(l)), '.npmignore keeps dist/ in the package');
  for (const must of ['certs/out/', 'node_modules/', '.portico/']) assert.ok(npmignore.includes(must), `.npmignore leaves out ${must}`);
});
