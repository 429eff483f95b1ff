/**
 * node:wasi emits "WASI is an experimental feature" when it loads; that says nothing new to a
 * Portico operator, so it is dropped (once per thread, before node:wasi is imported). Every other
 * warning passes through.
 */
let installed = false;

export function dropWasiWarning(): void {
  if (installed) return;
  installed = true;
  const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    if (String(warning).includes('WASI is an experimental feature')) return;
    emit(warning, ...rest);
  }) as typeof process.emitWarning;
}
