/**
 * The synchronous call channel between the main thread and a VM's worker thread: one
 * SharedArrayBuffer, a state word driven with Atomics.wait/notify, and messages serialised with
 * v8's structured-clone format (binary fields cross as Uint8Array without base64).
 *
 *   main: write call, state=CALL, wait ──► worker: run, (maybe write RPC, state=RPC, wait)
 *   main: serve RPC, state=RPC_DONE  ──► worker: continue ... write result, state=RESULT
 *   main: read result, state=IDLE
 */
import { deserialize, serialize } from 'node:v8';

export const IDLE = 0;
export const CALL = 1;
export const RESULT = 2;
export const RPC = 3;
export const RPC_DONE = 4;

const HEADER = 32;
/** Default channel size; a message that does not fit fails the call (bodies are bounded by the buffer limit). */
export const CHANNEL_BYTES = 4 << 20;

export class Channel {
  readonly ctrl: Int32Array;
  /** [0]: when the worker picked up the current call (ms, absolute clock); 0 before. */
  readonly picked: Float64Array;
  private readonly data: Buffer;
  constructor(readonly sab: SharedArrayBuffer) {
    this.ctrl = new Int32Array(sab, 0, 4);
    this.picked = new Float64Array(sab, 16, 1);
    this.data = Buffer.from(sab, HEADER);
  }

  static create(bytes = CHANNEL_BYTES): Channel {
    return new Channel(new SharedArrayBuffer(HEADER + bytes));
  }

  write(value: unknown): void {
    const b = serialize(value);
    if (b.length > this.data.length) throw new RangeError(`message of ${b.length} bytes exceeds the VM channel (${this.data.length})`);
    b.copy(this.data, 0);
    this.ctrl[1] = b.length;
  }

  read<T>(): T {
    const n = this.ctrl[1];
    return deserialize(Buffer.from(this.data.subarray(0, n))) as T;
  }

  set(state: number): void {
    Atomics.store(this.ctrl, 0, state);
    Atomics.notify(this.ctrl, 0);
  }

  get state(): number {
    return Atomics.load(this.ctrl, 0);
  }

  /** Absolute milliseconds, comparable between threads (each has its own performance.timeOrigin). */
  static now(): number {
    return performance.timeOrigin + performance.now();
  }
}
