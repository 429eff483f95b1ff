// Worker-thread entry for a Wasm VM. Node 20 does not carry tsx's loader into worker threads,
// so when running from the TypeScript sources this registers it before loading worker.ts.
import { register } from 'tsx/esm/api';

register();
// Every VM would print Node's "WASI is an experimental feature" warning; it says nothing new.
const emit = process.emitWarning.bind(process);
process.emitWarning = (warning, ...rest) => {
  if (String(warning).includes('WASI is an experimental feature')) return;
  emit(warning, ...rest);
};
await import('./worker.ts');
