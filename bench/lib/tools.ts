/**
 * Finds nginx and wrk, installing them with apt-get when missing (the harness must work on a
 * fresh Debian machine). Every command it runs is printed first.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/** PATH plus the sbin dirs, where Debian puts nginx (not on a normal user's PATH). */
function searchDirs(): string[] {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  for (const d of ['/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/local/bin', '/usr/bin']) if (!dirs.includes(d)) dirs.push(d);
  return dirs;
}

/** Absolute path of an executable, or undefined. */
export function findBinary(name: string): string | undefined {
  for (const dir of searchDirs()) {
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

function run(cmd: string, args: string[]): boolean {
  process.stdout.write(`bench: $ ${cmd} ${args.join(' ')}\n`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  return r.status === 0;
}

/**
 * apt-get install -y the packages (apt-get update and retry once when the first try fails,
 * as it does on a fresh machine with empty package lists). Returns why it could not, or undefined.
 */
function aptInstall(packages: string[]): string | undefined {
  const apt = findBinary('apt-get');
  if (!apt) return 'apt-get is not available on this machine (not Debian/Ubuntu?)';
  let cmd = apt;
  let prefix: string[] = [];
  if (process.getuid?.() !== 0) {
    const sudo = findBinary('sudo');
    if (!sudo) return 'not running as root and sudo is not available';
    cmd = sudo;
    prefix = ['-n', apt];
  }
  const args = [...prefix, 'install', '-y', '--no-install-recommends', ...packages];
  if (run(cmd, args)) return undefined;
  if (!run(cmd, [...prefix, 'update']) || !run(cmd, args)) return `'apt-get install -y ${packages.join(' ')}' failed (see output above)`;
  return undefined;
}

export interface Tools {
  readonly wrk: string;
  /** Undefined when nginx is missing and could not be installed: the nginx target is skipped. */
  readonly nginx: string | undefined;
  readonly versions: { readonly wrk: string; readonly nginx?: string };
  readonly notes: string[];
}

function versionOf(bin: string, args: string[]): string {
  const r = spawnSync(bin, args, { encoding: 'utf8' });
  const text = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
  return text.split('\n')[0] ?? '';
}

/** Finds (or installs) wrk and nginx. Throws when wrk cannot be had: there is no benchmark without it. */
export function ensureTools(): Tools {
  const notes: string[] = [];
  const missing = ['wrk', 'nginx'].filter((n) => !findBinary(n));
  if (missing.length > 0) {
    process.stdout.write(`bench: ${missing.join(' and ')} not found; installing with apt-get\n`);
    if (missing.includes('nginx')) {
      process.stdout.write('bench: note: on a systemd host the nginx package also enables the system nginx service (port 80); the benchmark never uses it\n');
    }
    const why = aptInstall(missing);
    if (why) {
      process.stdout.write(`bench: could not install ${missing.join(', ')}: ${why}\n`);
      notes.push(`could not install ${missing.join(', ')}: ${why}`);
    }
  }
  const wrk = findBinary('wrk');
  if (!wrk) throw new Error('wrk is required (apt-get install -y wrk) and could not be installed; see the messages above');
  const nginx = findBinary('nginx');
  if (!nginx) {
    process.stdout.write('bench: nginx is NOT available: the nginx target is skipped and no Portico/nginx ratios are computed\n');
    notes.push('nginx unavailable: nginx target skipped');
  }
  return {
    wrk,
    nginx,
    versions: { wrk: versionOf(wrk, ['-v']), ...(nginx ? { nginx: versionOf(nginx, ['-v']) } : {}) },
    notes,
  };
}

/**
 * Absolute path of `name`, installing Debian's `aptPackage` when it is missing (same rules as
 * wrk/nginx). Throws, saying how to install it, when it cannot be had.
 */
export function ensureBinary(name: string, aptPackage: string): string {
  const found = findBinary(name);
  if (found) return found;
  process.stdout.write(`bench: ${name} not found; installing ${aptPackage} with apt-get\n`);
  const why = aptInstall([aptPackage]);
  const after = findBinary(name);
  if (!after) throw new Error(`${name} is required by this scenario (apt-get install -y ${aptPackage}) and could not be installed${why ? `: ${why}` : ''}`);
  return after;
}

/**
 * oauth2-proxy for the comparison stack, built once per machine by scripts/build-oauth2-proxy.sh
 * (`go install github.com/oauth2-proxy/oauth2-proxy/v7@v7.15.6` into
 * `${PORTICO_CACHE:-$HOME/.cache/portico}/oauth2-proxy/<version>`). `$OAUTH2_PROXY_BIN` overrides.
 */
export function ensureOauth2Proxy(): string {
  const given = process.env.OAUTH2_PROXY_BIN;
  if (given) return given;
  const script = join(new URL('../../scripts/', import.meta.url).pathname, 'build-oauth2-proxy.sh');
  process.stdout.write(`bench: $ ${script}\n`);
  const r = spawnSync('bash', [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const bin = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !bin) throw new Error(`oauth2-proxy could not be built (${script} exited ${r.status}); it needs Go and the Go module proxy`);
  return bin;
}

/** Real Dex: `$DEX_BIN`, else `<repo>/.dex/bin/dex` (scripts/build-dex.sh), else `dex` on PATH. */
export function findDex(): { bin: string; webDir: string } {
  const root = new URL('../../', import.meta.url).pathname;
  const bin = process.env.DEX_BIN ?? [join(root, '.dex/bin/dex')].find((p) => {
    try {
      accessSync(p, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  }) ?? findBinary('dex');
  if (!bin) throw new Error('this scenario needs real Dex: run scripts/build-dex.sh or set DEX_BIN');
  const webDir = [process.env.DEX_WEB_DIR, join(bin, '../../web'), join(root, '.dex/web')].find((d): d is string => {
    if (!d) return false;
    try {
      accessSync(join(d, 'templates', 'login.html'));
      return true;
    } catch {
      return false;
    }
  });
  if (!webDir) throw new Error(`found Dex at ${bin} but not its web assets ($DEX_WEB_DIR, or web/ beside bin/ as scripts/build-dex.sh lays out)`);
  return { bin, webDir };
}
