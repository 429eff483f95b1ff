// Worker-thread entry for a Wasm VM when running the TypeScript sources: Node 20 does not carry
// tsx's loader into worker threads, so this registers it first. The built CLI (dist/) starts
// dist/bin/commands/wasm-worker.js instead (scripts/build.mjs), which needs no tsx.
import { register } from 'tsx/esm/api';

register();
await import('./worker-main.ts');
