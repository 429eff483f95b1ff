/** Runs wrk in its own process and parses its `--latency` report. */
import { spawn } from 'node:child_process';
import { trackProcess } from './procs.ts';

export interface WrkOptions {
  readonly url: string;
  readonly durationSec: number;
  readonly connections: number;
  readonly threads: number;
  readonly headers?: Readonly<Record<string, string>>;
  /** Per-request timeout passed to wrk (`--timeout`), seconds. */
  readonly timeoutSec?: number;
}

export interface WrkResult {
  readonly requests: number;
  readonly durationSec: number;
  readonly reqPerSec: number;
  /** Latency percentiles from wrk's `--latency` distribution, milliseconds. */
  readonly p50Ms: number;
  readonly p75Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly non2xx: number;
  readonly socketErrors: { connect: number; read: number; write: number; timeout: number };
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function durationMs(text: string, what: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (!m) throw new Error(`wrk output: cannot read ${what} '${text}'`);
  return Number(m[1]) * (UNIT_MS[m[2] as string] as number);
}

/** Parses wrk 4.x output (with `--latency`). Throws, quoting the output, when a field is missing. */
export function parseWrk(out: string): WrkResult {
  const need = (re: RegExp, what: string): RegExpExecArray => {
    const m = re.exec(out);
    if (!m) throw new Error(`wrk output has no ${what}:\n${out}`);
    return m;
  };
  const pct = (p: string): number => durationMs(need(new RegExp(`^\\s*${p}%\\s+(\\S+)\\s*$`, 'm'), `${p}% latency line (was --latency given?)`)[1] as string, `${p}%`);
  const total = need(/^\s*(\d+) requests in ([\d.]+\w+),/m, 'request total');
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  return {
    requests: Number(total[1]),
    durationSec: durationMs(total[2] as string, 'duration') / 1000,
    reqPerSec: Number(need(/^Requests\/sec:\s+([\d.]+)/m, 'Requests/sec')[1]),
    p50Ms: pct('50'),
    p75Ms: pct('75'),
    p90Ms: pct('90'),
    p99Ms: pct('99'),
    maxMs: durationMs(need(/^\s*Latency\s+\S+\s+\S+\s+(\S+)/m, 'latency max')[1] as string, 'max latency'),
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    socketErrors: sock
      ? { connect: Number(sock[1]), read: Number(sock[2]), write: Number(sock[3]), timeout: Number(sock[4]) }
      : { connect: 0, read: 0, write: 0, timeout: 0 },
  };
}

/** Runs `wrk -tT -cC -dDs --latency [-H ...] URL` and parses the result. 127.0.0.1 URLs only. */
export function runWrk(wrk: string, opts: WrkOptions): Promise<WrkResult> {
  const u = new URL(opts.url);
  if (u.hostname !== '127.0.0.1') throw new Error(`refusing to load ${opts.url}: the benchmark only targets 127.0.0.1`);
  const args = [`-t${opts.threads}`, `-c${opts.connections}`, `-d${opts.durationSec}s`, '--latency', '--timeout', `${opts.timeoutSec ?? 5}s`];
  for (const [k, v] of Object.entries(opts.headers ?? {})) args.push('-H', `${k}: ${v}`);
  args.push(opts.url);
  return new Promise((resolve, reject) => {
    const p = spawn(wrk, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    trackProcess(p);
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.once('error', reject);
    p.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`wrk ${args.join(' ')} exited ${code}: ${err || out}`));
      try {
        resolve(parseWrk(out));
      } catch (e) {
        reject(e as Error);
      }
    });
  });
}
