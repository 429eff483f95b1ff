/**
 * Traffic mirroring (Istio `mirror`/`mirrors`, Envoy request_mirror_policies): a copy of the
 * request goes to each mirror cluster with `-shadow` appended to the host, fire-and-forget. The
 * mirror's answer and errors never affect the client's response. Only requests whose body is
 * absent or buffered are mirrored (a streamed body can be read once).
 */
import type { Cluster, Mirror } from '../config/snapshot.ts';
import type { Balancer } from './balancer.ts';
import type { RequestBody } from './forward.ts';
import type { HeaderMap } from './headers.ts';
import type { UpstreamPools } from './pools.ts';

/** `host:port` → `host-shadow:port`, as Envoy names the mirrored authority. */
export function shadowAuthority(authority: string): string {
  const colon = authority.lastIndexOf(':');
  if (colon > 0 && !authority.endsWith(']')) return `${authority.slice(0, colon)}-shadow${authority.slice(colon)}`;
  return `${authority}-shadow`;
}

export function sendMirrors(
  mirrors: readonly Mirror[],
  clusters: ReadonlyMap<string, Cluster>,
  deps: { pools: UpstreamPools; balancer: Balancer },
  request: { method: string; path: string; headers: HeaderMap; body: RequestBody },
): number {
  if (mirrors.length === 0 || request.body.kind === 'stream') return 0;
  let sent = 0;
  for (const m of mirrors) {
    if (m.percentage < 100 && Math.random() * 100 >= m.percentage) continue;
    const cluster = clusters.get(m.cluster);
    const picked = cluster ? deps.balancer.pick(cluster) : undefined;
    if (!cluster || !picked) continue;
    const headers: HeaderMap = { ...request.headers, host: shadowAuthority(String(request.headers['host'] ?? '')) };
    deps.pools
      .get(cluster, picked.endpoint)
      .request({ method: request.method as 'GET', path: request.path, headers: headers as Record<string, string>, body: request.body.kind === 'buffered' ? request.body.data : null })
      .then((r) => r.body.dump(), () => undefined);
    sent++;
  }
  return sent;
}
