#!/usr/bin/env node
/**
 * Runs the shell blocks in README.md and docs/*.md that are marked runnable, so documented
 * commands cannot rot. A block is runnable when its fence says so or the line before it is the
 * marker comment:
 *
 *   ```sh runnable                 <!-- runnable -->
 *   npm run portico -- validate …  ```sh
 *   ```                            …
 *
 * Each block runs with `bash -euo pipefail` from the repository root (as a reader would), in a
 * fresh environment whose TMPDIR is a private temp dir removed afterwards; blocks must write only
 * under `mktemp -d` (never into the tree). Each block has a time limit (DOCS_CHECK_TIMEOUT_MS,
 * default 60 s). Failures print `file:line: …` with the output tail; exit code 1 if any failed.
 *
 *   node scripts/docs-check.mjs [--list] [FILE.md ...]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const SHELLS = new Set(['sh', 'bash', 'shell', 'console']);
const MARKER = /^<!--\s*runnable\s*-->$/;

/** Every runnable block of one Markdown text: `{ line, code }` (line of the opening fence, 1-based). */
export function extractRunnable(text) {
  const lines = text.split('\n');
  const blocks = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})\s*([\w-]+)?\s*(.*)$/.exec(lines[i]);
    if (!open) continue;
    const [, indent, fence, lang = '', rest] = open;
    let end = i + 1;
    while (end < lines.length && !lines[end].trimStart().startsWith(fence)) end++;
    let prev = i - 1;
    while (prev >= 0 && lines[prev].trim() === '') prev--;
    const marked = /(^|\s)runnable(\s|$)/.test(rest) || (prev >= 0 && MARKER.test(lines[prev].trim()));
    if (marked) {
      if (!SHELLS.has(lang)) throw new Error(`line ${i + 1}: a runnable block must be sh/bash, got '${lang || 'no language'}'`);
      blocks.push({ line: i + 1, code: lines.slice(i + 1, end).map((l) => (l.startsWith(indent) ? l.slice(indent.length) : l)).join('\n') });
    }
    i = end;
  }
  return blocks;
}

/** README.md and docs/*.md, relative to the repo root. */
export function docFiles() {
  const docs = readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => join('docs', f));
  return ['README.md', ...docs];
}

/** Runs one block; `{ ok, status, output }`. */
export function runBlock(code, timeoutMs = Number(process.env.DOCS_CHECK_TIMEOUT_MS ?? 60_000)) {
  const tmp = mkdtempSync(join(tmpdir(), 'portico-docs-'));
  try {
    const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? tmp, TMPDIR: tmp, LANG: 'C.UTF-8', CI: '1' };
    const r = spawnSync('bash', ['-euo', 'pipefail', '-c', code], { cwd: ROOT, env, encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL' });
    const output = `${r.stdout ?? ''}${r.stderr ?? ''}`;
    if (r.error?.code === 'ETIMEDOUT') return { ok: false, status: `timed out after ${timeoutMs} ms`, output };
    return { ok: r.status === 0, status: r.signal ? `killed by ${r.signal}` : `exit ${r.status}`, output };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

function main(argv) {
  const list = argv.includes('--list');
  const files = argv.filter((a) => a !== '--list');
  const targets = files.length ? files.map((f) => relative(ROOT, resolve(f))) : docFiles();
  let failed = 0;
  let ran = 0;
  for (const file of targets) {
    let blocks;
    try {
      blocks = extractRunnable(readFileSync(join(ROOT, file), 'utf8'));
    } catch (err) {
      process.stderr.write(`${file}:${err.message}\n`);
      failed++;
      continue;
    }
    for (const b of blocks) {
      if (list) {
        process.stdout.write(`${file}:${b.line}\n${b.code}\n\n`);
        continue;
      }
      ran++;
      const started = Date.now();
      const r = runBlock(b.code);
      if (r.ok) process.stdout.write(`ok   ${file}:${b.line} (${Date.now() - started} ms)\n`);
      else {
        failed++;
        const tail = r.output.trimEnd().split('\n').slice(-20).map((l) => `    ${l}`).join('\n');
        process.stderr.write(`FAIL ${file}:${b.line}: ${r.status}\n${tail}\n`);
      }
    }
  }
  if (!list) process.stdout.write(`docs-check: ${ran} runnable block(s), ${failed} failed\n`);
  return failed ? 1 : 0;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = main(process.argv.slice(2));
