/**
 * Reads the subset of Dex's config file format that the dev IdP understands, so one file
 * (config/examples/dex.yaml) drives both real Dex and the dev IdP. Unknown keys (storage,
 * logger, connectors, ...) are ignored, as Dex ignores keys it does not know.
 *
 * Portico extension: `staticPasswords[].groups` (a list of strings). Real Dex has no groups for
 * static passwords (its password connector returns none), so the dev IdP is the only way to get
 * a `groups` claim without an upstream connector.
 */
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';

export interface DexStaticClient {
  id: string;
  secret: string;
  name: string;
  redirectURIs: readonly string[];
}

export interface DexStaticPassword {
  email: string;
  /** bcrypt hash ($2a$/$2b$/$2y$), as Dex accepts it (base64-encoded bcrypt is decoded on load). */
  hash: string;
  username: string;
  userID: string;
  groups: readonly string[];
}

export interface DexConfig {
  issuer: string;
  /** `web.http` as host:port, when present. */
  webHTTP?: string;
  enablePasswordDB: boolean;
  skipApprovalScreen: boolean;
  /** `expiry.idTokens` in seconds (Dex default 24h). */
  idTokenTTLSeconds: number;
  staticClients: readonly DexStaticClient[];
  staticPasswords: readonly DexStaticPassword[];
}

/** Every problem found in a config, one `source: path: message` line each. */
export class DexConfigError extends Error {
  readonly code = 'PORTICO_ERR_DEVIDP_CONFIG';
  constructor(
    readonly source: string,
    readonly problems: readonly string[],
  ) {
    super(`invalid Dex config ${source}:\n${problems.map((p) => `  ${source}: ${p}`).join('\n')}`);
    this.name = 'DexConfigError';
  }
}

const BCRYPT = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;

/** Reads and validates a Dex config file. Throws DexConfigError listing every problem. */
export function loadDexConfig(file: string): DexConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new DexConfigError(file, [`cannot read file: ${(err as Error).message}`]);
  }
  return parseDexConfig(text, file);
}

/** Parses Dex config YAML text; `source` names it in error messages. */
export function parseDexConfig(text: string, source = '<dex config>'): DexConfig {
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new DexConfigError(
      source,
      doc.errors.map((e) => `line ${(e.linePos?.[0]?.line ?? 0).toString()}: ${e.message.split('\n')[0] ?? ''}`),
    );
  }
  return validateDexConfig(doc.toJS() as unknown, source);
}

/** Validates an already-parsed Dex config object (e.g. built in a test). */
export function validateDexConfig(raw: unknown, source = '<dex config>'): DexConfig {
  const problems: string[] = [];
  const root = isRecord(raw) ? raw : (problems.push('top level: must be a mapping'), {});

  const issuer = str(root, 'issuer', 'issuer', problems, true);
  if (issuer) {
    try {
      const u = new URL(issuer);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') problems.push('issuer: must be an http(s) URL');
      if (u.search || u.hash) problems.push('issuer: must not have a query or fragment');
    } catch {
      problems.push(`issuer: not a URL: ${JSON.stringify(issuer)}`);
    }
  }

  let webHTTP: string | undefined;
  if (root.web !== undefined) {
    if (!isRecord(root.web)) problems.push('web: must be a mapping');
    else webHTTP = str(root.web, 'http', 'web.http', problems, false);
  }

  const enablePasswordDB = bool(root, 'enablePasswordDB', 'enablePasswordDB', problems) ?? false;
  let skipApprovalScreen = false;
  if (root.oauth2 !== undefined) {
    if (!isRecord(root.oauth2)) problems.push('oauth2: must be a mapping');
    else skipApprovalScreen = bool(root.oauth2, 'skipApprovalScreen', 'oauth2.skipApprovalScreen', problems) ?? false;
  }

  let idTokenTTLSeconds = 24 * 3600;
  if (root.expiry !== undefined) {
    if (!isRecord(root.expiry)) problems.push('expiry: must be a mapping');
    else {
      const d = str(root.expiry, 'idTokens', 'expiry.idTokens', problems, false);
      if (d !== undefined) {
        const secs = parseGoDuration(d);
        if (secs === undefined || secs <= 0) problems.push(`expiry.idTokens: not a positive duration like "10m": ${JSON.stringify(d)}`);
        else idTokenTTLSeconds = secs;
      }
    }
  }

  const staticClients: DexStaticClient[] = [];
  const clientIds = new Set<string>();
  for (const [i, c] of list(root, 'staticClients', problems)) {
    const at = `staticClients[${i.toString()}]`;
    if (!isRecord(c)) {
      problems.push(`${at}: must be a mapping`);
      continue;
    }
    const id = str(c, 'id', `${at}.id`, problems, true) ?? '';
    const secret = str(c, 'secret', `${at}.secret`, problems, true) ?? '';
    const name = str(c, 'name', `${at}.name`, problems, false) ?? id;
    if (id && clientIds.has(id)) problems.push(`${at}.id: duplicate client id ${JSON.stringify(id)}`);
    clientIds.add(id);
    const redirectURIs: string[] = [];
    const uris = c.redirectURIs;
    if (!Array.isArray(uris) || uris.length === 0) {
      problems.push(`${at}.redirectURIs: must be a non-empty list of URLs`);
    } else {
      uris.forEach((u: unknown, j) => {
        const p = `${at}.redirectURIs[${j.toString()}]`;
        if (typeof u !== 'string') return problems.push(`${p}: must be a string`);
        try {
          const parsed = new URL(u);
          if (parsed.hash) return problems.push(`${p}: must not have a fragment (RFC 6749 3.1.2)`);
        } catch {
          return problems.push(`${p}: not an absolute URL: ${JSON.stringify(u)}`);
        }
        return redirectURIs.push(u);
      });
    }
    if (c.public === true) problems.push(`${at}.public: public clients are not supported by the dev IdP`);
    staticClients.push(Object.freeze({ id, secret, name, redirectURIs: Object.freeze(redirectURIs) }));
  }

  const staticPasswords: DexStaticPassword[] = [];
  const emails = new Set<string>();
  for (const [i, p] of list(root, 'staticPasswords', problems)) {
    const at = `staticPasswords[${i.toString()}]`;
    if (!isRecord(p)) {
      problems.push(`${at}: must be a mapping`);
      continue;
    }
    const email = str(p, 'email', `${at}.email`, problems, true) ?? '';
    const username = str(p, 'username', `${at}.username`, problems, true) ?? '';
    const userID = str(p, 'userID', `${at}.userID`, problems, true) ?? '';
    let hash = str(p, 'hash', `${at}.hash`, problems, true) ?? '';
    if (hash && !BCRYPT.test(hash)) {
      // Dex also accepts a base64-encoded bcrypt hash, for backwards compatibility.
      const decoded = Buffer.from(hash, 'base64').toString('utf8');
      if (BCRYPT.test(decoded)) hash = decoded;
      else problems.push(`${at}.hash: not a bcrypt hash (want $2a$/$2b$/$2y$..., e.g. from htpasswd -bnBC 10 "" PASSWORD)`);
    }
    if (BCRYPT.test(hash)) {
      // Dex refuses logins whose hash cost is outside 10..16 (server/api.go checkCost); say so up front.
      const cost = Number(hash.slice(4, 6));
      if (cost < 10 || cost > 16) problems.push(`${at}.hash: bcrypt cost ${cost.toString()} is outside 10..16, which Dex refuses`);
    }
    const key = email.toLowerCase();
    if (email && emails.has(key)) problems.push(`${at}.email: duplicate email ${JSON.stringify(email)}`);
    emails.add(key);
    const groups: string[] = [];
    if (p.groups !== undefined) {
      if (!Array.isArray(p.groups) || !p.groups.every((g: unknown) => typeof g === 'string')) {
        problems.push(`${at}.groups: must be a list of strings`);
      } else groups.push(...(p.groups as string[]));
    }
    staticPasswords.push(Object.freeze({ email, hash, username, userID, groups: Object.freeze(groups) }));
  }
  if (staticPasswords.length > 0 && !enablePasswordDB) {
    problems.push('enablePasswordDB: must be true for staticPasswords to be usable (as in Dex)');
  }

  if (problems.length > 0) throw new DexConfigError(source, problems);
  return Object.freeze({
    issuer: issuer ?? '',
    ...(webHTTP !== undefined ? { webHTTP } : {}),
    enablePasswordDB,
    skipApprovalScreen,
    idTokenTTLSeconds,
    staticClients: Object.freeze(staticClients),
    staticPasswords: Object.freeze(staticPasswords),
  });
}

/** Parses the Go durations Dex uses in `expiry` ("1h30m", "10m", "90s"); undefined if invalid. */
export function parseGoDuration(text: string): number | undefined {
  const re = /(\d+(?:\.\d+)?)(h|m|s|ms)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const n = Number(m[1]);
    const unit = m[2];
    total += unit === 'h' ? n * 3600 : unit === 'm' ? n * 60 : unit === 's' ? n : n / 1000;
    matched = re.lastIndex;
  }
  return matched === text.length && text.length > 0 ? Math.floor(total) : undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(obj: Record<string, unknown>, key: string, path: string, problems: string[], required: boolean): string | undefined {
  const v = obj[key];
  if (v === undefined || v === null) {
    if (required) problems.push(`${path}: required`);
    return undefined;
  }
  if (typeof v !== 'string' || (required && v === '')) {
    problems.push(`${path}: must be a non-empty string`);
    return undefined;
  }
  return v;
}

function bool(obj: Record<string, unknown>, key: string, path: string, problems: string[]): boolean | undefined {
  const v = obj[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') {
    problems.push(`${path}: must be true or false`);
    return undefined;
  }
  return v;
}

function list(obj: Record<string, unknown>, key: string, problems: string[]): [number, unknown][] {
  const v = obj[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) {
    problems.push(`${key}: must be a list`);
    return [];
  }
  return v.map((item: unknown, i) => [i, item]);
}
