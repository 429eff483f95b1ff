/**
 * Stage 2: check loaded resources, reporting every problem at once. Per-resource shape checks come
 * from the schemas in config/kinds/; cross-resource checks (hosts, subsets, gateways, ports, TLS
 * files) live here. The only I/O is reading the certificate files the config names; their
 * contents are handed to compile so that it stays pure.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { ConfigErrorCodes, sortIssues, type ConfigErrorCode, type ConfigIssue } from './errors.ts';
import type { RawClientTls, RawTrafficPolicy } from './kinds/destinationrule.ts';
import type { RawServerTls } from './kinds/gateway.ts';
import { KINDS } from './kinds/index.ts';
import type { RawDestination, RawHttpRoute } from './kinds/virtualservice.ts';
import type { LoadResult, Resource } from './load.ts';
import {
  arrayOf, fqdn, gatewayRef, indexModel, intersectHosts, lookupDestinationRule, lookupService, selectorsOverlap,
  serverNamespaceAllows, splitServerHost, type ModelIndex,
} from './model.ts';
import { childPath, didYouMean, isPlainObject, protoField, validateValue, type Reporter } from './schema.ts';
import { classifyPatch, type RawPatch } from './kinds/envoyfilter.ts';
import type { RawExtensionProvider } from './kinds/meshconfig.ts';
import { resolveEnvoyServer, resolveProviderServer, type ServerProblem } from './policy.ts';
import { findDelegate } from './delegate.ts';

export interface ValidateOptions {
  /** Where `credentialName` secrets live: `<dir>/<name>/tls.crt` + `tls.key`. Default `certs/out/credentials` under cwd. */
  readonly secretsDir?: string;
  readonly cwd?: string;
}

/** Certificate/key/CA files resolved for one `tls` block, as absolute paths. */
export interface ResolvedTls {
  readonly certFile?: string;
  readonly keyFile?: string;
  readonly caFile?: string;
}

/** What compile needs besides the resources: resolved TLS paths and the bytes read from them. */
export interface ValidatedConfig {
  readonly load: LoadResult;
  readonly index: ModelIndex;
  /** Keyed by `<kind>/<ns>/<name>:<field path of the tls block>`. */
  readonly tls: ReadonlyMap<string, ResolvedTls>;
  /** Absolute path → contents, for every certificate file read. */
  readonly fileContents: ReadonlyMap<string, Buffer>;
}

export interface ValidateResult {
  readonly errors: readonly ConfigIssue[];
  readonly warnings: readonly ConfigIssue[];
  /** One line each for things skipped on purpose (Kubernetes kinds Portico does not read). */
  readonly infos: readonly ConfigIssue[];
  readonly config: ValidatedConfig;
}

export function tlsKey(r: Resource, path: string): string {
  return `${r.kind}/${r.key}:${path}`;
}

function reporterFor(r: Resource, issues: ConfigIssue[]): Reporter {
  return {
    report(path: string, code: ConfigErrorCode, message: string, severity: 'error' | 'warning' = 'error') {
      issues.push({ file: r.file, line: r.lineOf(path), kind: r.kind, name: r.name, path, message, code, severity });
    },
  };
}

/** Validates everything; never throws for bad input. */
export async function validateConfig(load: LoadResult, opts: ValidateOptions = {}): Promise<ValidateResult> {
  const cwd = opts.cwd ?? process.cwd();
  const secretsDir = resolve(cwd, opts.secretsDir ?? 'certs/out/credentials');
  const issues: ConfigIssue[] = [...load.issues];
  const reporters = new Map<Resource, Reporter>();
  const rep = (r: Resource): Reporter => {
    let x = reporters.get(r);
    if (!x) reporters.set(r, (x = reporterFor(r, issues)));
    return x;
  };

  // 1. Shapes.
  for (const r of load.resources) {
    const def = KINDS.get(r.kind);
    if (def) validateValue(def.spec, r.spec, 'spec', rep(r));
  }

  // 2. Duplicates.
  const seen = new Map<string, Resource>();
  for (const r of load.resources) {
    const id = `${r.kind}/${r.key}`;
    const first = seen.get(id);
    if (first) {
      rep(r).report('metadata.name', ConfigErrorCodes.DUPLICATE_RESOURCE, `duplicate ${r.kind} ${r.key} (first defined at ${first.file}:${first.line})`);
    } else seen.set(id, r);
  }

  const index = indexModel(load.resources);
  checkVirtualServices(index, rep);
  checkGatewayPorts(index, rep);
  checkWorkloadPorts(index, rep);
  checkPolicies(index, rep);
  checkL4(index, rep);

  // 3. TLS material.
  const tls = new Map<string, ResolvedTls>();
  const fileContents = new Map<string, Buffer>();
  const tlsCtx: TlsContext = { secretsDir, tls, fileContents };
  const tlsTasks: Promise<void>[] = [];
  for (const gw of index.gateways) {
    arrayOf<{ tls?: RawServerTls; port?: { protocol?: string } }>(gw.spec?.servers).forEach((server, i) => {
      if (!isPlainObject(server) || !isPlainObject(server.tls)) return;
      const proto = server.port?.protocol;
      if (proto !== 'HTTPS' && proto !== 'TLS') return;
      tlsTasks.push(checkServerTls(gw, server.tls, childPath(`spec.servers[${i}]`, 'tls'), rep(gw), tlsCtx));
    });
  }
  for (const dr of index.destinationRules) {
    const policies: [RawTrafficPolicy | undefined, string][] = [[dr.spec?.trafficPolicy, 'spec.trafficPolicy']];
    arrayOf<{ trafficPolicy?: RawTrafficPolicy }>(dr.spec?.subsets).forEach((s, i) => policies.push([s?.trafficPolicy, `spec.subsets[${i}].trafficPolicy`]));
    for (const [p, path] of policies) {
      if (!isPlainObject(p)) continue;
      if (isPlainObject(p.tls)) tlsTasks.push(checkClientTls(dr, p.tls, `${path}.tls`, rep(dr), tlsCtx));
      arrayOf<{ tls?: RawClientTls }>(p.portLevelSettings).forEach((pl, j) => {
        if (isPlainObject(pl?.tls)) tlsTasks.push(checkClientTls(dr, pl.tls, `${path}.portLevelSettings[${j}].tls`, rep(dr), tlsCtx));
      });
    }
  }
  await Promise.all(tlsTasks);

  const sorted = sortIssues(issues);
  return {
    errors: sorted.filter((i) => i.severity === 'error'),
    warnings: sorted.filter((i) => i.severity === 'warning'),
    infos: sorted.filter((i) => i.severity === 'info'),
    config: { load, index, tls, fileContents },
  };
}


function checkVirtualServices(idx: ModelIndex, rep: (r: Resource) => Reporter): void {
  for (const vs of idx.virtualServices) {
    const spec = vs.spec;
    if (!isPlainObject(spec)) continue;
    const r = rep(vs);
    const gateways = arrayOf<string>(spec.gateways).filter((g) => typeof g === 'string');
    const hosts = arrayOf<string>(spec.hosts).filter((h) => typeof h === 'string');
    if (hosts.length === 0) {
      // No hosts: a delegate VirtualService (Istio's ValidateVirtualService rules for delegates).
      if (gateways.length > 0) r.report('spec.gateways', ConfigErrorCodes.CONFLICTING_ACTIONS, 'a delegate VirtualService (no hosts) must not set gateways: its root decides where it applies');
      for (const k of ['tcp', 'tls'] as const) if (arrayOf(spec[k]).length > 0) r.report(`spec.${k}`, ConfigErrorCodes.CONFLICTING_ACTIONS, `a delegate VirtualService (no hosts) supports only http routes, not ${k}`);
      arrayOf<RawHttpRoute>(spec.http).forEach((rule, i) => {
        if (isPlainObject(rule) && rule.delegate) r.report(`spec.http[${i}].delegate`, ConfigErrorCodes.CONFLICTING_ACTIONS, 'a delegate VirtualService cannot delegate again');
      });
      const referenced = idx.virtualServices.some((root) =>
        arrayOf<RawHttpRoute>(root.spec.http).some((rule) => {
          const d = isPlainObject(rule) ? (rule as RawHttpRoute).delegate : undefined;
          return d !== undefined && `${d.namespace || root.namespace}/${d.name ?? ''}` === vs.key;
        }),
      );
      if (!referenced) r.report('spec.hosts', ConfigErrorCodes.REQUIRED, "no hosts: this is a delegate VirtualService, but no root VirtualService's http[].delegate names it; it serves nothing", 'warning');
    }
    arrayOf<RawHttpRoute>(spec.http).forEach((rule, i) => {
      const d = isPlainObject(rule) ? (rule as RawHttpRoute).delegate : undefined;
      if (!d || hosts.length === 0) return;
      if (!findDelegate(idx, vs, d)) {
        r.report(`spec.http[${i}].delegate`, ConfigErrorCodes.UNKNOWN_HOST, `no delegate VirtualService ${d.namespace || vs.namespace}/${d.name ?? ''} without hosts exported to ${vs.namespace}; the rule is left out, as Istio does`, 'warning');
      }
    });
    const checkGatewayList = (list: unknown, path: string): void => {
      arrayOf<string>(list).forEach((g, i) => {
        if (typeof g !== 'string' || g === '') return;
        const ref = gatewayRef(g, vs.namespace);
        // Istio accepts it and `istioctl analyze` warns (IST0101 ReferencedResourceNotFound).
        if (ref !== 'mesh' && !idx.gatewayKeys.has(ref)) {
          r.report(`${path}[${i}]`, ConfigErrorCodes.UNKNOWN_GATEWAY, `gateway '${g}' does not exist (looked for Gateway ${ref}); the rules bound to it are not served`, 'warning');
        }
      });
    };
    checkGatewayList(spec.gateways, 'spec.gateways');

    // Hosts the bound gateways actually serve, to warn about VirtualService hosts no server covers.
    for (const g of gateways) {
      const ref = gatewayRef(g, vs.namespace);
      const gw = idx.gateways.find((x) => x.key === ref);
      if (!gw) continue;
      const serverHosts = arrayOf<{ hosts?: string[] }>(gw.spec?.servers).flatMap((s) => arrayOf<string>(s?.hosts)).map(splitServerHost);
      hosts.forEach((h, i) => {
        const ok = serverHosts.some((sh) => serverNamespaceAllows(sh.ns, gw.namespace, vs.namespace) && intersectHosts(h, sh.host));
        if (!ok) r.report(`spec.hosts[${i}]`, ConfigErrorCodes.HOST_NOT_ON_GATEWAY, `host '${h}' is not served by any server of Gateway ${ref}`, 'warning');
      });
    }

    arrayOf<RawHttpRoute>(spec.http).forEach((rule, i) => {
      if (!isPlainObject(rule)) return;
      const base = `spec.http[${i}]`;
      arrayOf<{ gateways?: string[] }>(rule.match).forEach((m, j) => {
        if (isPlainObject(m)) checkGatewayList(m.gateways, `${base}.match[${j}].gateways`);
      });
      arrayOf<{ destination?: RawDestination }>(rule.route).forEach((d, j) => {
        if (isPlainObject(d)) checkDestination(idx, vs, d.destination, `${base}.route[${j}].destination`, r);
      });
      if (isPlainObject(rule.mirror)) checkDestination(idx, vs, rule.mirror as unknown as RawDestination, `${base}.mirror`, r);
      arrayOf<{ destination?: RawDestination }>(rule.mirrors).forEach((m, j) => {
        if (isPlainObject(m)) checkDestination(idx, vs, m.destination, `${base}.mirrors[${j}].destination`, r);
      });
    });
    for (const section of ['tcp', 'tls'] as const) {
      arrayOf<{ match?: { gateways?: string[] }[]; route?: { destination?: RawDestination }[] }>(spec[section]).forEach((rule, i) => {
        if (!isPlainObject(rule)) return;
        arrayOf<{ gateways?: string[] }>(rule.match).forEach((m, j) => {
          if (isPlainObject(m)) checkGatewayList(m.gateways, `spec.${section}[${i}].match[${j}].gateways`);
        });
        arrayOf<{ destination?: RawDestination }>(rule.route).forEach((d, j) => {
          if (isPlainObject(d)) checkDestination(idx, vs, d.destination, `spec.${section}[${i}].route[${j}].destination`, r);
        });
      });
    }
  }
}

/**
 * Host known to the registry (or DNS-resolvable), subset defined, port consistent with the
 * service. Istio's webhook accepts all of these and `istioctl analyze` warns (IST0101
 * ReferencedResourceNotFound), so they are warnings: an unknown subset gets no endpoints (503).
 */
function checkDestination(idx: ModelIndex, vs: Resource, dest: RawDestination | undefined, path: string, r: Reporter): void {
  if (!isPlainObject(dest) || typeof dest.host !== 'string' || dest.host === '') return;
  const host = fqdn(dest.host, vs.namespace);
  const entry = lookupService(idx, host);
  if (!entry && !dest.host.includes('.')) {
    r.report(
      `${path}.host`,
      ConfigErrorCodes.UNKNOWN_HOST,
      `host '${dest.host}' (${host}) is not declared by any ServiceEntry or Kubernetes Service and is not a DNS name`,
      'warning',
    );
  }
  if (entry) {
    const ports = arrayOf<{ number?: number }>(entry.se.spec?.ports).filter(isPlainObject);
    const want = isPlainObject(dest.port) ? dest.port.number : undefined;
    const from = `${entry.se.kind} ${entry.se.key}`;
    if (want === undefined && ports.length > 1) {
      r.report(`${path}.port`, ConfigErrorCodes.PORT_REQUIRED, `host '${dest.host}' has ${ports.length} ports (${from}); say which with port.number (using ${ports[0].number})`, 'warning');
    } else if (typeof want === 'number' && ports.length > 0 && !ports.some((p) => p.number === want)) {
      r.report(`${path}.port.number`, ConfigErrorCodes.UNKNOWN_PORT, `port ${want} is not a port of '${dest.host}' (${from} has ${ports.map((p) => p.number).join(', ')})`, 'warning');
    }
  }
  if (typeof dest.subset === 'string' && dest.subset !== '') {
    const dr = lookupDestinationRule(idx, host, vs.namespace);
    const subsets = arrayOf<{ name?: string }>(dr?.spec?.subsets).map((s) => s?.name);
    if (!subsets.includes(dest.subset)) {
      r.report(
        `${path}.subset`,
        ConfigErrorCodes.UNKNOWN_SUBSET,
        `${
          dr
            ? `subset '${dest.subset}' is not defined by DestinationRule ${dr.key} for host ${host} (has ${subsets.join(', ') || 'none'})`
            : `subset '${dest.subset}' needs a DestinationRule for host ${host}, found none`
        }; requests routed to it get 503`,
        'warning',
      );
    } else if (entry?.kube && !entry.kube.hasSlices) {
      r.report(
        `${path}.subset`,
        ConfigErrorCodes.NOT_ENFORCED,
        `Service ${entry.se.key} has no EndpointSlice in the config, so it resolves by DNS and subset '${dest.subset}' labels cannot pick endpoints: any endpoint of the Service answers`,
        'warning',
      );
    }
  }
}

type ProtocolFamily = 'http' | 'tls' | 'tcp';
function family(protocol: string): ProtocolFamily {
  if (protocol === 'HTTPS' || protocol === 'TLS') return 'tls';
  if (protocol === 'TCP' || protocol === 'MONGO') return 'tcp';
  return 'http';
}

/** Servers that would bind the same address:port with incompatible protocols. */
function checkGatewayPorts(idx: ModelIndex, rep: (r: Resource) => Reporter): void {
  interface Claim { gw: Resource; path: string; protocol: string; selector: Record<string, string> }
  const claims = new Map<string, Claim[]>();
  for (const gw of idx.gateways) {
    const selector = isPlainObject(gw.spec?.selector) ? (gw.spec.selector as Record<string, string>) : {};
    arrayOf<{ port?: { number?: number; targetPort?: number; protocol?: string }; bind?: string }>(gw.spec?.servers).forEach((s, i) => {
      if (!isPlainObject(s) || !isPlainObject(s.port) || typeof s.port.number !== 'number' || typeof s.port.protocol !== 'string') return;
      const key = `${s.bind ?? ''}:${s.port.targetPort ?? s.port.number}`;
      const list = claims.get(key) ?? [];
      list.push({ gw, path: `spec.servers[${i}].port.protocol`, protocol: s.port.protocol, selector });
      claims.set(key, list);
    });
  }
  for (const [key, list] of claims) {
    for (let j = 1; j < list.length; j++) {
      const b = list[j];
      const a = list.slice(0, j).find((x) => selectorsOverlap(x.selector, b.selector) && family(x.protocol) !== family(b.protocol));
      if (!a) continue;
      const port = key.slice(key.lastIndexOf(':') + 1);
      const where = a.gw === b.gw ? 'another server of this Gateway' : `Gateway ${a.gw.key}`;
      rep(b.gw).report(b.path, ConfigErrorCodes.PORT_CONFLICT, `port ${port} is ${b.protocol} here but ${a.protocol} in ${where} (${a.path}) on overlapping selectors`);
    }
  }
}

function reportAll(r: Reporter, problems: readonly ServerProblem[]): void {
  for (const p of problems) r.report(p.path, p.code, p.message, p.severity);
}

/** MeshConfig uniqueness, provider references, ext_authz servers. */
function checkPolicies(idx: ModelIndex, rep: (r: Resource) => Reporter): void {
  idx.meshConfigs.slice(1).forEach((mc) => {
    const first = idx.meshConfigs[0];
    rep(mc).report('metadata.name', ConfigErrorCodes.MESHCONFIG_CONFLICT, `only one MeshConfig may be given; ${first.key} at ${first.file}:${first.line} is already used`);
  });
  const mc = idx.meshConfigs[0];
  if (mc) {
    arrayOf<RawExtensionProvider>(mc.spec?.extensionProviders).forEach((p, i) => {
      if (!isPlainObject(p) || !isPlainObject(p.envoyExtAuthzHttp)) return;
      reportAll(rep(mc), resolveProviderServer(idx, mc.namespace, p.envoyExtAuthzHttp, `spec.extensionProviders[${i}].envoyExtAuthzHttp`).problems);
      if (p.envoyExtAuthzHttp.includeRequestBodyInCheck) {
        rep(mc).report(`spec.extensionProviders[${i}].envoyExtAuthzHttp.includeRequestBodyInCheck`, ConfigErrorCodes.NOT_IMPLEMENTED, 'compiled, but the gateway does not send request bodies to the authz server yet', 'warning');
      }
    });
  }
  for (const ap of idx.authorizationPolicies) {
    const spec = ap.spec;
    if (!isPlainObject(spec) || spec.action !== 'CUSTOM' || !isPlainObject(spec.provider) || typeof spec.provider.name !== 'string') continue;
    const name = spec.provider.name;
    const found = idx.providers.get(name);
    if (!found) {
      const hint = didYouMean(name, idx.providers.keys());
      rep(ap).report(
        'spec.provider.name',
        ConfigErrorCodes.UNKNOWN_PROVIDER,
        mc
          ? `provider '${name}' is not defined in MeshConfig ${mc.key} extensionProviders${hint ? ` (did you mean '${hint}'?)` : ` (has ${[...idx.providers.keys()].join(', ') || 'none'})`}`
          : `provider '${name}' needs a MeshConfig (or ConfigMap istio) defining extensionProviders, found none`,
      );
    } else if (!found.provider.envoyExtAuthzHttp) {
      rep(ap).report('spec.provider.name', ConfigErrorCodes.NOT_IMPLEMENTED, `provider '${name}' is not an envoyExtAuthzHttp provider; only HTTP ext_authz is supported`);
    }
  }
  for (const ef of idx.envoyFilters) {
    arrayOf<RawPatch>(ef.spec?.configPatches).forEach((p, i) => {
      if (!isPlainObject(p) || classifyPatch(p as RawPatch) !== 'ext_authz') return;
      const value = (p as RawPatch).patch?.value as Record<string, unknown>;
      const tcKey = value.typed_config !== undefined ? 'typed_config' : 'config';
      const tc = value[tcKey];
      const hs = isPlainObject(tc) ? protoField(tc, 'http_service') : undefined;
      const su = isPlainObject(hs) ? protoField(hs, 'server_uri') : undefined;
      if (!isPlainObject(su) || !isPlainObject(hs) || !isPlainObject(tc)) return;
      const hsKey = tc.http_service !== undefined ? 'http_service' : 'httpService';
      const suKey = hs.server_uri !== undefined ? 'server_uri' : 'serverUri';
      const base = `spec.configPatches[${i}].patch.value.${tcKey}.${hsKey}.${suKey}`;
      reportAll(rep(ef), resolveEnvoyServer(idx, ef.namespace, su, base).problems);
      if (protoField(su, 'timeout') === undefined) {
        rep(ef).report(base, ConfigErrorCodes.REQUIRED, 'server_uri.timeout is required by Envoy; using 200ms', 'warning');
      }
    });
  }
}

/** VirtualService tls[] SNI hosts vs the Gateways they bind to; TCP/TLS servers without routes. */
function checkL4(idx: ModelIndex, rep: (r: Resource) => Reporter): void {
  const routed = new Set<string>(); // `${gwKey}#${serverIndex}` with at least one L4 route
  for (const vs of idx.virtualServices) {
    const spec = vs.spec;
    if (!isPlainObject(spec)) continue;
    const vsHosts = arrayOf<string>(spec.hosts).filter((h) => typeof h === 'string').map((h) => fqdn(h, vs.namespace));
    const vsGateways = arrayOf<string>(spec.gateways).filter((g) => typeof g === 'string').map((g) => gatewayRef(g, vs.namespace));
    for (const section of ['tcp', 'tls'] as const) {
      arrayOf<{ match?: { sniHosts?: string[]; gateways?: string[]; port?: number }[] }>(spec[section]).forEach((rule, i) => {
        if (!isPlainObject(rule)) return;
        const matches = arrayOf<{ sniHosts?: string[]; gateways?: string[]; port?: number }>(rule.match).filter(isPlainObject);
        const gwKeys = new Set<string>();
        for (const m of matches.length ? matches : [{}]) {
          for (const g of m.gateways ? arrayOf<string>(m.gateways).map((x) => gatewayRef(x, vs.namespace)) : vsGateways) gwKeys.add(g);
        }
        for (const key of gwKeys) {
          const gw = idx.gateways.find((g) => g.key === key);
          if (!gw) continue;
          arrayOf<{ port?: { number?: number; protocol?: string }; tls?: { mode?: string } }>(gw.spec?.servers).forEach((srv, si) => {
            const proto = srv?.port?.protocol;
            const pass = srv?.tls?.mode === 'PASSTHROUGH' || srv?.tls?.mode === 'AUTO_PASSTHROUGH';
            const fits = section === 'tls' ? proto === 'TLS' && pass : proto === 'TCP' || proto === 'MONGO' || (proto === 'TLS' && !pass);
            if (fits && matches.every((m) => m.port === undefined) || (fits && matches.some((m) => m.port === srv?.port?.number))) routed.add(`${key}#${si}`);
          });
        }
        if (section !== 'tls') return;
        matches.forEach((m, j) => {
          arrayOf<string>(m.sniHosts).forEach((sni, k) => {
            if (typeof sni !== 'string') return;
            const path = `spec.tls[${i}].match[${j}].sniHosts[${k}]`;
            const h = sni.toLowerCase();
            if (vsHosts.length > 0 && !vsHosts.some((v) => intersectHosts(h, v))) {
              rep(vs).report(path, ConfigErrorCodes.SNI_NOT_ON_GATEWAY, `sniHost '${sni}' is not covered by the VirtualService hosts (${vsHosts.join(', ')})`);
            }
            const gws = (m.gateways ? arrayOf<string>(m.gateways).map((x) => gatewayRef(x, vs.namespace)) : vsGateways).filter((g) => g !== 'mesh');
            for (const key of gws) {
              const gw = idx.gateways.find((g) => g.key === key);
              if (!gw) continue;
              const tlsHosts = arrayOf<{ hosts?: string[]; port?: { protocol?: string } }>(gw.spec?.servers)
                .filter((srv) => srv?.port?.protocol === 'TLS')
                .flatMap((srv) => arrayOf<string>(srv.hosts))
                .map(splitServerHost)
                .filter((sh) => serverNamespaceAllows(sh.ns, gw.namespace, vs.namespace));
              if (!tlsHosts.some((sh) => intersectHosts(h, sh.host))) {
                rep(vs).report(path, ConfigErrorCodes.SNI_NOT_ON_GATEWAY, `sniHost '${sni}' is not served by any TLS server of Gateway ${key}`);
              }
            }
          });
        });
      });
    }
  }
  for (const gw of idx.gateways) {
    arrayOf<{ port?: { protocol?: string }; tls?: { mode?: string } }>(gw.spec?.servers).forEach((srv, si) => {
      const proto = srv?.port?.protocol;
      if (!isPlainObject(srv) || (proto !== 'TLS' && proto !== 'TCP' && proto !== 'MONGO')) return;
      if (routed.has(`${gw.key}#${si}`)) return;
      const pass = srv.tls?.mode === 'PASSTHROUGH';
      if (srv.tls?.mode === 'AUTO_PASSTHROUGH') return;
      rep(gw).report(
        `spec.servers[${si}]`,
        ConfigErrorCodes.NO_L4_ROUTE,
        pass ? 'PASSTHROUGH server has no VirtualService tls[] route bound to it; connections will be closed' : `${proto} server has no VirtualService tcp[] route bound to it; connections will be closed`,
        'warning',
      );
    });
  }
}

/** WorkloadEntry/ServiceEntry endpoint `ports` keys should name a ServiceEntry port. */
function checkWorkloadPorts(idx: ModelIndex, rep: (r: Resource) => Reporter): void {
  for (const se of idx.serviceEntries) {
    const names = new Set(arrayOf<{ name?: string }>(se.spec?.ports).map((p) => p?.name));
    arrayOf<{ ports?: Record<string, number> }>(se.spec?.endpoints).forEach((ep, i) => {
      if (!isPlainObject(ep) || !isPlainObject(ep.ports)) return;
      for (const k of Object.keys(ep.ports)) {
        if (!names.has(k)) rep(se).report(`spec.endpoints[${i}].ports.${k}`, ConfigErrorCodes.UNKNOWN_WORKLOAD_PORT, `'${k}' is not the name of a port of this ServiceEntry`, 'warning');
      }
    });
  }
}

interface TlsContext {
  readonly secretsDir: string;
  readonly tls: Map<string, ResolvedTls>;
  readonly fileContents: Map<string, Buffer>;
}

async function readOnce(ctx: TlsContext, file: string): Promise<Buffer | undefined> {
  const have = ctx.fileContents.get(file);
  if (have) return have;
  try {
    const buf = await readFile(file);
    ctx.fileContents.set(file, buf);
    return buf;
  } catch {
    return undefined;
  }
}

async function firstExisting(ctx: TlsContext, candidates: string[]): Promise<string | undefined> {
  for (const c of candidates) if (await readOnce(ctx, c)) return c;
  return undefined;
}

/** Reads the named cert/key (and CA), checking they exist, parse and belong together. */
async function checkPair(
  ctx: TlsContext,
  r: Reporter,
  cert: { file: string; path: string } | undefined,
  key: { file: string; path: string } | undefined,
  ca: { file: string; path: string } | undefined,
): Promise<void> {
  let x509: X509Certificate | undefined;
  if (cert) {
    const buf = await readOnce(ctx, cert.file);
    if (!buf) r.report(cert.path, ConfigErrorCodes.TLS_FILE_MISSING, `certificate file ${cert.file} does not exist or cannot be read`);
    else {
      try {
        x509 = new X509Certificate(buf);
      } catch (err) {
        r.report(cert.path, ConfigErrorCodes.TLS_BAD_PEM, `${cert.file} is not a PEM certificate: ${(err as Error).message}`);
      }
    }
  }
  if (key) {
    const buf = await readOnce(ctx, key.file);
    if (!buf) r.report(key.path, ConfigErrorCodes.TLS_FILE_MISSING, `private key file ${key.file} does not exist or cannot be read`);
    else {
      try {
        const k = createPrivateKey(buf);
        if (x509 && !x509.checkPrivateKey(k)) {
          r.report(key.path, ConfigErrorCodes.TLS_KEY_MISMATCH, `private key ${key.file} does not match certificate ${cert?.file}`);
        }
      } catch (err) {
        // Never echo key material; the library message names the problem, not the bytes.
        r.report(key.path, ConfigErrorCodes.TLS_BAD_PEM, `${key.file} is not a PEM private key (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
      }
    }
  }
  if (ca) {
    const buf = await readOnce(ctx, ca.file);
    if (!buf) r.report(ca.path, ConfigErrorCodes.TLS_FILE_MISSING, `CA file ${ca.file} does not exist or cannot be read`);
    else {
      try {
        new X509Certificate(buf);
      } catch (err) {
        r.report(ca.path, ConfigErrorCodes.TLS_BAD_PEM, `${ca.file} is not a PEM certificate: ${(err as Error).message}`);
      }
    }
  }
}

async function credentialFiles(ctx: TlsContext, name: string, wantCa: boolean): Promise<{ cert?: string; key?: string; ca?: string; dir: string }> {
  const dir = join(ctx.secretsDir, name);
  const cert = await firstExisting(ctx, [join(dir, 'tls.crt'), join(dir, 'cert')]);
  const key = await firstExisting(ctx, [join(dir, 'tls.key'), join(dir, 'key')]);
  const ca = wantCa
    ? await firstExisting(ctx, [join(dir, 'ca.crt'), join(dir, 'cacert'), join(`${dir}-cacert`, 'ca.crt'), join(`${dir}-cacert`, 'cacert')])
    : undefined;
  return { cert, key, ca, dir };
}

async function checkServerTls(gw: Resource, tls: RawServerTls, path: string, r: Reporter, ctx: TlsContext): Promise<void> {
  const mode = tls.mode;
  if (mode !== 'SIMPLE' && mode !== 'MUTUAL' && mode !== 'OPTIONAL_MUTUAL') return;
  const base = dirname(gw.file);
  const mutual = mode !== 'SIMPLE';
  if (typeof tls.credentialName === 'string' && tls.credentialName) {
    if (tls.serverCertificate || tls.privateKey) {
      r.report(`${path}.credentialName`, ConfigErrorCodes.ONE_OF, 'credentialName cannot be combined with serverCertificate/privateKey');
    }
    const found = await credentialFiles(ctx, tls.credentialName, mutual && !tls.caCertificates);
    if (!found.cert || !found.key) {
      r.report(
        `${path}.credentialName`,
        ConfigErrorCodes.TLS_FILE_MISSING,
        `credential '${tls.credentialName}' not found: want ${join(found.dir, 'tls.crt')} and ${join(found.dir, 'tls.key')}`,
      );
      return;
    }
    const caFile = tls.caCertificates ? resolve(base, tls.caCertificates) : found.ca;
    if (mutual && !caFile) {
      r.report(`${path}.credentialName`, ConfigErrorCodes.TLS_MISSING_CERT, `${mode} needs a CA: ${join(found.dir, 'ca.crt')} or caCertificates`);
    }
    const p = `${path}.credentialName`;
    await checkPair(ctx, r, { file: found.cert, path: p }, { file: found.key, path: p }, caFile ? { file: caFile, path: tls.caCertificates ? `${path}.caCertificates` : p } : undefined);
    ctx.tls.set(tlsKey(gw, path), { certFile: found.cert, keyFile: found.key, caFile });
    return;
  }
  if (!tls.serverCertificate || !tls.privateKey) {
    r.report(
      tls.serverCertificate ? `${path}.privateKey` : tls.privateKey ? `${path}.serverCertificate` : path,
      ConfigErrorCodes.TLS_MISSING_CERT,
      `${mode} TLS needs serverCertificate and privateKey, or credentialName`,
    );
    return;
  }
  if (mutual && !tls.caCertificates) {
    r.report(`${path}.caCertificates`, ConfigErrorCodes.TLS_MISSING_CERT, `${mode} TLS needs caCertificates to verify clients`);
  }
  const certFile = resolve(base, tls.serverCertificate);
  const keyFile = resolve(base, tls.privateKey);
  const caFile = tls.caCertificates ? resolve(base, tls.caCertificates) : undefined;
  await checkPair(
    ctx,
    r,
    { file: certFile, path: `${path}.serverCertificate` },
    { file: keyFile, path: `${path}.privateKey` },
    caFile ? { file: caFile, path: `${path}.caCertificates` } : undefined,
  );
  ctx.tls.set(tlsKey(gw, path), { certFile, keyFile, caFile });
}

async function checkClientTls(dr: Resource, tls: RawClientTls, path: string, r: Reporter, ctx: TlsContext): Promise<void> {
  const mode = tls.mode;
  if (mode !== 'SIMPLE' && mode !== 'MUTUAL') return;
  // The upstream pools only originate ISTIO_MUTUAL (gateway/mtls.ts): say so rather than let
  // requests meant for TLS leave in plaintext unannounced.
  r.report(`${path}.mode`, ConfigErrorCodes.NOT_ENFORCED, `TLS origination (${mode}) is not implemented: Portico connects to this upstream in plaintext`, 'warning');
  const base = dirname(dr.file);
  if (typeof tls.credentialName === 'string' && tls.credentialName) {
    const found = await credentialFiles(ctx, tls.credentialName, true);
    if (mode === 'MUTUAL' && (!found.cert || !found.key)) {
      r.report(`${path}.credentialName`, ConfigErrorCodes.TLS_FILE_MISSING, `credential '${tls.credentialName}' not found: want ${join(found.dir, 'tls.crt')} and ${join(found.dir, 'tls.key')}`);
      return;
    }
    const p = `${path}.credentialName`;
    await checkPair(ctx, r, found.cert ? { file: found.cert, path: p } : undefined, found.key ? { file: found.key, path: p } : undefined, undefined);
    ctx.tls.set(tlsKey(dr, path), { certFile: found.cert, keyFile: found.key, caFile: found.ca });
    return;
  }
  if (mode === 'MUTUAL' && (!tls.clientCertificate || !tls.privateKey)) {
    r.report(path, ConfigErrorCodes.TLS_MISSING_CERT, 'MUTUAL TLS needs clientCertificate and privateKey, or credentialName');
    return;
  }
  const certFile = tls.clientCertificate ? resolve(base, tls.clientCertificate) : undefined;
  const keyFile = tls.privateKey ? resolve(base, tls.privateKey) : undefined;
  const caFile = tls.caCertificates ? resolve(base, tls.caCertificates) : undefined;
  await checkPair(
    ctx,
    r,
    certFile ? { file: certFile, path: `${path}.clientCertificate` } : undefined,
    keyFile ? { file: keyFile, path: `${path}.privateKey` } : undefined,
    caFile ? { file: caFile, path: `${path}.caCertificates` } : undefined,
  );
  ctx.tls.set(tlsKey(dr, path), { certFile, keyFile, caFile });
}
