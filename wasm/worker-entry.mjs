// Worker-thread entry for a Wasm VM. Node 20 does not carry tsx's loader into worker threads,
// so when running from the TypeScript sources this registers it before loading worker.ts.
import { register } from 'tsx/esm/api';

register();
await import('./worker.ts');
