/** A hand-written SVG chart: grouped req/s bars per scenario per target, p99 under each value. */
import type { BenchResults } from './results.ts';
import { problemLabel, TARGETS, targetsOf, type TargetName } from './report.ts';

const COLORS: Record<TargetName, string> = { direct: '#9e9e9e', 'authz-check': '#ef6c00', 'oauth2-auth': '#8e24aa', nginx: '#2e7d32', portico: '#1565c0' };

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** 1, 2 or 5 × 10^k, the first at least `raw`. */
function niceStep(raw: number): number {
  const pow = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * pow >= raw) return m * pow;
  return 10 * pow;
}

const kilo = (n: number): string => (n >= 1000 ? `${(n / 1000).toFixed(n >= 100_000 ? 0 : 1)}k` : `${Math.round(n)}`);
const ms = (n: number): string => (n < 10 ? `${n.toFixed(2)} ms` : `${n.toFixed(1)} ms`);

export function renderChart(r: BenchResults): string {
  const scenarios = r.scenarios;
  const goals = r.goals ?? [];
  // Wide enough that p99 labels of neighbouring bars do not collide.
  const W = Math.max(960, 240 * scenarios.length);
  const H = 540 + (goals.length ? 30 + 18 * goals.length : 0);
  const left = 80;
  const right = 30;
  const top = 100;
  const bottom = H - 420;
  const plotW = W - left - right;
  const plotH = H - top - bottom;
  const shown = TARGETS.filter((t) => scenarios.some((s) => targetsOf(s).includes(t)));
  const maxRps = Math.max(1, ...scenarios.flatMap((s) => TARGETS.map((t) => s.runs[t]?.wrk.reqPerSec ?? 0)));
  const step = niceStep(maxRps / 5);
  const yMax = Math.ceil(maxRps / step) * step;
  const y = (v: number): number => top + plotH - (v / yMax) * plotH;
  const groupW = plotW / Math.max(1, scenarios.length);
  const barW = Math.min(90, (groupW * 0.8) / Math.max(1, ...scenarios.map((s) => targetsOf(s).length)));

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="30" text-anchor="middle" font-size="20" font-weight="bold">Portico vs nginx vs direct: requests/s (higher is better)</text>`);
  const sub = `${r.date.slice(0, 10)} · ${r.host.cpus}× ${r.host.cpuModel} · node ${r.host.node} · wrk -t${r.settings.threads} -c${r.settings.connections} -d${r.settings.durationSec}s · 1 worker each${r.quick ? ' · QUICK SMOKE RUN' : ''}${r.cpuProfiled ? ' · CPU-PROFILED' : ''}`;
  out.push(`<text x="${W / 2}" y="52" text-anchor="middle" font-size="12" fill="#444">${esc(sub)}</text>`);

  // Legend
  shown.forEach((t, i) => {
    const lx = left + i * 130;
    out.push(`<rect x="${lx}" y="68" width="14" height="14" fill="${COLORS[t]}"/>`);
    out.push(`<text x="${lx + 20}" y="80" font-size="13">${t}</text>`);
  });
  out.push(`<text x="${W - right}" y="80" text-anchor="end" font-size="12" fill="#444">label: req/s, then p99 latency</text>`);

  // Axis and grid
  for (let v = 0; v <= yMax + 1e-9; v += step) {
    const yy = y(v).toFixed(1);
    out.push(`<line x1="${left}" x2="${W - right}" y1="${yy}" y2="${yy}" stroke="#e0e0e0"/>`);
    out.push(`<text x="${left - 8}" y="${Number(yy) + 4}" text-anchor="end" font-size="12" fill="#444">${kilo(v)}</text>`);
  }
  out.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${top + plotH}" stroke="#333"/>`);
  out.push(`<line x1="${left}" x2="${W - right}" y1="${top + plotH}" y2="${top + plotH}" stroke="#333"/>`);
  out.push(`<text transform="translate(20 ${top + plotH / 2}) rotate(-90)" text-anchor="middle" font-size="13">requests / second</text>`);

  scenarios.forEach((s, gi) => {
    const gx = left + gi * groupW;
    const targets = targetsOf(s);
    const start = gx + (groupW - barW * targets.length) / 2;
    targets.forEach((t, bi) => {
      const run = s.runs[t];
      const bx = start + bi * barW;
      const cx = bx + barW / 2;
      if (!run) {
        out.push(`<text x="${cx}" y="${top + plotH - 6}" text-anchor="middle" font-size="11" fill="#999">skipped</text>`);
        return;
      }
      const v = run.wrk.reqPerSec;
      const by = y(v);
      out.push(`<rect x="${(bx + 3).toFixed(1)}" y="${by.toFixed(1)}" width="${(barW - 6).toFixed(1)}" height="${(top + plotH - by).toFixed(1)}" fill="${COLORS[t]}"><title>${esc(`${s.name} ${t}: ${Math.round(v)} req/s, p50 ${ms(run.wrk.p50Ms)}, p99 ${ms(run.wrk.p99Ms)}`)}</title></rect>`);
      out.push(`<text x="${cx.toFixed(1)}" y="${(by - 20).toFixed(1)}" text-anchor="middle" font-size="12" font-weight="bold">${kilo(v)}</text>`);
      out.push(`<text x="${cx.toFixed(1)}" y="${(by - 6).toFixed(1)}" text-anchor="middle" font-size="11" fill="#333">p99 ${ms(run.wrk.p99Ms)}</text>`);
    });
    const mid = gx + groupW / 2;
    out.push(`<text x="${mid}" y="${top + plotH + 22}" text-anchor="middle" font-size="14" font-weight="bold">${esc(s.name)}</text>`);
    out.push(`<text x="${mid}" y="${top + plotH + 40}" text-anchor="middle" font-size="11" fill="#444">${esc(s.title)}</text>`);
    if (s.ratios && s.pass) {
      const ok = s.pass.reqPerSec && s.pass.p99 && s.pass.clean;
      const color = ok ? '#2e7d32' : '#c62828';
      const noise = s.pass.clean ? '' : ` · ${problemLabel([s.runs.portico, s.runs.nginx]) ?? 'ERRORS'}`;
      const l1 = `Portico/nginx req/s ${s.ratios.reqPerSec.toFixed(2)}× ${s.pass.reqPerSec ? 'PASS' : 'FAIL'}`;
      const l2 = `p99 ${s.ratios.p99.toFixed(2)}× ${s.pass.p99 ? 'PASS' : 'FAIL'}${noise}`;
      out.push(`<text x="${mid}" y="${top + plotH + 60}" text-anchor="middle" font-size="11" font-weight="bold" fill="${color}">${esc(l1)}</text>`);
      out.push(`<text x="${mid}" y="${top + plotH + 76}" text-anchor="middle" font-size="11" font-weight="bold" fill="${color}">${esc(l2)}</text>`);
    }
  });
  goals.forEach((g, i) => {
    const yy = 524 + 18 * i;
    const value = g.value === undefined ? 'not run' : g.kind === 'req-ratio' ? `${g.value.toFixed(2)}×` : ms(g.value);
    const verdict = g.pass === undefined ? '' : g.pass ? 'PASS' : 'FAIL';
    const noise = problemLabel([g]);
    const color = g.pass === undefined ? '#666' : g.pass ? '#2e7d32' : '#c62828';
    const text = `${g.label}: ${value} (target ${g.want}) ${verdict}${noise ? ` · ${noise}` : ''} — ${g.from}`;
    out.push(`<text x="${left}" y="${yy}" font-size="12" font-weight="bold" fill="${color}">${esc(text)}</text>`);
  });
  out.push(`<text x="${left}" y="${H - 14}" font-size="11" fill="#666">${esc(`targets: Portico req/s ≥ ${r.targets.minReqPerSecRatio}× nginx, p99 ≤ ${r.targets.maxP99Ratio}× nginx · generated by npm run bench (bench/run.ts)`)}</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
