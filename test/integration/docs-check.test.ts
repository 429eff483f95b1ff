/**
 * The docs check (scripts/docs-check.mjs): its block extraction, that a failing block is reported
 * with file:line, and the real run over README.md and docs/*.md.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SCRIPT = join(REPO, 'scripts/docs-check.mjs');
const { extractRunnable } = (await import(SCRIPT)) as { extractRunnable(text: string): { line: number; code: string }[] };

test('only marked sh blocks are extracted, with the line of their fence', () => {
  const md = ['# T', '```sh', 'not me', '```', '', '<!-- runnable -->', '', '```sh', 'echo one', '```', '```bash runnable', 'echo two', '```', '```ts runnable-not', 'x', '```'].join('\n');
  assert.deepEqual(extractRunnable(md), [
    { line: 8, code: 'echo one' },
    { line: 11, code: 'echo two' },
  ]);
  assert.throws(() => extractRunnable('<!-- runnable -->\n```ts\nx\n```'), /line 2: a runnable block must be sh\/bash/);
});

test('a failing block fails the check with file:line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-docs-test-'));
  try {
    const file = join(dir, 'bad.md');
    writeFileSync(file, 'intro\n\n```sh runnable\ntrue\n```\n\n```sh runnable\necho about to fail\nfalse\necho never\n```\n');
    const r = spawnSync(process.execPath, [SCRIPT, file], { cwd: REPO, encoding: 'utf8' });
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /ok {3}.*bad\.md:3 /);
    assert.match(r.stderr, /FAIL .*bad\.md:7: exit 1/);
    assert.match(r.stderr, /about to fail/);
    assert.doesNotMatch(r.stderr, /never/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('every runnable block in README.md and docs/*.md passes', () => {
  const r = spawnSync(process.execPath, [SCRIPT], { cwd: REPO, encoding: 'utf8', timeout: 170_000 });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  const m = /docs-check: (\d+) runnable block\(s\), 0 failed/.exec(r.stdout);
  assert.ok(m && Number(m[1]) >= 5, `expected at least 5 runnable blocks:\n${r.stdout}`);
});
