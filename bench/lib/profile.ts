/**
 * Summarises V8 `.cpuprofile` files (from `node --cpu-prof`): self time by function, by file and
 * by package, so a slow gateway can be reported as "where the time goes".
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface CpuProfile {
  nodes: CpuProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  readonly name: string;
  readonly ms: number;
  /** Share of busy (non-idle) time, 0..100. */
  readonly pct: number;
}

export interface ProfileSummary {
  readonly file: string;
  readonly totalMs: number;
  readonly idleMs: number;
  readonly byFunction: readonly SelfTime[];
  readonly byFile: readonly SelfTime[];
  readonly byPackage: readonly SelfTime[];
}

/** `file:///work/main/gateway/proxy.ts` → `gateway/proxy.ts`; node internals stay `node:...`. */
function shortFile(url: string, root: string): string {
  if (!url) return '(native/vm)';
  if (url.startsWith('file://')) {
    const p = fileURLToPath(url);
    const nm = p.lastIndexOf('/node_modules/');
    return nm >= 0 ? p.slice(nm + 1) : relative(root, p);
  }
  return url;
}

/** Bucket for a file: our folder (`gateway/`), an npm package, node internals, or V8 pseudo-frames. */
function packageOf(file: string, fn: string): string {
  if (fn === '(garbage collector)' || fn === '(program)' || fn === '(idle)') return fn;
  if (file.startsWith('node_modules/')) {
    const parts = file.split('/');
    return parts[1]?.startsWith('@') ? `${parts[1]}/${parts[2]}` : (parts[1] ?? file);
  }
  if (file.startsWith('node:')) return 'node: (core JS)';
  if (file === '(native/vm)') return '(native/vm)';
  return `${file.split('/')[0]}/ (Portico)`;
}

function top(map: Map<string, number>, busy: number, n: number): SelfTime[] {
  return [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, us]) => ({ name, ms: Math.round(us / 100) / 10, pct: Math.round((us / busy) * 1000) / 10 }));
}

/** Summarises one profile. */
export function summariseProfile(path: string, root: string, n = 20): ProfileSummary {
  const prof = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(prof.nodes.map((node) => [node.id, node]));
  const selfUs = new Map<number, number>();
  prof.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0)));
  const fns = new Map<string, number>();
  const files = new Map<string, number>();
  const pkgs = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    total += us;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') {
      idle += us;
      continue;
    }
    const file = shortFile(url, root);
    const fnKey = url ? `${functionName || '(anonymous)'} ${file}:${lineNumber + 1}` : functionName || '(anonymous)';
    fns.set(fnKey, (fns.get(fnKey) ?? 0) + us);
    const fileKey = url ? file : functionName;
    files.set(fileKey, (files.get(fileKey) ?? 0) + us);
    const pkg = packageOf(file, functionName);
    pkgs.set(pkg, (pkgs.get(pkg) ?? 0) + us);
  }
  const busy = Math.max(1, total - idle);
  return {
    file: path,
    totalMs: Math.round(total / 1000),
    idleMs: Math.round(idle / 1000),
    byFunction: top(fns, busy, n),
    byFile: top(files, busy, n),
    byPackage: top(pkgs, busy, n),
  };
}

/** Summarises the largest `.cpuprofile` in `dir` (the main thread's; loader threads are tiny). */
export function summariseProfiles(dir: string, root: string): ProfileSummary | undefined {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  } catch {
    return undefined;
  }
  const biggest = files.map((f) => join(dir, f)).sort((a, b) => statSync(b).size - statSync(a).size)[0];
  return biggest ? summariseProfile(biggest, root) : undefined;
}

export function formatProfileSummary(s: ProfileSummary, n = 15): string {
  const rows = (xs: readonly SelfTime[]): string => xs.slice(0, n).map((x) => `  ${x.pct.toFixed(1).padStart(5)}%  ${x.ms.toFixed(0).padStart(6)} ms  ${x.name}`).join('\n');
  return [
    `total ${s.totalMs} ms sampled, idle ${s.idleMs} ms; percentages are of busy time`,
    'self time by package/folder:',
    rows(s.byPackage),
    'self time by file:',
    rows(s.byFile),
    'self time by function:',
    rows(s.byFunction),
  ].join('\n');
}

// `node --import tsx bench/lib/profile.ts FILE.cpuprofile` prints a summary.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node --import tsx bench/lib/profile.ts FILE.cpuprofile\n');
    process.exit(2);
  }
  process.stdout.write(`${formatProfileSummary(summariseProfile(file, process.cwd()), 25)}\n`);
}
