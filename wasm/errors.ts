/** Errors of the Wasm host, in a module of their own so the main thread need not load node:wasi. */

/** A trap, a WASI exit, a budget overrun or a callback that failed; the VM is unusable afterwards. */
export class WasmVmError extends Error {
  override readonly name = 'WasmVmError';
  constructor(
    message: string,
    readonly phase: 'start' | 'configure' | 'call',
  ) {
    super(message);
  }
}
