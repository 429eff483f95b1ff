/**
 * The config package's error registry: every problem `portico validate` can report has a stable
 * code here, so tests, docs and tooling can refer to it without matching message text.
 */
import { isAbsolute, relative } from 'node:path';
import { defineErrors } from '../lib/errors.ts';

const configErrors = defineErrors('ConfigError', {
  YAML_SYNTAX: { code: 'PORTICO_CFG_YAML_SYNTAX' },
  FILE_READ: { code: 'PORTICO_CFG_FILE_READ' },
  NOT_A_RESOURCE: { code: 'PORTICO_CFG_NOT_A_RESOURCE' },
  UNKNOWN_KIND: { code: 'PORTICO_CFG_UNKNOWN_KIND' },
  UNSUPPORTED_API_VERSION: { code: 'PORTICO_CFG_UNSUPPORTED_API_VERSION' },
  MISSING_NAME: { code: 'PORTICO_CFG_MISSING_NAME' },
  DUPLICATE_RESOURCE: { code: 'PORTICO_CFG_DUPLICATE_RESOURCE' },
  UNKNOWN_FIELD: { code: 'PORTICO_CFG_UNKNOWN_FIELD' },
  WRONG_TYPE: { code: 'PORTICO_CFG_WRONG_TYPE' },
  BAD_ENUM: { code: 'PORTICO_CFG_BAD_ENUM' },
  REQUIRED: { code: 'PORTICO_CFG_REQUIRED' },
  OUT_OF_RANGE: { code: 'PORTICO_CFG_OUT_OF_RANGE' },
  BAD_DURATION: { code: 'PORTICO_CFG_BAD_DURATION' },
  BAD_HOST: { code: 'PORTICO_CFG_BAD_HOST' },
  ONE_OF: { code: 'PORTICO_CFG_ONE_OF' },
  BAD_REGEX: { code: 'PORTICO_CFG_BAD_REGEX' },
  WEIGHT_SUM: { code: 'PORTICO_CFG_WEIGHT_SUM' },
  UNKNOWN_SUBSET: { code: 'PORTICO_CFG_UNKNOWN_SUBSET' },
  UNKNOWN_HOST: { code: 'PORTICO_CFG_UNKNOWN_HOST' },
  PORT_REQUIRED: { code: 'PORTICO_CFG_PORT_REQUIRED' },
  UNKNOWN_PORT: { code: 'PORTICO_CFG_UNKNOWN_PORT' },
  UNKNOWN_GATEWAY: { code: 'PORTICO_CFG_UNKNOWN_GATEWAY' },
  PORT_CONFLICT: { code: 'PORTICO_CFG_PORT_CONFLICT' },
  TLS_MISSING_CERT: { code: 'PORTICO_CFG_TLS_MISSING_CERT' },
  TLS_FILE_MISSING: { code: 'PORTICO_CFG_TLS_FILE_MISSING' },
  TLS_BAD_PEM: { code: 'PORTICO_CFG_TLS_BAD_PEM' },
  TLS_KEY_MISMATCH: { code: 'PORTICO_CFG_TLS_KEY_MISMATCH' },
  HTTPS_WITHOUT_TLS: { code: 'PORTICO_CFG_HTTPS_WITHOUT_TLS' },
  CONFLICTING_ACTIONS: { code: 'PORTICO_CFG_CONFLICTING_ACTIONS' },
  NO_ACTION: { code: 'PORTICO_CFG_NO_ACTION' },
  HTTPS_REDIRECT: { code: 'PORTICO_CFG_HTTPS_REDIRECT' },
  TLS_IGNORED: { code: 'PORTICO_CFG_TLS_IGNORED' },
  HOST_NOT_ON_GATEWAY: { code: 'PORTICO_CFG_HOST_NOT_ON_GATEWAY' },
  UNKNOWN_WORKLOAD_PORT: { code: 'PORTICO_CFG_UNKNOWN_WORKLOAD_PORT' },
  NOT_IMPLEMENTED: { code: 'PORTICO_CFG_NOT_IMPLEMENTED' },
  BAD_CIDR: { code: 'PORTICO_CFG_BAD_CIDR' },
  BAD_CONDITION_KEY: { code: 'PORTICO_CFG_BAD_CONDITION_KEY' },
  UNKNOWN_PROVIDER: { code: 'PORTICO_CFG_UNKNOWN_PROVIDER' },
  MESHCONFIG_CONFLICT: { code: 'PORTICO_CFG_MESHCONFIG_CONFLICT' },
  BAD_URI: { code: 'PORTICO_CFG_BAD_URI' },
  ENVOY_FILTER_IGNORED: { code: 'PORTICO_CFG_ENVOY_FILTER_IGNORED' },
  SNI_NOT_ON_GATEWAY: { code: 'PORTICO_CFG_SNI_NOT_ON_GATEWAY' },
  NO_L4_ROUTE: { code: 'PORTICO_CFG_NO_L4_ROUTE' },
  BAD_PATTERN: { code: 'PORTICO_CFG_BAD_PATTERN' },
  NOT_ENFORCED: { code: 'PORTICO_CFG_NOT_ENFORCED' },
  UNRESOLVED_VARIABLE: { code: 'PORTICO_CFG_UNRESOLVED_VARIABLE' },
  DUPLICATE_NAME: { code: 'PORTICO_CFG_DUPLICATE_NAME' },
  SKIPPED_KIND: { code: 'PORTICO_CFG_SKIPPED_KIND' },
  UNREACHABLE_RULE: { code: 'PORTICO_CFG_UNREACHABLE_RULE' },
});

/** Problems are reported as issues (see ConfigIssue), not thrown: only the codes are used. */
export const ConfigErrorCodes = configErrors.codes;

export type ConfigErrorCode = (typeof ConfigErrorCodes)[keyof typeof ConfigErrorCodes];

/** One problem found in the configuration, pointing at the file, line and field it concerns. */
export interface ConfigIssue {
  /** Absolute path of the YAML (or certificate) file. */
  readonly file: string;
  /** 1-based line; 0 when the problem concerns a whole file. */
  readonly line: number;
  /** Resource kind, e.g. `VirtualService`; empty for file-level problems. */
  readonly kind: string;
  /** Resource name (`metadata.name`); empty for file-level problems. */
  readonly name: string;
  /** Field path from the resource root, e.g. `spec.http[0].route[1].weight`; empty for the resource itself. */
  readonly path: string;
  readonly message: string;
  readonly code: ConfigErrorCode;
  /** `info` is for things worth one line that need no action (Kubernetes kinds skipped on load). */
  readonly severity: 'error' | 'warning' | 'info';
}

/**
 * `file:line: Kind/name: field.path: message`. The file is shown relative to `cwd` when it lies
 * under it; the resource and path parts are omitted when empty.
 */
export function formatIssue(issue: ConfigIssue, cwd: string = process.cwd()): string {
  let file = issue.file;
  if (isAbsolute(file)) {
    const rel = relative(cwd, file);
    if (rel && !rel.startsWith('..') && !isAbsolute(rel)) file = rel;
  }
  const parts = [`${file}:${issue.line}`];
  if (issue.kind || issue.name) parts.push(`${issue.kind}/${issue.name}`);
  if (issue.path) parts.push(issue.path);
  parts.push(issue.message);
  return parts.join(': ');
}

/** Sort issues by file, line, then message, so output is stable across runs. */
export function sortIssues(issues: readonly ConfigIssue[]): ConfigIssue[] {
  return [...issues].sort(
    (a, b) =>
      (a.file < b.file ? -1 : a.file > b.file ? 1 : 0) ||
      a.line - b.line ||
      (a.path < b.path ? -1 : a.path > b.path ? 1 : 0) ||
      (a.message < b.message ? -1 : a.message > b.message ? 1 : 0),
  );
}
