/**
 * RE2 for every regex that comes from config (Istio StringMatch `regex`, Envoy `safe_regex`,
 * `uriRegexRewrite`). Istio validates with Go's `regexp` (RE2 syntax) and Envoy matches with
 * Google RE2, so we use re2js — a port of Go's `regexp` — never JavaScript's backtracking RegExp:
 * matching is linear in the input whatever the pattern (no ReDoS from `(a|aa)+`).
 *
 * Semantics follow Envoy: a StringMatcher regex is a full match (`RE2::FullMatch`), a
 * `regex_rewrite` replaces every non-overlapping match (`RE2::GlobalReplace`) with a substitution
 * in which `\0`–`\9` name capture groups and `\\` is a backslash.
 * https://www.envoyproxy.io/docs/envoy/latest/api-v3/type/matcher/v3/regex.proto
 */
import { RE2JS } from 're2js';

/** Istio rejects longer patterns (pilot validation: "regex is too large, max length allowed is 1024"). */
export const MAX_REGEX_LENGTH = 1024;
/**
 * Istio's bootstrap raises Envoy's `re2.max_program_size.error_level` to 32768; a program bigger
 * than that would be NACKed by Envoy, so it is a config error here too.
 */
export const MAX_PROGRAM_SIZE = 32768;

/** A compiled full-match predicate. */
export type Re2Predicate = (value: string) => boolean;

function flags(ignoreCase: boolean): number {
  return ignoreCase ? RE2JS.CASE_INSENSITIVE : 0;
}

/**
 * Why `pattern` is not a regex Istio/Envoy would accept, or undefined when it is. Messages name
 * the JavaScript-only constructs users most often bring along (lookarounds, backreferences).
 */
export function re2SyntaxProblem(pattern: string): string | undefined {
  if (pattern.length > MAX_REGEX_LENGTH) return `regex is too large, max length allowed is ${MAX_REGEX_LENGTH}`;
  let re: RE2JS;
  try {
    re = RE2JS.compile(pattern);
  } catch (err) {
    const msg = (err as Error).message.replace(/^error parsing regexp: /, '');
    if (/`\(\?<?[=!]/.test(msg) || /invalid named capture: `\(\?<[=!]/.test(msg)) return `lookaround assertions are not supported by RE2 (${msg})`;
    if (/invalid escape sequence: `\\([1-9]|k)/.test(msg)) return `backreferences are not supported by RE2 (${msg})`;
    return `${msg}; Istio uses RE2 syntax (https://github.com/google/re2/wiki/Syntax)`;
  }
  const size = re.programSize();
  if (size > MAX_PROGRAM_SIZE) return `regex program size ${size} exceeds ${MAX_PROGRAM_SIZE} (re2.max_program_size.error_level)`;
  return undefined;
}

const META = new Set(['\\', '.', '[', ']', '(', ')', '|', '*', '+', '?', '{', '}', '^', '$']);

/**
 * The literal text every full match must start with, or '' when there is none we can be sure of:
 * the leading run of plain characters, minus the last one when a quantifier follows it. Patterns
 * with any `|` are skipped (alternation could bypass the prefix).
 */
export function literalPrefix(pattern: string): string {
  if (pattern.includes('|')) return '';
  let i = 0;
  while (i < pattern.length && !META.has(pattern[i]!)) i++;
  const next = pattern[i];
  if (next === '*' || next === '+' || next === '?' || next === '{') i--;
  return i > 0 ? pattern.slice(0, i) : '';
}

/**
 * Compiles a full-match predicate. Throws on a pattern `re2SyntaxProblem` rejects. A value that
 * does not start with the pattern's literal prefix is rejected without running the automaton
 * (most regex routes a request is tried against do not match).
 */
export function compileFullMatch(pattern: string, ignoreCase = false): Re2Predicate {
  const re = RE2JS.compile(pattern, flags(ignoreCase));
  const prefix = ignoreCase ? '' : literalPrefix(pattern);
  if (prefix === '') return (value) => re.testExact(value);
  return (value) => value.startsWith(prefix) && re.testExact(value);
}

/**
 * Why `substitution` is not a valid RE2 rewrite string for `pattern`, or undefined. RE2 allows
 * `\0`–`\9` (a group the pattern has) and `\\`; any other backslash is an error
 * (`RE2::CheckRewriteString`, which Envoy relies on).
 */
export function re2RewriteProblem(pattern: string, substitution: string): string | undefined {
  let groups: number;
  try {
    groups = RE2JS.compile(pattern).groupCount();
  } catch {
    return undefined; // the pattern itself is reported separately
  }
  for (let i = 0; i < substitution.length; i++) {
    if (substitution[i] !== '\\') continue;
    const next = substitution[i + 1];
    if (next === '\\') {
      i++;
      continue;
    }
    if (next === undefined || next < '0' || next > '9') return `invalid rewrite pattern '${substitution}': '\\' must be followed by a digit or '\\'`;
    const n = Number(next);
    if (n > groups) return `rewrite '${substitution}' requests group \\${n}, but the regex has only ${groups} capture group${groups === 1 ? '' : 's'}`;
    i++;
  }
  return undefined;
}

type Piece = string | number;

function parseSubstitution(substitution: string): Piece[] {
  const out: Piece[] = [];
  let lit = '';
  for (let i = 0; i < substitution.length; i++) {
    const ch = substitution[i]!;
    const next = substitution[i + 1];
    if (ch === '\\' && next !== undefined && next >= '0' && next <= '9') {
      if (lit) out.push(lit);
      lit = '';
      out.push(Number(next));
      i++;
    } else if (ch === '\\' && next === '\\') {
      lit += '\\';
      i++;
    } else {
      lit += ch;
    }
  }
  if (lit) out.push(lit);
  return out;
}

/**
 * Compiles `pattern` + RE2 `substitution` into a function replacing every non-overlapping match,
 * as Envoy's `regex_rewrite` does. A group that did not take part in the match inserts nothing.
 */
export function compileGlobalReplace(pattern: string, substitution: string): (input: string) => string {
  const re = RE2JS.compile(pattern);
  const pieces = parseSubstitution(substitution);
  const replacer = (...args: unknown[]): string => {
    let s = '';
    for (const p of pieces) {
      if (typeof p === 'string') s += p;
      else {
        const g = args[p];
        if (typeof g === 'string') s += g;
      }
    }
    return s;
  };
  return (input) => re.matcher(input).replaceAll(replacer);
}
