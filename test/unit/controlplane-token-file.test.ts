/**
 * --token-file is read at every use: the kubelet rotates a projected service-account token in
 * place (through a symlink swap), and a proxy running longer than the token's life must send the
 * current one on its next certificate request or stream connection.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { bootstrapToken, tokenFromFile } from '../../controlplane/client.ts';

test('a token file is read again at each use, and a read racing the rotation keeps the last token', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-token-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'token');
  writeFileSync(file, 'first-token\n');
  const source = tokenFromFile(file);
  assert.equal(bootstrapToken(source), 'first-token');
  writeFileSync(join(dir, 'token.new'), 'rotated-token');
  renameSync(join(dir, 'token.new'), file);
  assert.equal(bootstrapToken(source), 'rotated-token', 'the rotated token is sent');
  unlinkSync(file);
  assert.equal(bootstrapToken(source), 'rotated-token', 'a missing file keeps the last token');
  assert.throws(() => tokenFromFile(join(dir, 'absent')), /ENOENT/, 'a file missing at start is an error');
});
