/**
 * A fixed-rate (open-loop) HTTP load generator for the mesh benchmark: wrk has no fixed-rate
 * mode, and a closed loop hides queueing (coordinated omission). Requests are *scheduled* at
 * `rate` per second; each latency is measured from its scheduled time, so a stall shows up in
 * every request it delayed. Keep-alive connections (undici Pool). Runs as its own process so it
 * never shares an event loop with what it measures; prints one JSON line and exits.
 *
 *   node --import tsx bench/mesh/loadgen.ts --origin http://127.0.0.1:15001 --path http://svc:8080/
 *     --host svc:8080 --rate 1000 --duration 10 [--warmup 2] [--connections 32]
 */
import { parseArgs } from 'node:util';
import { Pool } from 'undici';

export interface LoadResult {
  readonly rate: number;
  readonly durationSec: number;
  readonly sent: number;
  readonly ok: number;
  readonly errors: number;
  readonly non2xx: number;
  /** Achieved request rate over the measured window. */
  readonly achievedRps: number;
  /** Milliseconds from the scheduled send time to the end of the response body. */
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
  readonly meanMs: number;
}

function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

const { values: a } = parseArgs({
  options: {
    origin: { type: 'string' },
    path: { type: 'string', default: '/' },
    host: { type: 'string' },
    rate: { type: 'string', default: '1000' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    connections: { type: 'string', default: '32' },
  },
});
if (!a.origin) throw new Error('--origin is required');
const rate = Number(a.rate);
const durationSec = Number(a.duration);
const warmupSec = Number(a.warmup);
for (const [k, v] of Object.entries({ rate, durationSec, warmupSec })) if (!Number.isFinite(v) || v < 0) throw new Error(`--${k} must be a non-negative number`);

const pool = new Pool(a.origin, { connections: Number(a.connections), pipelining: 1, keepAliveTimeout: 60_000 });
const headers = a.host ? { host: a.host } : {};

/** Sends at `rate` for `seconds`; records latencies into `lat` when given. */
async function phase(seconds: number, lat: Float64Array | undefined): Promise<{ sent: number; ok: number; errors: number; non2xx: number; wallMs: number }> {
  const total = Math.round(seconds * rate);
  let sent = 0;
  let done = 0;
  let ok = 0;
  let errors = 0;
  let non2xx = 0;
  const start = performance.now();
  await new Promise<void>((resolve) => {
    const finish = (): void => {
      if (++done === total) resolve();
    };
    const fire = (i: number): void => {
      const scheduled = start + (i * 1000) / rate;
      pool.request({ path: a.path!, method: 'GET', headers }).then(
        async (res) => {
          await res.body.dump();
          if (res.statusCode >= 200 && res.statusCode < 400) ok++;
          else non2xx++;
          if (lat) lat[i] = performance.now() - scheduled;
          finish();
        },
        () => {
          errors++;
          if (lat) lat[i] = NaN;
          finish();
        },
      );
    };
    const tick = (): void => {
      const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
      while (sent < due) fire(sent++);
      if (sent < total) setTimeout(tick, 1);
    };
    if (total === 0) resolve();
    else tick();
  });
  return { sent, ok, errors, non2xx, wallMs: performance.now() - start };
}

if (warmupSec > 0) await phase(warmupSec, undefined);
const lat = new Float64Array(Math.round(durationSec * rate));
const r = await phase(durationSec, lat);
const valid = lat.filter((v) => !Number.isNaN(v)).sort();
const round = (v: number): number => Math.round(v * 1000) / 1000;
const out: LoadResult = {
  rate,
  durationSec,
  sent: r.sent,
  ok: r.ok,
  errors: r.errors,
  non2xx: r.non2xx,
  achievedRps: Math.round((r.sent / r.wallMs) * 1000),
  p50Ms: round(quantile(valid, 0.5)),
  p90Ms: round(quantile(valid, 0.9)),
  p99Ms: round(quantile(valid, 0.99)),
  p999Ms: round(quantile(valid, 0.999)),
  maxMs: round(valid.length ? valid[valid.length - 1]! : NaN),
  meanMs: round(valid.reduce((s, v) => s + v, 0) / (valid.length || 1)),
};
process.stdout.write(`${JSON.stringify(out)}\n`);
await pool.close();
