/** Resident set size from /proc (Linux only; undefined elsewhere). */
import { readdirSync, readFileSync } from 'node:fs';

/** VmRSS of `pid` in KiB, or undefined when /proc cannot tell. */
export function readRssKb(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Pids whose parent is `pid` (nginx's worker under its master). */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after the last ')'.
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(e));
    } catch {
      // process went away
    }
  }
  return out;
}

/** Samples the summed RSS of `pids()` every `everyMs`; `stop()` returns the maximum seen (KiB). */
export function sampleRss(pids: () => number[], everyMs = 200): { stop: () => number | undefined } {
  let max: number | undefined;
  const tick = (): void => {
    let sum = 0;
    let any = false;
    for (const pid of pids()) {
      const kb = readRssKb(pid);
      if (kb !== undefined) {
        sum += kb;
        any = true;
      }
    }
    if (any) max = Math.max(max ?? 0, sum);
  };
  tick();
  const timer = setInterval(tick, everyMs);
  return {
    stop: () => {
      clearInterval(timer);
      tick();
      return max;
    },
  };
}

/** Linux USER_HZ: /proc/PID/stat times are in these ticks (100 on every mainstream kernel build). */
const CLK_TCK = 100;

/** utime + stime of `pid` in milliseconds of CPU, or undefined. */
export function readCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm) ": state(3) ppid(4) ... utime(14) stime(15).
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(rest[11]) + Number(rest[12])) * 1000) / CLK_TCK;
  } catch {
    return undefined;
  }
}

/** Summed CPU ms of `pids`; undefined when none could be read. */
export function sumCpuMs(pids: readonly number[]): number | undefined {
  let sum: number | undefined;
  for (const p of pids) {
    const ms = readCpuMs(p);
    if (ms !== undefined) sum = (sum ?? 0) + ms;
  }
  return sum;
}

/** Busy and total CPU ms over all cores since boot, from /proc/stat's `cpu` line. */
export function hostCpuMs(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal ...
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: ((total - idle) * 1000) / CLK_TCK, total: (total * 1000) / CLK_TCK };
  } catch {
    return undefined;
  }
}
