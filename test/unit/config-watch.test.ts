/**
 * watchConfig sees every way a file is changed, from inotify events alone (the fingerprint poll is
 * off here): Node 20's recursive fs.watch on Linux reported only the first of several renames in
 * one directory, so `sed -i`-style saves were lost after the first.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { watchConfig, type BuildResult } from '../../config/index.ts';

const se = (host: string, port: number): string =>
  `apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ${host.split('.')[0]}}\nspec:\n  hosts: [${host}]\n  resolution: DNS\n  ports: [{number: ${port}, name: http}]\n`;

test('every kind of edit is seen by the directory watches alone, repeatedly', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portico-watch-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const conf = join(dir, 'conf');
  const cm = join(dir, 'cm');
  mkdirSync(conf);
  mkdirSync(cm);
  writeFileSync(join(conf, 'a.yaml'), se('a.example', 1));
  mkdirSync(join(cm, '..v0'));
  writeFileSync(join(cm, '..v0', 'c.yaml'), se('c.example', 1));
  symlinkSync('..v0', join(cm, '..data'));
  symlinkSync('..data/c.yaml', join(cm, 'c.yaml'));

  const results: BuildResult[] = [];
  let wake: (() => void) | undefined;
  const w = watchConfig([conf, cm], { debounceMs: 20, pollMs: 0 }, (r) => {
    results.push(r);
    wake?.();
  });
  t.after(() => w.close());
  /** Waits for the watcher to report a snapshot where `pred` holds (bounded, so a lost event fails). */
  const until = async (what: string, pred: (ports: Map<string, number>) => boolean): Promise<void> => {
    const deadline = Date.now() + 5000;
    for (;;) {
      const last = results.at(-1);
      const ports = new Map<string, number>();
      if (last?.ok) for (const s of last.snapshot.services) ports.set(s.host, s.ports[0]!.number);
      if (last?.ok && pred(ports)) return;
      const left = deadline - Date.now();
      if (left <= 0) assert.fail(`${what}: not seen; last result ${JSON.stringify([...ports])}`);
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, left).unref();
      });
    }
  };
  await w.ready;

  let port = 1;
  for (let round = 0; round < 4; round++) {
    writeFileSync(join(conf, 'a.yaml'), se('a.example', ++port));
    await until(`round ${round}: in-place write`, (p) => p.get('a.example') === port);

    writeFileSync(join(conf, `sed${round}`), se('a.example', ++port));
    renameSync(join(conf, `sed${round}`), join(conf, 'a.yaml'));
    await until(`round ${round}: temp file renamed over`, (p) => p.get('a.example') === port);

    writeFileSync(join(conf, '.a.yaml.swp'), 'x');
    renameSync(join(conf, 'a.yaml'), join(conf, 'a.yaml~'));
    writeFileSync(join(conf, 'a.yaml'), se('a.example', ++port));
    unlinkSync(join(conf, 'a.yaml~'));
    unlinkSync(join(conf, '.a.yaml.swp'));
    await until(`round ${round}: editor backup and swap files`, (p) => p.get('a.example') === port);

    mkdirSync(join(conf, `sub${round}`));
    writeFileSync(join(conf, `sub${round}`, 'b.yaml'), se('b.example', ++port));
    await until(`round ${round}: new file in a new subdirectory`, (p) => p.get('b.example') === port);
    writeFileSync(join(conf, `sub${round}`, 'b.yaml'), se('b.example', ++port));
    await until(`round ${round}: in-place write in the subdirectory`, (p) => p.get('b.example') === port);
    rmSync(join(conf, `sub${round}`), { recursive: true });
    await until(`round ${round}: subdirectory deleted`, (p) => !p.has('b.example'));

    mkdirSync(join(cm, `..v${round + 1}`));
    writeFileSync(join(cm, `..v${round + 1}`, 'c.yaml'), se('c.example', ++port));
    symlinkSync(`..v${round + 1}`, join(cm, '..data_tmp'));
    renameSync(join(cm, '..data_tmp'), join(cm, '..data'));
    rmSync(join(cm, `..v${round}`), { recursive: true });
    await until(`round ${round}: ConfigMap ..data swap`, (p) => p.get('c.example') === port);
  }
});
