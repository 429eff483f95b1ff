/**
 * The time budget of a metered VM (wasm/meter.ts) running on the thread that calls it: each call
 * into the module is given a deadline, and the module's fuel checks ask `refuel` for more fuel
 * every FUEL ticks (function entries and loop iterations). Past the deadline `refuel` answers 0,
 * on which the metered code traps.
 */
import { performance } from 'node:perf_hooks';

/** Ticks between clock reads: about 10-100 µs of wasm, so an overrun is noticed within that. */
export const FUEL = 10_000;

export class CallBudget {
  /**
   * performance.now() after which the running call is out of time. NaN until the call first
   * needs it: a call that ends before its first refuel never reads the clock (most calls), and
   * one that refuels is timed from then, at most FUEL ticks after it began.
   */
  private deadline = NaN;
  private callMs: number;
  /** Set when the running call ran out of time (the module traps at its next check). */
  exceeded = false;
  /** The module's fuel global (exported as portico.fuel), once instantiated. */
  fuel: WebAssembly.Global | undefined;

  constructor(readonly ms: number) {
    this.callMs = ms;
  }

  begin(ms = this.ms): void {
    this.exceeded = false;
    this.callMs = ms;
    this.deadline = NaN;
  }

  end(): void {
    this.deadline = NaN;
  }

  /** The `portico.refuel` import. */
  readonly refuel = (): number => {
    const now = performance.now();
    if (Number.isNaN(this.deadline)) this.deadline = now + this.callMs;
    if (now <= this.deadline) return FUEL;
    this.exceeded = true;
    return 0;
  };

  /** Milliseconds left in the running call. */
  remainingMs(): number {
    const now = performance.now();
    if (Number.isNaN(this.deadline)) this.deadline = now + this.callMs;
    return this.deadline - now;
  }

  /** Ends the running call at the module's next check (a blocking request past the deadline). */
  exhaust(): void {
    this.exceeded = true;
    if (this.fuel) this.fuel.value = 0;
    this.deadline = -Infinity;
  }
}
