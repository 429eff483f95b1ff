/**
 * Traffic capture for an injected pod, like Istio's `istio-init` (tools/istio-iptables, golden
 * files in pkg/capture/testdata): nat-table chains ISTIO_INBOUND, ISTIO_REDIRECT,
 * ISTIO_IN_REDIRECT and ISTIO_OUTPUT, traffic of the proxy's uid/gid 1337 excluded, 127.0.0.6 as
 * the inbound passthrough source, outbound to 15001. Pure: renders iptables-restore input.
 *
 * The one departure, and why: Envoy learns where a redirected connection was going from
 * SO_ORIGINAL_DST and serves every inbound port on one listener (15006). Node cannot read that
 * socket option (no public API), so Portico
 *   - inbound: redirects each captured port to its own sidecar listener (ISTIO_IN_REDIRECT has
 *     one `--dport P -j REDIRECT --to-ports L` rule per port instead of one catch-all to 15006);
 *     the injector knows the containerPorts and hands the same map to the init container and the
 *     sidecar (`9080=15100,...`). Ports not in the map are not captured (Istio's default is all);
 *   - outbound: redirects to 15001 as Istio does, where the sidecar routes HTTP by Host /
 *     :authority through the mesh table. The original destination address and port are not
 *     known, so non-HTTP outbound TCP (databases, TLS the app originates) cannot be forwarded:
 *     exclude it with `traffic.sidecar.istio.io/excludeOutboundPorts` or `excludeOutboundIPRanges`.
 * IPv6 is not captured (no ip6tables rules).
 */

export const OUTBOUND_CAPTURE_PORT = 15001;
/** The first per-port inbound listener (Istio's single one is 15006). */
export const INBOUND_LISTENER_BASE = 15100;
export const PROXY_UID = 1337;
export const PROXY_GID = 1337;
/** Istio's inbound passthrough source address (traffic from it to lo is never captured). */
export const INBOUND_PASSTHROUGH_SOURCE = '127.0.0.6';

export interface CaptureConfig {
  /** Captured inbound port → the sidecar listener it is redirected to. */
  readonly inbound: ReadonlyMap<number, number>;
  readonly excludeOutboundPorts: readonly number[];
  readonly includeOutboundPorts: readonly number[];
  /** `['*']` = all (Istio's default); else CIDRs whose outbound traffic is captured. */
  readonly includeOutboundIPRanges: readonly string[];
  readonly excludeOutboundIPRanges: readonly string[];
  readonly uid?: number;
  readonly gid?: number;
  readonly outboundPort?: number;
}

/** `9080=15100,9090=15101` → map; `where` names the flag in errors. */
export function parseInboundMap(text: string | undefined, where: string): Map<number, number> {
  const out = new Map<number, number>();
  if (!text?.trim()) return out;
  for (const part of text.split(',')) {
    const m = /^\s*(\d+)=(\d+)\s*$/.exec(part);
    const [a, l] = m ? [Number(m[1]), Number(m[2])] : [NaN, NaN];
    if (!m || a < 1 || a > 65535 || l < 1 || l > 65535) throw new Error(`${where}: '${part}' is not APP_PORT=LISTENER_PORT`);
    if (out.has(a)) throw new Error(`${where}: port ${a} given twice`);
    out.set(a, l);
  }
  return out;
}

/**
 * The rules as `iptables-restore --noflush` input. With `existing` (what `iptables-save -t nat`
 * prints), the jumps from PREROUTING/OUTPUT that are already there are not added again, so
 * re-running the init container does not stack them (declaring the chains flushes them).
 */
export function renderRules(c: CaptureConfig, existing = ''): string {
  const uid = c.uid ?? PROXY_UID;
  const gid = c.gid ?? PROXY_GID;
  const lines: string[] = ['*nat', ':ISTIO_INBOUND - [0:0]', ':ISTIO_REDIRECT - [0:0]', ':ISTIO_IN_REDIRECT - [0:0]', ':ISTIO_OUTPUT - [0:0]'];
  const add = (rule: string): void => {
    lines.push(rule);
  };
  const jump = (rule: string): void => {
    if (!existing.split('\n').some((l) => l.trim() === rule)) add(rule);
  };
  add(`-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports ${c.outboundPort ?? OUTBOUND_CAPTURE_PORT}`);
  for (const [port, listener] of [...c.inbound].sort((a, b) => a[0] - b[0])) add(`-A ISTIO_IN_REDIRECT -p tcp -m tcp --dport ${port} -j REDIRECT --to-ports ${listener}`);
  jump('-A PREROUTING -p tcp -j ISTIO_INBOUND');
  for (const port of [...c.inbound.keys()].sort((a, b) => a - b)) add(`-A ISTIO_INBOUND -p tcp -m tcp --dport ${port} -j ISTIO_IN_REDIRECT`);
  jump('-A OUTPUT -p tcp -j ISTIO_OUTPUT');
  add(`-A ISTIO_OUTPUT -s ${INBOUND_PASSTHROUGH_SOURCE}/32 -o lo -j RETURN`);
  // The proxy calling its own pod's IP (an app reaching itself through its Service) goes to
  // inbound; any other traffic of the proxy, and an app's traffic to itself on lo, is left alone.
  for (const [flag, id] of [['--uid-owner', uid], ['--gid-owner', gid]] as const) {
    add(`-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner ${flag} ${id} -j ISTIO_IN_REDIRECT`);
    add(`-A ISTIO_OUTPUT -o lo -m owner ! ${flag} ${id} -j RETURN`);
    add(`-A ISTIO_OUTPUT -m owner ${flag} ${id} -j RETURN`);
  }
  add('-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN');
  for (const p of c.excludeOutboundPorts) add(`-A ISTIO_OUTPUT -p tcp -m tcp --dport ${p} -j RETURN`);
  for (const p of c.includeOutboundPorts) add(`-A ISTIO_OUTPUT -p tcp -m tcp --dport ${p} -j ISTIO_REDIRECT`);
  for (const cidr of c.excludeOutboundIPRanges) add(`-A ISTIO_OUTPUT -d ${cidr} -j RETURN`);
  if (c.includeOutboundIPRanges.includes('*')) add('-A ISTIO_OUTPUT -j ISTIO_REDIRECT');
  else for (const cidr of c.includeOutboundIPRanges) add(`-A ISTIO_OUTPUT -d ${cidr} -j ISTIO_REDIRECT`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}
