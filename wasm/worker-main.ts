/**
 * Entry of a VM's worker thread. Built by scripts/build.mjs into dist/bin/commands/wasm-worker.js
 * (what the installed CLI starts, no TypeScript loader); under tsx, wasm/worker-entry.mjs
 * registers the loader and imports this file.
 *
 * node:wasi emits "WASI is an experimental feature" when it loads, in every VM; that says
 * nothing new, so it is dropped before worker.ts (and with it node:wasi) is imported.
 */
const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void;
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  if (String(warning).includes('WASI is an experimental feature')) return;
  emit(warning, ...rest);
}) as typeof process.emitWarning;
await import('./worker.ts');
