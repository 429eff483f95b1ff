/**
 * A small declarative schema for Istio's YAML shapes: field types, enums, required fields,
 * one-of groups and unknown-field detection with a "did you mean" hint. Validators in
 * config/kinds/ describe their spec with these builders and add custom `check`s for semantics.
 */
import { ConfigErrorCodes, type ConfigErrorCode } from './errors.ts';

/** Where a validator reports problems; `path` is the full field path from the resource root. */
export interface Reporter {
  report(path: string, code: ConfigErrorCode, message: string, severity?: 'error' | 'warning'): void;
}

export type Check<T> = (value: T, path: string, r: Reporter) => void;

export type Schema =
  | {
      readonly type: 'string';
      readonly enum?: readonly string[];
      /** Enum values compare case-insensitively (Istio's `protocol.Parse`). */
      readonly caseInsensitive?: boolean;
      readonly nonEmpty?: boolean;
      readonly check?: Check<string>;
    }
  | { readonly type: 'int'; readonly min?: number; readonly max?: number; readonly check?: Check<number> }
  | { readonly type: 'number'; readonly min?: number; readonly max?: number }
  | { readonly type: 'bool' }
  | { readonly type: 'duration'; readonly min?: number }
  | {
      readonly type: 'object';
      readonly fields: Readonly<Record<string, Schema>>;
      readonly required?: readonly string[];
      /** At most one of these fields may be set; with `oneOfRequired` exactly one. */
      readonly oneOf?: readonly string[];
      readonly oneOfRequired?: boolean;
      readonly check?: Check<Record<string, unknown>>;
      /**
       * Severity for fields the schema does not know (default 'error'; Envoy protos and MeshConfig use
       * 'warning'; Kubernetes objects Portico only reads a few fields of use 'ignore').
       */
      readonly unknownFields?: 'error' | 'warning' | 'ignore';
      /** Envoy proto JSON accepts both `snake_case` and `camelCase` names: look up camelCase keys as snake_case. */
      readonly protoNames?: boolean;
    }
  | { readonly type: 'array'; readonly items: Schema; readonly minItems?: number; readonly check?: Check<unknown[]> }
  | { readonly type: 'map'; readonly values: Schema }
  | { readonly type: 'any'; readonly check?: Check<unknown> };

type ObjectSchema = Extract<Schema, { type: 'object' }>;

// Builders, so kind files read like the Istio reference.
export const str = (opts: Omit<Extract<Schema, { type: 'string' }>, 'type'> = {}): Schema => ({ type: 'string', ...opts });
export const oneOfStr = (values: readonly string[]): Schema => ({ type: 'string', enum: values });
/** An enum Istio parses case-insensitively (port protocols: `http` is `HTTP`). */
export const oneOfStrCi = (values: readonly string[]): Schema => ({ type: 'string', enum: values, caseInsensitive: true });
export const int = (min?: number, max?: number, check?: Check<number>): Schema => ({ type: 'int', min, max, check });
export const num = (min?: number, max?: number): Schema => ({ type: 'number', min, max });
export const bool: Schema = { type: 'bool' };
export const duration = (min = 0): Schema => ({ type: 'duration', min });
export const any: Schema = { type: 'any' };
export const arr = (items: Schema, opts: { minItems?: number; check?: Check<unknown[]> } = {}): Schema => ({ type: 'array', items, ...opts });
export const strMap = (values: Schema = str()): Schema => ({ type: 'map', values });
export const obj = (
  fields: Record<string, Schema>,
  opts: Omit<ObjectSchema, 'type' | 'fields'> = {},
): ObjectSchema => ({ type: 'object', fields, ...opts });

/** Istio's Percent message: `{value: 0..100}` (fractional allowed). */
export const percentObj = obj({ value: num(0, 100) });
/** Istio's PortSelector: `{number: N}`. */
export const portSelector = obj({ number: int(1, 65535) }, { required: ['number'] });

/** `allowedHeaders` → `allowed_headers` (Envoy proto JSON names). */
export function snakeCase(k: string): string {
  return k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Reads an Envoy proto field written either `snake_case` or `camelCase`. */
export function protoField(o: Record<string, unknown> | undefined, snake: string): unknown {
  if (!o) return undefined;
  if (o[snake] !== undefined) return o[snake];
  return o[snake.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())];
}

/**
 * Status of a field, for docs/configuration.md (generated from the schemas) and for the warnings
 * `validate` prints: **enforced** (acted on), **partly** (acted on, with the limits in the note),
 * **warned** (accepted, not acted on: setting it is a `warning:`), **rejected** (Portico cannot honour
 * it: setting it is an error).
 */
export interface FieldDoc {
  readonly status: 'enforced' | 'partly' | 'warned' | 'rejected';
  readonly note?: string;
  /** Set by notEnforced/unsupported: validateValue reports the field whenever it is set. */
  readonly emit?: 'warning' | 'error';
}

const FIELD_DOCS = new WeakMap<Schema, FieldDoc>();

/**
 * Attaches a documentation status to a schema (a copy, so shared schemas keep their own). The
 * older names `supported` and `not yet` still read as `enforced` and `warned`.
 */
export function doc<S extends Schema>(schema: S, status: FieldDoc['status'] | 'supported' | 'not yet', note?: string): S {
  const copy = { ...schema };
  FIELD_DOCS.set(copy, { status: status === 'supported' ? 'enforced' : status === 'not yet' ? 'warned' : status, note });
  return copy;
}

/** A field Portico accepts but does not act on: validated, documented as warned, and a warning when set. */
export function notEnforced<S extends Schema>(schema: S, note: string): S {
  const copy = { ...schema };
  FIELD_DOCS.set(copy, { status: 'warned', note, emit: 'warning' });
  return copy;
}

/** A valid Istio field Portico cannot honour: an error when set, so nothing half-works. */
export function unsupported<S extends Schema>(schema: S, note: string): S {
  const copy = { ...schema };
  FIELD_DOCS.set(copy, { status: 'rejected', note, emit: 'error' });
  return copy;
}

export function fieldDoc(schema: Schema): FieldDoc | undefined {
  return FIELD_DOCS.get(schema);
}

/** Appends a map key or array index to a field path (`a.b`, `a[0]`, `a["x.y"]`). */
export function childPath(base: string, key: string | number): string {
  if (typeof key === 'number') return `${base}[${key}]`;
  const safe = /^[A-Za-z_$][\w$-]*$/.test(key) ? key : JSON.stringify(key);
  if (safe !== key) return `${base}[${safe}]`;
  return base ? `${base}.${key}` : key;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Date);
}

export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'list';
  if (isPlainObject(v)) return 'map';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  if (typeof v === 'boolean') return 'boolean';
  return typeof v;
}

/** Levenshtein distance, for "did you mean" hints. */
export function levenshtein(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length];
}

/** The closest candidate within a distance proportional to the word, or undefined. */
export function didYouMean(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  const lower = word.toLowerCase();
  for (const c of candidates) {
    const d = levenshtein(lower, c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  const limit = Math.max(2, Math.floor(word.length / 3));
  return best !== undefined && bestD <= limit ? best : undefined;
}

const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001, 'µs': 0.001, ns: 0.000001 };

/**
 * Parses a Go/protobuf style duration (`1.5s`, `100ms`, `1m`, `1h30m`) into milliseconds.
 * Returns undefined when the text is not a duration. Negative durations are rejected.
 */
export function parseDuration(text: string): number | undefined {
  const s = text.trim();
  if (s === '0') return 0;
  const re = /(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)/y;
  let pos = 0;
  let total = 0;
  if (s.length === 0) return undefined;
  while (pos < s.length) {
    re.lastIndex = pos;
    const m = re.exec(s);
    if (!m) return undefined;
    total += Number(m[1]) * UNIT_MS[m[2]];
    pos = re.lastIndex;
  }
  // Round away float noise (0.1s → 100, not 100.00000000000001).
  return Math.round(total * 1e6) / 1e6;
}

function quoteList(values: readonly string[]): string {
  return values.join(', ');
}

/**
 * Validates `value` against `schema`, reporting every problem under `path`. Returns false when
 * the value's basic shape (type) is wrong, so callers can skip semantic checks on it.
 * `null` is treated as "unset" the way Kubernetes does.
 */
export function validateValue(schema: Schema, value: unknown, path: string, r: Reporter): boolean {
  const wrongType = (want: string): false => {
    r.report(path, ConfigErrorCodes.WRONG_TYPE, `expected ${want}, got ${typeName(value)}`);
    return false;
  };
  switch (schema.type) {
    case 'any':
      schema.check?.(value, path, r);
      return true;
    case 'string': {
      if (typeof value !== 'string') return wrongType('a string');
      const known = schema.enum && (schema.caseInsensitive ? schema.enum.includes(value.toUpperCase()) : schema.enum.includes(value));
      if (schema.enum && !known) {
        const hint = didYouMean(value, schema.enum);
        r.report(path, ConfigErrorCodes.BAD_ENUM, `'${value}' is not one of ${quoteList(schema.enum)}${hint ? ` (did you mean '${hint}'?)` : ''}`);
        return true;
      }
      if (schema.nonEmpty && value === '') r.report(path, ConfigErrorCodes.REQUIRED, 'must not be empty');
      schema.check?.(value, path, r);
      return true;
    }
    case 'int':
    case 'number': {
      if (typeof value !== 'number' || !Number.isFinite(value)) return wrongType(schema.type === 'int' ? 'an integer' : 'a number');
      if (schema.type === 'int' && !Number.isInteger(value)) return wrongType('an integer');
      if ((schema.min !== undefined && value < schema.min) || (schema.max !== undefined && value > schema.max)) {
        const range = schema.max === undefined ? `>= ${schema.min}` : schema.min === undefined ? `<= ${schema.max}` : `${schema.min}..${schema.max}`;
        r.report(path, ConfigErrorCodes.OUT_OF_RANGE, `${value} is out of range (want ${range})`);
      }
      if (schema.type === 'int') schema.check?.(value, path, r);
      return true;
    }
    case 'bool':
      return typeof value === 'boolean' ? true : wrongType('a boolean');
    case 'duration': {
      if (typeof value !== 'string') return wrongType('a duration string like "1.5s"');
      const ms = parseDuration(value);
      if (ms === undefined) {
        r.report(path, ConfigErrorCodes.BAD_DURATION, `'${value}' is not a duration (want e.g. 100ms, 1.5s, 1m, 1h)`);
      } else if (schema.min !== undefined && ms < schema.min) {
        r.report(path, ConfigErrorCodes.OUT_OF_RANGE, `duration must be at least ${schema.min}ms`);
      }
      return true;
    }
    case 'array': {
      if (!Array.isArray(value)) return wrongType('a list');
      if (schema.minItems !== undefined && value.length < schema.minItems) {
        r.report(path, ConfigErrorCodes.REQUIRED, `needs at least ${schema.minItems} item${schema.minItems === 1 ? '' : 's'}`);
      }
      value.forEach((item, i) => {
        if (item === null) r.report(childPath(path, i), ConfigErrorCodes.WRONG_TYPE, 'list item is empty');
        else validateValue(schema.items, item, childPath(path, i), r);
      });
      schema.check?.(value, path, r);
      return true;
    }
    case 'map': {
      if (!isPlainObject(value)) return wrongType('a map');
      for (const [k, v] of Object.entries(value)) {
        if (v !== null) validateValue(schema.values, v, childPath(path, k), r);
        else if (schema.values.type !== 'object') r.report(childPath(path, k), ConfigErrorCodes.WRONG_TYPE, 'value is empty');
      }
      return true;
    }
    case 'object': {
      if (!isPlainObject(value)) return wrongType('a map');
      const known = Object.keys(schema.fields);
      for (const [k, v] of Object.entries(value)) {
        const name = schema.protoNames && !Object.hasOwn(schema.fields, k) ? snakeCase(k) : k;
        const field = Object.hasOwn(schema.fields, name) ? schema.fields[name] : undefined;
        if (!field) {
          if (schema.unknownFields === 'ignore') continue;
          const hint = didYouMean(k, known);
          const warn = schema.unknownFields === 'warning';
          r.report(
            childPath(path, k),
            ConfigErrorCodes.UNKNOWN_FIELD,
            `unknown field '${k}'${hint ? ` (did you mean '${hint}'?)` : ''}${warn ? '; ignored' : ''}`,
            warn ? 'warning' : 'error',
          );
          continue;
        }
        if (v === null || v === undefined) continue;
        validateValue(field, v, childPath(path, k), r);
        const fd = FIELD_DOCS.get(field);
        if (fd?.emit === 'warning') {
          r.report(childPath(path, k), ConfigErrorCodes.NOT_ENFORCED, `accepted but not enforced by Portico${fd.note ? ` (${fd.note})` : ''}; ignored`, 'warning');
        } else if (fd?.emit === 'error') {
          r.report(childPath(path, k), ConfigErrorCodes.NOT_IMPLEMENTED, `not supported by Portico${fd.note ? `: ${fd.note}` : ''}`);
        }
      }
      const get = (k: string): unknown => (schema.protoNames ? protoField(value, k) : value[k]);
      for (const req of schema.required ?? []) {
        if (get(req) === undefined || get(req) === null) r.report(childPath(path, req), ConfigErrorCodes.REQUIRED, `'${req}' is required`);
      }
      if (schema.oneOf) {
        const set = schema.oneOf.filter((k) => get(k) !== undefined && get(k) !== null);
        if (set.length > 1) {
          r.report(childPath(path, set[1]), ConfigErrorCodes.ONE_OF, `only one of ${quoteList(schema.oneOf)} may be set, found ${quoteList(set)}`);
        } else if (set.length === 0 && schema.oneOfRequired) {
          r.report(path, ConfigErrorCodes.REQUIRED, `one of ${quoteList(schema.oneOf)} is required`);
        }
      }
      schema.check?.(value, path, r);
      return true;
    }
  }
}
