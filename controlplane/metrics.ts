/**
 * The control plane's Prometheus metrics at `GET /metrics` (istiod serves its own on :15014):
 * the process metrics and `istio_build{component="pilot"}` every Portico process has
 * (lib/metrics.ts), and the feed's state under istiod's names where one fits:
 *   pilot_xds                                   proxies connected (open snapshot streams)
 *   pilot_xds_pushes_total{type="snapshot"}     snapshots sent to proxies
 *   portico_controlplane_config_revision        revision being served
 *   portico_controlplane_config_rejections_total   config changes that did not compile
 */
import { Registry, registerProcessMetrics } from '../lib/metrics.ts';
import type { SnapshotFeed } from './feed.ts';

export function controlPlaneMetrics(feed: SnapshotFeed): Registry {
  const r = new Registry();
  registerProcessMetrics(r, 'pilot');
  r.gauge('pilot_xds', 'Number of proxies connected to this control plane.', [], (set) => set({}, feed.subscribers));
  r.collectedCounter('pilot_xds_pushes_total', 'Snapshots pushed to proxies, by type.', ['type'], (set) => set({ type: 'snapshot' }, feed.pushes));
  r.gauge('portico_controlplane_config_revision', 'The snapshot revision being served (0 before the first compiles).', [], (set) => set({}, feed.latest?.revision ?? 0));
  r.collectedCounter('portico_controlplane_config_rejections_total', 'Config changes that failed to compile (the previous snapshot stays).', [], (set) => set({}, feed.rejections));
  return r;
}
