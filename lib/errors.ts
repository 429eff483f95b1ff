/**
 * One way to define a package's error registry (STYLE.md §6): every error has a stable key, a
 * stable `code` (`PORTICO_ERR_…`, `PORTICO_CFG_…`), an HTTP status where it answers a request, and
 * a default message. Library errors are translated into these at one boundary per package.
 *
 *   const E = defineErrors('CertError', { BAD_PEM: { code: 'PORTICO_ERR_CERT_BAD_PEM' } });
 *   throw new E.Error('BAD_PEM', 'ca.pem: not a certificate');   // err.code === 'PORTICO_ERR_CERT_BAD_PEM'
 *   E.is(err, 'BAD_PEM');
 *
 * Models: fastify `lib/errors.js` (FST_ERR_*), jose `util/errors.ts` (`err.code`).
 */

/** One error: `code` defaults to the key (registries keyed by code); extra fields are kept. */
export interface ErrorSpec {
  readonly code?: string;
  readonly status?: number;
  readonly message?: string;
  readonly [extra: string]: unknown;
}

type CodeOf<K, S> = S extends { readonly code: infer C extends string } ? C : K & string;

/** The frozen definitions, each with its resolved `code`. */
export type ErrorDefs<T extends Record<string, ErrorSpec>> = { readonly [K in keyof T]: Readonly<T[K]> & { readonly code: CodeOf<K, T[K]> } };
/** Key → code. */
export type ErrorCodes<T extends Record<string, ErrorSpec>> = { readonly [K in keyof T]: CodeOf<K, T[K]> };
export type ErrorCode<T extends Record<string, ErrorSpec>> = ErrorCodes<T>[keyof T];

/** What `new registry.Error(...)` is. */
export interface RegistryError<T extends Record<string, ErrorSpec>> extends Error {
  readonly key: keyof T & string;
  readonly code: ErrorCode<T>;
  /** The spec's status, else 500. */
  readonly status: number;
}

export interface ErrorRegistry<T extends Record<string, ErrorSpec>> {
  readonly defs: ErrorDefs<T>;
  readonly codes: ErrorCodes<T>;
  /** `new Error(keyOrCode, message?, { cause })`; message defaults to the spec's, else the code. */
  readonly Error: new (which: (keyof T & string) | ErrorCode<T>, message?: string, options?: { cause?: unknown }) => RegistryError<T>;
  /** Type guard: an error of this registry, optionally of one key or code. */
  is(err: unknown, which?: (keyof T & string) | ErrorCode<T>): err is RegistryError<T>;
}

export function defineErrors<const T extends Record<string, ErrorSpec>>(errorName: string, specs: T): ErrorRegistry<T> {
  type Key = keyof T & string;
  const defs: Record<string, ErrorSpec & { code: string }> = {};
  const codes: Record<string, string> = {};
  const byCode = new Map<string, Key>();
  for (const [key, spec] of Object.entries(specs)) {
    const code = spec.code ?? key;
    if (byCode.has(code)) throw new TypeError(`${errorName}: code ${code} is defined twice`);
    defs[key] = Object.freeze({ ...spec, code });
    codes[key] = code;
    byCode.set(code, key as Key);
  }
  const keyOf = (which: string): Key | undefined => (Object.hasOwn(defs, which) ? (which as Key) : byCode.get(which));

  class DefinedError extends Error implements RegistryError<T> {
    readonly key: Key;
    readonly code: ErrorCode<T>;
    readonly status: number;
    constructor(which: Key | ErrorCode<T>, message?: string, options?: { cause?: unknown }) {
      const key = keyOf(which);
      if (key === undefined) throw new TypeError(`${errorName}: no error ${String(which)}`);
      const def = defs[key]!;
      super(message ?? def.message ?? def.code, options);
      this.name = errorName;
      this.key = key;
      this.code = def.code as ErrorCode<T>;
      this.status = def.status ?? 500;
    }
  }

  return Object.freeze({
    defs: Object.freeze(defs) as unknown as ErrorDefs<T>,
    codes: Object.freeze(codes) as unknown as ErrorCodes<T>,
    Error: DefinedError,
    is(err: unknown, which?: Key | ErrorCode<T>): err is RegistryError<T> {
      if (!(err instanceof DefinedError)) return false;
      return which === undefined || err.key === keyOf(which);
    },
  });
}
