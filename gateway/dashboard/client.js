// @ts-check
// The dashboard page's script (served inline by gateway/dashboard/index.ts; no build step).
// Every value from the server is rendered with textContent / setAttribute, never as markup.
(() => {
  'use strict';
  const POLL_MS = 2000;
  const SVG = 'http://www.w3.org/2000/svg';
  const PALETTE = ['#5b7cfa', '#22a884', '#e8833a', '#b05cc6', '#3ba7d9', '#d4577a', '#8c9a2c', '#6e6bd8', '#c7912e', '#2e8f9a'];

  /**
   * @param {string} tag
   * @param {Record<string, string> | null} [attrs]
   * @param {...(Node | string | null | undefined | false)} children
   * @returns {HTMLElement}
   */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    if (attrs) for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(typeof c === 'string' ? document.createTextNode(c) : c);
    return el;
  }

  /**
   * @param {string} tag
   * @param {Record<string, string | number>} [attrs]
   * @param {string} [text]
   * @returns {SVGElement}
   */
  function s(tag, attrs, text) {
    const el = document.createElementNS(SVG, tag);
    if (attrs) for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (text !== undefined) el.textContent = text;
    return el;
  }

  /** @param {string} id */
  function byId(id) {
    const el = document.getElementById(id);
    if (!el) throw new Error(`missing #${id}`);
    return el;
  }

  /** @param {string} text */
  function off(text) {
    return h('div', { class: 'off' }, text);
  }

  /** @param {number | null | undefined} ms */
  function fmtMs(ms) {
    if (ms === null || ms === undefined) return '–';
    if (ms >= 1000) return `${(ms / 1000).toFixed(ms >= 10000 ? 0 : 2)} s`;
    if (ms >= 10) return `${Math.round(ms)} ms`;
    return `${ms.toFixed(ms >= 1 ? 1 : 2)} ms`;
  }

  /** @param {number} rps */
  function fmtRps(rps) {
    return rps >= 10 ? rps.toFixed(0) : rps >= 1 ? rps.toFixed(1) : rps.toFixed(2);
  }

  /** @param {number | null} rate */
  function fmtPct(rate) {
    if (rate === null) return '–';
    const p = rate * 100;
    return `${p === 0 || p >= 10 ? p.toFixed(0) : p.toFixed(1)}%`;
  }

  /** @param {string} text */
  function colour(text) {
    let x = 0;
    for (let i = 0; i < text.length; i++) x = (x * 31 + text.charCodeAt(i)) >>> 0;
    return PALETTE[x % PALETTE.length];
  }

  /** @param {number} ms */
  function clock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour12: false });
  }

  // ---------------------------------------------------------------- service graph

  /**
   * @typedef {{ id: string, name: string, namespace: string, kind: 'ingress' | 'service' }} GNode
   * @typedef {{ seconds: number, requests: number, rps: number, errorRate: number | null, p99Ms: number | null }} EdgeWindow
   * @typedef {{ source: string, target: string, services: string[], total: { requests: number, errorRate: number | null, p99Ms: number | null }, window: EdgeWindow | null }} GEdge
   */

  /**
   * Layered layout: a node's layer is its longest path from a caller-only node; rows ordered by
   * the mean row of their callers (one barycentre pass) to keep edges from crossing.
   * @param {GNode[]} nodes
   * @param {GEdge[]} edges
   */
  function layout(nodes, edges) {
    /** @type {Map<string, number>} */
    const layer = new Map(nodes.map((n) => [n.id, 0]));
    for (let pass = 0; pass < nodes.length; pass++) {
      let changed = false;
      for (const e of edges) {
        if (e.source === e.target) continue;
        const want = (layer.get(e.source) ?? 0) + 1;
        if (want > (layer.get(e.target) ?? 0) && want < nodes.length) {
          layer.set(e.target, want);
          changed = true;
        }
      }
      if (!changed) break;
    }
    /** @type {GNode[][]} */
    const cols = [];
    for (const n of nodes) (cols[layer.get(n.id) ?? 0] ??= []).push(n);
    /** @type {Map<string, number>} */
    const row = new Map();
    cols.forEach((col, ci) => {
      if (!col) return;
      if (ci > 0) {
        /** @param {GNode} n */
        const bary = (n) => {
          const rows = edges.filter((e) => e.target === n.id && row.has(e.source)).map((e) => row.get(e.source) ?? 0);
          return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : 0;
        };
        col.sort((a, b) => bary(a) - bary(b) || a.name.localeCompare(b.name));
      } else col.sort((a, b) => a.name.localeCompare(b.name));
      col.forEach((n, i) => row.set(n.id, i - (col.length - 1) / 2));
    });
    return { layer, row, cols: cols.length, rows: Math.max(1, ...cols.map((c) => (c ? c.length : 0))) };
  }

  /** @param {GEdge} e */
  function edgeColour(e) {
    const w = e.window && e.window.requests > 0 ? e.window.errorRate : e.total.errorRate;
    if (w === null || w === 0) return 'var(--ok)';
    return w < 0.05 ? 'var(--warn)' : 'var(--bad)';
  }

  /** @param {{ nodes: GNode[], edges: GEdge[] } | null} graph @param {number} windowSeconds */
  function renderGraph(graph, windowSeconds) {
    const box = byId('graph');
    const hint = byId('graph-hint');
    if (!graph) {
      hint.textContent = '';
      box.replaceChildren(off('telemetry is off: no metrics to draw the graph from'));
      return;
    }
    hint.textContent = `rate, 5xx share and p99 over the last ${windowSeconds} s (totals since start on hover)`;
    if (graph.nodes.length === 0) {
      box.replaceChildren(off('no traffic yet: send a request through the gateway'));
      return;
    }
    const L = layout(graph.nodes, graph.edges);
    const COL = 300, ROW = 120, PADX = 90, PADY = 60, R = 24;
    const width = PADX * 2 + (L.cols - 1) * COL;
    const height = PADY * 2 + (L.rows - 1) * ROW + 20;
    /** @param {string} id */
    const pos = (id) => ({ x: PADX + (L.layer.get(id) ?? 0) * COL, y: height / 2 - 10 + (L.row.get(id) ?? 0) * ROW });
    const svg = s('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'service graph' });
    const defs = s('defs');
    for (const [id, c] of [['ok', '#1e9e6a'], ['warn', '#e09b1a'], ['bad', '#d64545']]) {
      const m = s('marker', { id: `arrow-${id}`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' });
      m.append(s('path', { d: 'M0,0 L10,5 L0,10 z', fill: c }));
      defs.append(m);
    }
    svg.append(defs);
    const edgeLayer = s('g');
    const labelLayer = s('g');
    const nodeLayer = s('g');
    svg.append(edgeLayer, labelLayer, nodeLayer);
    const names = new Map(graph.nodes.map((n) => [n.id, n.name]));
    const maxRps = Math.max(0.001, ...graph.edges.map((e) => (e.window ? e.window.rps : 0)));
    for (const e of graph.edges) {
      const a = pos(e.source), b = pos(e.target);
      const g = s('g', { class: 'edge' });
      g.dataset.source = names.get(e.source) ?? e.source;
      g.dataset.target = names.get(e.target) ?? e.target;
      const c = edgeColour(e);
      const kind = c === 'var(--ok)' ? 'ok' : c === 'var(--warn)' ? 'warn' : 'bad';
      let d, mx, my;
      if (b.x > a.x) {
        const x1 = a.x + R, x2 = b.x - R - 3, dx = (x2 - x1) / 2;
        d = `M${x1},${a.y} C${x1 + dx},${a.y} ${x2 - dx},${b.y} ${x2},${b.y}`;
        mx = (x1 + x2) / 2; my = (a.y + b.y) / 2;
      } else {
        // A call back to an earlier layer (or to itself): an arc over the top.
        const top = Math.min(a.y, b.y) - ROW * 0.7;
        d = `M${a.x},${a.y - R} C${a.x},${top} ${b.x},${top} ${b.x},${b.y - R - 3}`;
        mx = (a.x + b.x) / 2; my = top + 18;
      }
      const rps = e.window ? e.window.rps : 0;
      const strokeWidth = 1.5 + 3.5 * Math.sqrt(rps / maxRps);
      g.append(s('path', { d, fill: 'none', stroke: c, 'stroke-width': strokeWidth.toFixed(2), 'marker-end': `url(#arrow-${kind})`, opacity: 0.85 }));
      const title = s('title', {}, `${names.get(e.source)} → ${e.services.join(', ')}\n` + `since start: ${e.total.requests} requests, ${fmtPct(e.total.errorRate)} 5xx, p99 ${fmtMs(e.total.p99Ms)}`);
      g.append(title);
      edgeLayer.append(g);
      const w = e.window;
      const line1 = w ? `${fmtRps(w.rps)} rps · p99 ${fmtMs(w.requests ? w.p99Ms : null)}` : `${e.total.requests} req · p99 ${fmtMs(e.total.p99Ms)}`;
      const line2 = `${fmtPct(w && w.requests ? w.errorRate : e.total.errorRate)} 5xx`;
      const lw = Math.max(line1.length, line2.length) * 6.1 + 14;
      const lg = s('g', { class: 'edge-tag' });
      lg.dataset.source = g.dataset.source;
      lg.dataset.target = g.dataset.target;
      lg.append(s('rect', { class: 'edge-bg', x: mx - lw / 2, y: my - 17, width: lw, height: 32, rx: 6 }));
      lg.append(s('text', { class: 'edge-label', x: mx, y: my - 3, 'text-anchor': 'middle' }, line1));
      const t2 = s('text', { class: 'edge-label', x: mx, y: my + 10, 'text-anchor': 'middle', fill: c }, line2);
      lg.append(t2, s('title', {}, title.textContent ?? ''));
      labelLayer.append(lg);
    }
    for (const n of graph.nodes) {
      const p = pos(n.id);
      const g = s('g', { class: `node ${n.kind}` });
      g.dataset.node = n.name;
      const fill = n.kind === 'ingress' ? '#1d2433' : colour(n.name);
      if (n.kind === 'ingress') g.append(s('rect', { x: p.x - R, y: p.y - R, width: R * 2, height: R * 2, rx: 8, fill }));
      else g.append(s('circle', { cx: p.x, cy: p.y, r: R, fill, stroke: '#fff', 'stroke-width': 3 }));
      g.append(s('text', { x: p.x, y: p.y + 5, 'text-anchor': 'middle', fill: '#fff', 'font-size': 14, 'font-weight': 700 }, n.name.slice(0, 1).toUpperCase()));
      g.append(s('text', { class: 'node-label', x: p.x, y: p.y + R + 17, 'text-anchor': 'middle' }, n.name));
      if (n.namespace) g.append(s('text', { class: 'node-ns', x: p.x, y: p.y + R + 31, 'text-anchor': 'middle' }, n.namespace));
      g.append(s('title', {}, n.id));
      nodeLayer.append(g);
    }
    const legend = h('div', { class: 'legend' }, h('span', { class: 'l-ok' }, 'no 5xx'), h('span', { class: 'l-warn' }, '< 5% 5xx'), h('span', { class: 'l-bad' }, '≥ 5% 5xx'), h('span', { class: 'l-none' }, 'edge width = request rate'));
    box.replaceChildren(svg, legend);
  }

  // ---------------------------------------------------------------- routes

  /** @type {Map<string, number>} */
  const lastHits = new Map();

  /**
   * @typedef {{ kind: 'route', destinations: { host: string, subset?: string, port?: number, weight: number }[] } | { kind: 'redirect', to: string, code: number } | { kind: 'direct', status: number }} RouteAction
   * @typedef {{ proxy: string, virtualService: string, index: number, name?: string, source: string, ports: number[], domains: string[], match: string[], action: RouteAction, hits: number }} RouteView
   */

  /** @param {RouteAction} a */
  function actionCell(a) {
    if (a.kind === 'redirect') return h('td', null, h('span', { class: 'badge' }, `redirect ${a.code}`), ' ', h('span', { class: 'mono' }, a.to));
    if (a.kind === 'direct') return h('td', null, h('span', { class: 'badge' }, `direct response ${a.status}`));
    const td = h('td');
    for (const d of a.destinations) {
      const bar = h('span', { class: 'wbar' });
      bar.style.width = `${Math.max(2, d.weight * 0.6)}px`;
      td.append(h('div', { class: 'dest' }, h('span', { class: 'mono' }, d.host + (d.port ? `:${d.port}` : '')), d.subset ? h('span', { class: 'badge' }, d.subset) : null, bar, h('span', { class: 'muted' }, `${d.weight}%`)));
    }
    return td;
  }

  /** @param {RouteView[]} routes @param {number} proxies */
  function renderRoutes(routes, proxies) {
    const box = byId('routes');
    if (routes.length === 0) {
      box.replaceChildren(off('no HTTP routes are configured on this proxy'));
      return;
    }
    const head = h('tr', null, h('th', null, 'VirtualService'), h('th', null, 'rule'), h('th', null, 'match'), h('th', null, 'destination'), h('th', null, 'source'), h('th', { class: 'num' }, 'hits'));
    const body = h('tbody');
    let prev = '';
    for (const r of routes) {
      const group = `${r.proxy}\u0000${r.virtualService}`;
      const first = group !== prev;
      prev = group;
      const key = `${group}#${r.index}`;
      const before = lastHits.get(key);
      lastHits.set(key, r.hits);
      const hits = h('td', { class: `num hits${r.hits === 0 ? ' zero' : ''}` }, String(r.hits));
      if (before !== undefined && before !== r.hits) hits.classList.add('flash');
      const tr = h(
        'tr',
        { class: first ? 'group-start route' : 'route' },
        h('td', null, first ? h('span', { class: 'mono' }, r.virtualService) : '', first && proxies > 1 ? h('span', null, ' ', h('span', { class: 'badge proxy' }, r.proxy)) : null, first ? h('div', { class: 'muted' }, `ports ${r.ports.join(', ')} · ${r.domains.join(', ')}`) : null),
        h('td', null, `#${r.index}`, r.name ? h('span', null, ' ', h('span', { class: 'badge' }, r.name)) : null),
        h('td', null, ...(r.match.length ? r.match.map((m) => h('div', { class: 'match mono' }, m)) : [h('span', { class: 'muted' }, 'any request')])),
        actionCell(r.action),
        h('td', { class: 'mono muted' }, r.source),
        hits,
      );
      tr.dataset.vs = r.virtualService;
      tr.dataset.index = String(r.index);
      tr.dataset.hits = String(r.hits);
      body.append(tr);
    }
    box.replaceChildren(h('table', null, h('thead', null, head), body));
  }

  // ---------------------------------------------------------------- upstream health

  /**
   * @typedef {{ address: string, port: number, version?: string, workload?: string, health: string, active: number, ejections: number, ejectedForMs?: number }} EndpointView
   * @typedef {{ proxy: string, name: string, host: string, subset?: string, active: number, pending: number, overflows: number, panic: boolean, outlierDetection: boolean, endpoints: EndpointView[] }} ClusterView
   */

  /** @type {Map<string, boolean>} */
  const openProxies = new Map();

  /** @param {ClusterView[]} clusters */
  function renderUpstreams(clusters) {
    const box = byId('upstreams');
    if (clusters.length === 0) {
      box.replaceChildren(off('no upstream clusters'));
      return;
    }
    /** @type {Map<string, ClusterView[]>} */
    const byProxy = new Map();
    for (const c of clusters) {
      const list = byProxy.get(c.proxy) ?? [];
      list.push(c);
      byProxy.set(c.proxy, list);
    }
    const groups = [...byProxy].map(([proxy, list], i) => {
      const eps = list.flatMap((c) => c.endpoints);
      const down = eps.filter((e) => e.health !== 'HEALTHY').length;
      const active = list.reduce((n, c) => n + c.active, 0);
      const details = /** @type {HTMLDetailsElement} */ (h('details', { class: 'proxy-group' }));
      details.open = down > 0 || (openProxies.get(proxy) ?? i === 0);
      details.addEventListener('toggle', () => openProxies.set(proxy, details.open));
      details.dataset.proxy = proxy;
      details.append(
        h(
          'summary',
          null,
          h('span', { class: 'badge proxy' }, proxy),
          ` ${list.length} clusters · ${eps.length} endpoints · ${active} in flight · `,
          h('span', { class: `badge ${down ? 'bad' : 'ok'}` }, down ? `${down} ejected or unhealthy` : 'all healthy'),
        ),
        clusterTable(list),
      );
      return details;
    });
    box.replaceChildren(...groups);
  }

  /** @param {ClusterView[]} clusters */
  function clusterTable(clusters) {
    const head = h('tr', null, h('th', null, 'cluster'), h('th', { class: 'num' }, 'in flight'), h('th', { class: 'num' }, 'pending'), h('th', { class: 'num' }, 'overflows'), h('th', null, 'endpoints'));
    const body = h('tbody');
    for (const c of clusters) {
      const eps = h('td');
      for (const e of c.endpoints) {
        const ok = e.health === 'HEALTHY';
        const chip = h(
          'span',
          { class: 'ep' },
          h('span', { class: `dot ${e.health}` }),
          h('span', { class: 'mono' }, `${e.address}:${e.port}`),
          e.version ? h('span', { class: 'badge' }, e.version) : null,
          h('span', { class: `badge ${ok ? 'ok' : 'bad'}` }, ok ? 'healthy' : e.health.toLowerCase() + (e.ejectedForMs !== undefined ? ` ${Math.ceil(e.ejectedForMs / 1000)} s` : '')),
          h('span', { class: 'muted' }, `${e.active} active · ${e.ejections} ejections`),
        );
        chip.dataset.health = e.health;
        eps.append(chip);
      }
      if (c.endpoints.length === 0) eps.append(h('span', { class: 'muted' }, 'no endpoints'));
      const name = h('td', null, h('div', { class: 'mono' }, c.host), h('div', null, c.subset ? h('span', { class: 'badge' }, `subset ${c.subset}`) : null, c.outlierDetection ? h('span', null, ' ', h('span', { class: 'badge' }, 'outlier detection')) : null, c.panic ? h('span', null, ' ', h('span', { class: 'badge warn' }, 'panic')) : null));
      name.title = c.name;
      const tr = h('tr', { class: 'cluster' }, name, h('td', { class: 'num' }, String(c.active)), h('td', { class: 'num' }, String(c.pending)), h('td', { class: 'num' }, String(c.overflows)), eps);
      tr.dataset.cluster = c.name;
      body.append(tr);
    }
    return h('table', null, h('thead', null, head), body);
  }

  // ---------------------------------------------------------------- traces

  /**
   * @typedef {{ traceId: string, root: string, rootService: string, request?: string, status?: number, error: boolean, startMs: number, durationMs: number, spans: number, services: number }} TraceSummary
   * @typedef {{ spanId: string, parentId?: string, depth: number, name: string, service: string, offsetUs: number, durationUs: number, error: boolean, status?: number, url?: string, cluster?: string, flags?: string }} WaterfallSpan
   * @typedef {{ traceId: string, startMs: number, durationUs: number, spans: WaterfallSpan[] }} TraceDetail
   */

  function selectedTrace() {
    const m = /^#trace=([0-9a-fA-F]{1,32})$/.exec(location.hash);
    return m ? m[1] : undefined;
  }

  /** @param {number | undefined} status @param {boolean} error */
  function statusBadge(status, error) {
    const cls = error || (status !== undefined && status >= 500) ? 'bad' : status !== undefined && status >= 400 ? 'warn' : 'ok';
    return h('span', { class: `badge ${cls}` }, status === undefined ? (error ? 'error' : '–') : String(status));
  }

  /** @param {{ recent: TraceSummary[], slow: TraceSummary[], kept: number } | null} traces */
  function renderTraces(traces) {
    const box = byId('traces');
    const slowList = byId('slow');
    const hint = byId('traces-hint');
    if (!traces) {
      hint.textContent = '';
      box.replaceChildren(off('telemetry is off: no traces are kept'));
      slowList.replaceChildren();
      return;
    }
    hint.textContent = `${traces.kept} kept · newest first`;
    if (traces.recent.length === 0) {
      box.replaceChildren(off('no traces yet (sampling may be low: Istio’s default is 1%)'));
      slowList.replaceChildren();
      return;
    }
    const slowestId = traces.slow.length ? traces.slow[0].traceId : undefined;
    const max = Math.max(...traces.recent.map((t) => t.durationMs), 0.001);
    const sel = selectedTrace();
    const body = h('tbody');
    for (const t of traces.recent) {
      const bar = h('span', { class: 'bar' });
      bar.style.width = `${Math.max(2, (t.durationMs / max) * 70)}px`;
      const tr = h(
        'tr',
        { class: 'tr-row' },
        h('td', { class: 'muted mono' }, clock(t.startMs)),
        h('td', null, h('div', { class: 'op' }, t.root, t.traceId === slowestId ? h('span', null, ' ', h('span', { class: 'badge warn' }, 'slowest')) : null), t.request ? h('div', { class: 'req', title: t.request }, t.request) : null),
        h('td', null, statusBadge(t.status, t.error)),
        h('td', { class: 'num' }, `${t.spans}`),
        h('td', { class: 'num' }, h('div', { class: 'dur' }, bar, fmtMs(t.durationMs))),
      );
      if (t.traceId === slowestId) tr.classList.add('slowest');
      if (t.traceId === sel) tr.classList.add('selected');
      tr.dataset.trace = t.traceId;
      tr.title = `trace ${t.traceId} · ${t.services} services`;
      tr.addEventListener('click', () => {
        location.hash = `trace=${t.traceId}`;
      });
      body.append(tr);
    }
    box.replaceChildren(h('div', { class: 'trace-list' }, h('table', { class: 'traces' }, h('thead', null, h('tr', null, h('th', null, 'time'), h('th', null, 'root operation'), h('th', null, 'status'), h('th', { class: 'num' }, 'spans'), h('th', { class: 'num' }, 'duration'))), body)));
    slowList.replaceChildren(
      ...traces.slow.map((t) => {
        const a = h('a', { href: `#trace=${t.traceId}` }, `${fmtMs(t.durationMs)} — ${t.request ?? t.root}`);
        a.dataset.trace = t.traceId;
        return h('li', { class: 'slow-item' }, a, ' ', h('span', { class: 'muted' }, `${clock(t.startMs)} · ${t.spans} spans`));
      }),
    );
  }

  /** @param {number} us */
  const fmtUs = (us) => fmtMs(us / 1000);

  /** @param {TraceDetail} t */
  function renderWaterfall(t) {
    const box = byId('waterfall');
    byId('waterfall-hint').textContent = `${t.spans.length} spans · ${new Set(t.spans.map((x) => x.service)).size} services`;
    const total = Math.max(1, t.durationUs);
    const head = h('div', { class: 'wf-head' }, h('span', { class: 'mono' }, t.traceId), h('span', { class: 'muted' }, new Date(t.startMs).toLocaleString()), h('strong', null, fmtUs(t.durationUs)));
    const grid = h('div', { class: 'wf' });
    const axis = h('div', { class: 'wf-axis' });
    for (const f of [0, 0.25, 0.5, 0.75, 1]) {
      const tick = h('span', { class: `wf-tick${f === 0 ? ' first' : f === 1 ? ' last' : ''}` }, fmtUs(total * f));
      tick.style.left = `${f * 100}%`;
      axis.append(tick);
    }
    grid.append(h('div', { class: 'wf-axis muted' }, 'service · operation'), axis);
    for (const sp of t.spans) {
      const label = h('div', { class: 'wf-label' }, h('span', { class: 'tree' }, sp.depth ? '\u00a0\u00a0'.repeat(sp.depth - 1) + '└\u00a0' : ''), h('span', { class: 'svc' }, sp.service), h('span', { class: 'name' }, sp.name));
      label.title = `${sp.service} ${sp.name}`;
      const left = (sp.offsetUs / total) * 100;
      const width = Math.max(0.4, (sp.durationUs / total) * 100);
      const bar = h('div', { class: `wf-bar${sp.error ? ' error' : ''}` });
      bar.style.left = `${left}%`;
      bar.style.width = `${width}%`;
      bar.style.background = colour(sp.service);
      const dur = h('span', { class: 'wf-dur' }, `${fmtUs(sp.durationUs)}${sp.status !== undefined ? ` · ${sp.status}` : ''}${sp.flags && sp.flags !== '-' ? ` ${sp.flags}` : ''}`);
      // Beside the bar when there is room, else inside it.
      if (left + width <= 72) dur.style.left = `${left + width + 0.8}%`;
      else if (left >= 28) dur.style.right = `${100 - left + 0.8}%`;
      else {
        dur.style.left = `${left + 0.8}%`;
        dur.classList.add('inside');
      }
      const track = h('div', { class: 'wf-track' }, bar, dur);
      track.title = [sp.url, sp.cluster ? `upstream ${sp.cluster}` : '', `start +${fmtUs(sp.offsetUs)}`].filter(Boolean).join('\n');
      const row = [label, track];
      for (const el of row) el.dataset.span = sp.spanId;
      label.classList.add('span-row');
      grid.append(...row);
    }
    box.replaceChildren(head, grid);
  }

  let shownTrace = '';
  async function showTrace() {
    const id = selectedTrace();
    for (const el of document.querySelectorAll('.tr-row')) el.classList.toggle('selected', el instanceof HTMLElement && el.dataset.trace === id);
    if (!id || id === shownTrace) return;
    shownTrace = id;
    const box = byId('waterfall');
    box.replaceChildren(off('loading…'));
    try {
      const res = await fetch(`/dashboard/data?trace=${encodeURIComponent(id)}`, { cache: 'no-store' });
      const body = await res.json();
      if (!res.ok) {
        box.replaceChildren(off(String(body.error ?? `HTTP ${res.status}`)));
        return;
      }
      renderWaterfall(/** @type {TraceDetail} */ (body));
    } catch (err) {
      box.replaceChildren(off(`could not load the trace: ${err instanceof Error ? err.message : String(err)}`));
    }
  }

  // ---------------------------------------------------------------- polling

  async function poll() {
    const status = byId('status');
    try {
      const res = await fetch('/dashboard/data', { cache: 'no-store' });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const d = await res.json();
      byId('proxies').textContent = `proxies: ${d.proxies.join(', ')}`;
      renderGraph(d.graph, d.rateWindowSeconds);
      renderRoutes(d.routes, d.proxies.length);
      renderUpstreams(d.clusters);
      renderTraces(d.traces);
      status.textContent = `live · ${clock(d.generatedAt)}`;
      status.className = 'status live';
      document.body.dataset.loaded = String(Number(document.body.dataset.loaded ?? '0') + 1);
    } catch (err) {
      status.textContent = `disconnected (${err instanceof Error ? err.message : String(err)})`;
      status.className = 'status down';
    }
  }

  window.addEventListener('hashchange', () => void showTrace());
  void poll().then(() => showTrace());
  setInterval(() => void poll(), POLL_MS);
})();
