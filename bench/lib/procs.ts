/**
 * Child-process bookkeeping for the benchmark: every process the harness starts is registered
 * here, so SIGINT/SIGTERM/exit (or a thrown error) stops all of them and removes the temp dirs.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createWriteStream, readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';

export const LOOPBACK = '127.0.0.1';

/** A started child with its captured log file. */
export interface Child {
  readonly label: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly logFile: string;
  /** Resolves with the exit code (or signal name) when the process ends. */
  readonly exited: Promise<number | string>;
}

const live = new Set<Child>();
const raw = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let handlersInstalled = false;

/** Remembers a temp dir to delete on exit (unless BENCH_KEEP_TMP=1). */
export function registerTempDir(dir: string): void {
  tempDirs.add(dir);
}

/** Tracks a short-lived process started elsewhere (wrk) so cleanup kills it too. */
export function trackProcess(proc: ChildProcess): void {
  raw.add(proc);
  proc.once('exit', () => raw.delete(proc));
}

/** Kills every live child right now (SIGKILL after SIGTERM had its chance) and deletes temp dirs. */
export function killAllSync(signal: NodeJS.Signals = 'SIGTERM'): void {
  for (const c of live) {
    try {
      c.proc.kill(signal);
    } catch {
      // already gone
    }
  }
  for (const p of raw) {
    try {
      p.kill(signal);
    } catch {
      // already gone
    }
  }
  if (process.env.BENCH_KEEP_TMP !== '1') {
    for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
    tempDirs.clear();
  }
}

/** Installs SIGINT/SIGTERM/exit handlers once: children never outlive the harness. */
export function installCleanup(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const onSignal = (sig: NodeJS.Signals): void => {
    process.stderr.write(`\nbench: ${sig} received; stopping ${live.size} child process(es)\n`);
    killAllSync('SIGTERM');
    // Give them a moment to go, then make sure.
    setTimeout(() => {
      killAllSync('SIGKILL');
      process.exit(sig === 'SIGINT' ? 130 : 143);
    }, 500).unref();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', () => killAllSync('SIGKILL'));
}

/**
 * Spawns `cmd args` with stdout/stderr going to `<logDir>/<label>.log`. `ipc: true` adds an IPC
 * channel (used by the upstream to report its ports).
 */
export function startChild(
  label: string,
  cmd: string,
  args: readonly string[],
  logDir: string,
  opts: { ipc?: boolean; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Child {
  const logFile = join(logDir, `${label}.log`);
  const log = createWriteStream(logFile);
  const spawnOpts: SpawnOptions = {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: opts.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
  };
  const proc = spawn(cmd, args, spawnOpts);
  proc.stdout?.pipe(log, { end: false });
  proc.stderr?.pipe(log, { end: false });
  if (proc.pid === undefined) throw new Error(`could not start ${label} (${cmd})`);
  const exited = new Promise<number | string>((resolve) => {
    proc.once('exit', (code, signal) => {
      live.delete(child);
      resolve(code ?? signal ?? 'unknown');
    });
    proc.once('error', (err) => {
      live.delete(child);
      resolve(`error: ${err.message}`);
    });
  });
  const child: Child = { label, proc, pid: proc.pid, logFile, exited };
  live.add(child);
  return child;
}

/** SIGTERM, then SIGKILL after `graceMs`. Resolves when the process is gone. */
export async function stopChild(child: Child, graceMs = 5000): Promise<void> {
  if (child.proc.exitCode !== null || child.proc.signalCode !== null) return;
  child.proc.kill('SIGTERM');
  const timer = setTimeout(() => child.proc.kill('SIGKILL'), graceMs);
  await child.exited;
  clearTimeout(timer);
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, LOOPBACK, () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: LOOPBACK, port });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

/** The last lines of a child's log, for error messages (the temp dir is gone after exit). */
export function logTail(child: Child, lines = 15): string {
  try {
    const text = readFileSync(child.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n    ');
    return text ? `\n  last lines of ${child.label}'s log:\n    ${text}` : '';
  } catch {
    return '';
  }
}

/** Waits until 127.0.0.1:port accepts connections; fails early when `child` exits first. */
export async function waitForPort(port: number, child: Child, timeoutMs = 60_000): Promise<void> {
  let gone: number | string | undefined;
  void child.exited.then((code) => {
    gone = code;
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (gone !== undefined) throw new Error(`${child.label} exited (${gone}) before listening on ${port}${logTail(child)}`);
    if (await canConnect(port)) return;
    await sleep(50);
  }
  throw new Error(`${child.label} did not listen on ${LOOPBACK}:${port} within ${timeoutMs} ms${logTail(child)}`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
