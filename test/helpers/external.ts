/**
 * External programs the tests need (redis-server, dex, chromium) are found on PATH or at a
 * known location. When one is missing the test is skipped loudly; when PORTICO_REQUIRE names it
 * (comma separated, e.g. `PORTICO_REQUIRE=redis,dex,chromium`, as .ci/run sets) the skip becomes
 * a failure instead, so CI can never go green by skipping.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { TestContext } from 'node:test';

export type ExternalProgram = 'redis' | 'dex' | 'chromium' | 'nginx' | 'prometheus' | 'wasm' | 'kube' | 'iptables';

const required = new Set(
  (process.env.PORTICO_REQUIRE ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
);

/** True when PORTICO_REQUIRE names this program (or `all`). */
export function isRequired(program: ExternalProgram): boolean {
  return required.has(program) || required.has('all');
}

/** Finds an executable on PATH (or an absolute path); undefined when absent. */
export function which(name: string, extraDirs: string[] = []): string | undefined {
  const dirs = name.includes('/') ? [''] : [...extraDirs, ...(process.env.PATH ?? '').split(delimiter)];
  for (const dir of dirs) {
    const candidate = dir ? join(dir, name) : name;
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

/**
 * Call when `program` is unavailable. Skips the test with a loud message, or throws when the
 * program is required, so the test fails with the reason.
 */
export function missing(t: TestContext, program: ExternalProgram, why: string): void {
  const message = `${program} unavailable: ${why}`;
  if (isRequired(program)) {
    throw new Error(`${message} (required by PORTICO_REQUIRE=${process.env.PORTICO_REQUIRE})`);
  }
  process.stderr.write(`\n*** SKIPPED: ${message}. Set PORTICO_REQUIRE=${program} to make this a failure. ***\n`);
  t.skip(message);
}
