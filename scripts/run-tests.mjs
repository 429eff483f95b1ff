#!/usr/bin/env node
// Runs every *.test.ts under test/ with node:test through tsx. Node 20 has no glob support in
// `node --test`, so the file list is built here. Pass paths or substrings to narrow the run:
//   npm test -- test/unit            npm test -- router
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawn } from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
const filters = process.argv.slice(2);
const files = readdirSync(join(root, 'test'), { recursive: true })
  .map((f) => join('test', String(f)))
  .filter((f) => f.endsWith('.test.ts'))
  .filter((f) => filters.length === 0 || filters.some((p) => f.includes(p)))
  .sort();
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(1);
}
const concurrency = process.env.PORTICO_TEST_CONCURRENCY ?? '2';
const timeout = process.env.PORTICO_TEST_TIMEOUT_MS ?? '180000';
const args = ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, `--test-timeout=${timeout}`, '--test-reporter=spec', ...files];
const child = spawn(process.execPath, args, { cwd: root, stdio: 'inherit' });
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
console.error(`running ${files.length} test files: ${files.map((f) => relative('test', f)).join(', ')}`);
