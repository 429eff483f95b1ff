/**
 * Makes a module interruptible on the thread that runs it: a call into a metered module checks
 * a fuel counter at the top of every loop iteration and at the entry of every function that could
 * otherwise do unbounded work by calls alone (recursion, fan-out; see entryChecks), and when the
 * counter runs out it asks the host for more (`portico.refuel`, a cheap clock check). Past the
 * call's deadline the host answers 0 and the module executes `unreachable`, which traps: a trap
 * cannot be caught inside WebAssembly (unlike an exception thrown by an import, which wasm's
 * exception handling could catch), so the call unwinds to the host and the VM is failed.
 *
 * This is what lets VMs run inline on the main thread with the same time budget as worker-thread
 * VMs: nothing else can stop synchronous wasm on the thread that runs it. Any unbounded
 * execution (loops, recursion) reaches a check within a bounded number of instructions.
 *
 * The rewrite, per the WebAssembly binary format (https://webassembly.github.io/spec/core/binary/):
 * - type section: the type `[] -> [i32]`, appended unless present;
 * - import section: `portico.refuel` appended after the last import, so it takes the first index
 *   after the imported functions and every defined function's index moves up by one; every
 *   function index is renumbered (call, return_call, ref.func, exports, start, elements, global
 *   initialisers, the name section);
 * - global section: one mutable i32 (the fuel), appended, exported as `portico.fuel` so the host
 *   can empty it (a WASI sleep past the deadline);
 * - code section: after each `loop` header, and at the entry of the functions entryChecks picks,
 *   with one more i32 local per such function as scratch:
 *
 *       fuel = fuel - 1;  if (fuel <= 0) { fuel = refuel(); if (fuel == 0) unreachable; }
 *
 *   stack-neutral, so loops with parameters are unaffected.
 *
 * Instructions are decoded in full (MVP, sign extension, saturating truncation, bulk memory,
 * reference types, multi-value, tail calls, SIMD and relaxed SIMD, threads, exception handling
 * both legacy and `try_table`, typed function references). A module using anything else (GC,
 * memory64 tables, ...) is refused with `MeterError`; the caller then runs it in a worker thread.
 */

export class MeterError extends Error {
  override readonly name = 'MeterError';
}

export const METER_MODULE = 'portico';
export const REFUEL = 'refuel';
export const FUEL_EXPORT = 'portico.fuel';

/** Section ids in the order the binary format requires them (custom sections, 0, may sit anywhere). */
const ORDER = [1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11];

class Reader {
  pos: number;
  constructor(
    readonly b: Uint8Array,
    pos = 0,
    readonly end = b.length,
  ) {
    this.pos = pos;
  }

  byte(): number {
    if (this.pos >= this.end) throw new MeterError('unexpected end of section');
    return this.b[this.pos++]!;
  }

  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const byte = this.byte();
      result += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) break;
      shift += 7;
      if (shift > 35) throw new MeterError('LEB128 too long');
    }
    return result;
  }

  /** Skips any LEB128 (signed or not, up to 64 bits). */
  skipLeb(): void {
    for (let i = 0; i < 10; i++) if ((this.byte() & 0x80) === 0) return;
    throw new MeterError('LEB128 too long');
  }

  skip(n: number): void {
    if (this.pos + n > this.end) throw new MeterError('unexpected end of section');
    this.pos += n;
  }

  name(): void {
    this.skip(this.u32());
  }

  /** Position right after the leading count of a vector section. */
  u32Pos(): number {
    this.u32();
    return this.pos;
  }

  /** A value type or reference type: one byte, or 0x63/0x64 followed by a heap type. */
  valType(): void {
    const t = this.byte();
    if (t === 0x63 || t === 0x64) this.skipLeb();
  }

  /** A block type: 0x40, a value type, or a type index (s33). */
  blockType(): void {
    const t = this.b[this.pos];
    if (t === undefined) throw new MeterError('unexpected end of code');
    if (t === 0x63 || t === 0x64) {
      this.pos++;
      this.skipLeb();
    } else if ((t & 0xc0) === 0x40) {
      this.pos++; // a single-byte negative: empty or a value type
    } else {
      this.skipLeb();
    }
  }

  memarg(): void {
    const align = this.u32();
    if (align & 0x40) this.u32(); // multi-memory: memory index
    this.skipLeb(); // offset
  }
}

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function nameBytes(s: string): number[] {
  const b = Buffer.from(s, 'utf8');
  return [...leb(b.length), ...b];
}

/** Output as a list of chunks: copied ranges of the input and new bytes. */
class Writer {
  readonly parts: Uint8Array[] = [];
  length = 0;
  push(b: Uint8Array | number[]): void {
    const u = b instanceof Uint8Array ? b : Uint8Array.from(b);
    this.parts.push(u);
    this.length += u.length;
  }
  bytes(): Uint8Array {
    return Buffer.concat(this.parts, this.length);
  }
}

/** What the first pass learns of a function body. */
interface BodyScan {
  loops: boolean;
  indirect: boolean;
  /** Functions it calls directly (original indices). */
  callees: number[];
}

/** A Writer that keeps nothing (the scanning pass). */
class NullWriter extends Writer {
  override push(): void {}
}

interface Rewrite {
  /** Index of the refuel import; defined functions at or above it move up by one. */
  readonly refuel: number;
  readonly fuel: number;
}

/**
 * Walks one expression (a function body's instructions, or a constant expression) from r.pos to
 * its final `end`, copying it into w with function indices renumbered and, when `meter` is set,
 * the fuel check after every loop header. Returns after the final `end`.
 */
function rewriteExpr(r: Reader, w: Writer, rw: Rewrite, check: number[] | undefined, scan?: BodyScan): void {
  const b = r.b;
  let copied = r.pos;
  let depth = 1;
  const flush = (upTo: number): void => {
    if (upTo > copied) w.push(b.subarray(copied, upTo));
  };
  const funcIndex = (isCall: boolean): void => {
    const at = r.pos;
    const idx = r.u32();
    if (isCall) scan?.callees.push(idx);
    if (idx >= rw.refuel) {
      flush(at);
      w.push(leb(idx + 1));
      copied = r.pos;
    }
  };
  while (depth > 0) {
    const op = r.byte();
    switch (op) {
      case 0x02: // block
      case 0x04: // if
      case 0x06: // try (legacy exception handling)
        r.blockType();
        depth++;
        break;
      case 0x03: // loop
        r.blockType();
        depth++;
        if (scan) scan.loops = true;
        if (check) {
          flush(r.pos);
          w.push(check);
          copied = r.pos;
        }
        break;
      case 0x1f: {
        // try_table: block type, then catch clauses (kind, [tag], label)
        r.blockType();
        const n = r.u32();
        for (let i = 0; i < n; i++) {
          const kind = r.byte();
          if (kind === 0 || kind === 1) r.u32();
          else if (kind !== 2 && kind !== 3) throw new MeterError(`unknown try_table catch kind ${kind}`);
          r.u32();
        }
        depth++;
        break;
      }
      case 0x0b: // end
        depth--;
        break;
      case 0x00: case 0x01: case 0x05: case 0x0a: case 0x0f: case 0x19: case 0x1a: case 0x1b: case 0xd1: case 0xd3: case 0xd5:
        break;
      case 0x14: // call_ref type
      case 0x15: // return_call_ref type
        r.u32();
        if (scan) scan.indirect = true;
        break;
      case 0x07: case 0x08: case 0x09: case 0x0c: case 0x0d: case 0xd4: case 0xd6:
        // catch tag, throw tag, rethrow label, br, br_if, br_on_(non_)null label
        r.u32();
        break;
      case 0x18: // delegate label: ends the try block
        r.u32();
        depth--;
        break;
      case 0x0e: {
        // br_table
        const n = r.u32();
        for (let i = 0; i <= n; i++) r.u32();
        break;
      }
      case 0x10: // call
      case 0x12: // return_call
        funcIndex(true);
        break;
      case 0xd2: // ref.func
        funcIndex(false);
        break;
      case 0x11: // call_indirect type table
      case 0x13: // return_call_indirect
        r.u32();
        r.u32();
        if (scan) scan.indirect = true;
        break;
      case 0x1c: {
        // select with types
        const n = r.u32();
        for (let i = 0; i < n; i++) r.valType();
        break;
      }
      case 0x20: case 0x21: case 0x22: case 0x23: case 0x24: case 0x25: case 0x26:
        // local.get/set/tee, global.get/set, table.get/set
        r.u32();
        break;
      case 0x3f: // memory.size
      case 0x40: // memory.grow
        r.u32();
        break;
      case 0x41: // i32.const
      case 0x42: // i64.const
        r.skipLeb();
        break;
      case 0x43:
        r.skip(4);
        break;
      case 0x44:
        r.skip(8);
        break;
      case 0xd0: // ref.null heap type
        r.skipLeb();
        break;
      case 0xfc:
        prefixFC(r);
        break;
      case 0xfd:
        prefixFD(r);
        break;
      case 0xfe:
        prefixFE(r);
        break;
      default:
        if (op >= 0x28 && op <= 0x3e) r.memarg();
        else if (op >= 0x45 && op <= 0xc4) {
          // numeric instructions (including sign extension): no immediates
        } else {
          throw new MeterError(`opcode 0x${op.toString(16)} at byte ${r.pos - 1} is not supported by the budget instrumentation`);
        }
    }
  }
  flush(r.pos);
}

function prefixFC(r: Reader): void {
  const sub = r.u32();
  if (sub <= 7) return; // saturating truncation
  switch (sub) {
    case 8: // memory.init data mem
    case 12: // table.init elem table
    case 10: // memory.copy mem mem
    case 14: // table.copy table table
      r.u32();
      r.u32();
      return;
    case 9: // data.drop
    case 11: // memory.fill
    case 13: // elem.drop
    case 15: // table.grow
    case 16: // table.size
    case 17: // table.fill
      r.u32();
      return;
    default:
      throw new MeterError(`opcode 0xfc ${sub} is not supported by the budget instrumentation`);
  }
}

function prefixFD(r: Reader): void {
  const sub = r.u32();
  if (sub <= 11 || sub === 92 || sub === 93) r.memarg(); // loads, store, load32/64_zero
  else if (sub === 12 || sub === 13) r.skip(16); // v128.const, i8x16.shuffle
  else if (sub >= 21 && sub <= 34) r.skip(1); // extract/replace lane
  else if (sub >= 84 && sub <= 91) {
    r.memarg(); // load/store lane
    r.skip(1);
  } else if (sub > 0x113) throw new MeterError(`opcode 0xfd ${sub} is not supported by the budget instrumentation`);
  // everything else up to the relaxed SIMD range has no immediates
}

function prefixFE(r: Reader): void {
  const sub = r.u32();
  if (sub === 3) r.skip(1); // atomic.fence
  else if (sub <= 2 || (sub >= 0x10 && sub <= 0x4e)) r.memarg();
  else throw new MeterError(`opcode 0xfe ${sub} is not supported by the budget instrumentation`);
}

interface Section {
  id: number;
  head: number; // the id byte

  start: number; // body start
  end: number;
}

function sections(b: Uint8Array): Section[] {
  if (b.length < 8 || b[0] !== 0 || b[1] !== 0x61 || b[2] !== 0x73 || b[3] !== 0x6d) throw new MeterError('not a WebAssembly binary (bad magic)');
  if (b[4] !== 1 || b[5] !== 0 || b[6] !== 0 || b[7] !== 0) throw new MeterError('not a WebAssembly core module (version 1)');
  const out: Section[] = [];
  const r = new Reader(b, 8);
  while (r.pos < b.length) {
    const head = r.pos;
    const id = r.byte();
    const size = r.u32();
    const start = r.pos;
    if (start + size > b.length) throw new MeterError('section runs past the end of the module');
    out.push({ id, head, start, end: start + size });
    r.pos = start + size;
  }
  return out;
}

function section(id: number, body: Writer | number[]): Uint8Array[] {
  const head = Uint8Array.from([id, ...leb(body.length)]);
  return body instanceof Writer ? [head, ...body.parts] : [head, Uint8Array.from(body)];
}

/** Instruments a module (see the file comment); throws MeterError for what it cannot decode. */
export function meter(b: Uint8Array): Uint8Array {
  const secs = sections(b);
  const find = (id: number): Section | undefined => secs.find((s) => s.id === id);

  // Types: find or append [] -> [i32].
  const typeSec = find(1);
  const typeParams: number[] = [];
  let typeCount = 0;
  let refuelType = -1;
  if (typeSec) {
    const r = new Reader(b, typeSec.start, typeSec.end);
    typeCount = r.u32();
    for (let i = 0; i < typeCount; i++) {
      const form = r.byte();
      if (form !== 0x60) throw new MeterError(`type form 0x${form.toString(16)} (GC proposal) is not supported by the budget instrumentation`);
      const at = r.pos;
      const np = r.u32();
      typeParams.push(np);
      for (let j = 0; j < np; j++) r.valType();
      const nr = r.u32();
      const results: number[] = [];
      for (let j = 0; j < nr; j++) results.push(r.byte());
      if (refuelType < 0 && np === 0 && nr === 1 && results[0] === 0x7f && r.pos - at === 3) refuelType = i;
      if (results.some((t) => t === 0x63 || t === 0x64)) throw new MeterError('typed references in results are not supported by the budget instrumentation');
    }
  }
  const newTypes = refuelType < 0;
  if (newTypes) refuelType = typeCount;

  // Imports: count functions and globals.
  const importSec = find(2);
  let importCount = 0;
  let importedFuncs = 0;
  let importedGlobals = 0;
  if (importSec) {
    const r = new Reader(b, importSec.start, importSec.end);
    importCount = r.u32();
    for (let i = 0; i < importCount; i++) {
      r.name();
      r.name();
      const kind = r.byte();
      if (kind === 0) {
        r.u32();
        importedFuncs++;
      } else if (kind === 1) {
        r.valType();
        const fl = r.byte();
        r.u32();
        if (fl & 1) r.u32();
      } else if (kind === 2) {
        const fl = r.byte();
        r.u32();
        if (fl & 1) r.u32();
      } else if (kind === 3) {
        r.valType();
        r.byte();
        importedGlobals++;
      } else if (kind === 4) {
        r.byte();
        r.u32();
      } else throw new MeterError(`unknown import kind ${kind}`);
    }
  }
  const globalSec = find(6);
  const definedGlobals = globalSec ? new Reader(b, globalSec.start, globalSec.end).u32() : 0;
  const rw: Rewrite = { refuel: importedFuncs, fuel: importedGlobals + definedGlobals };
  const G = leb(rw.fuel);
  // Parameters of each defined function (its scratch local comes after them and its locals).
  const funcSec = find(3);
  const funcParams: number[] = [];
  if (funcSec) {
    const r = new Reader(b, funcSec.start, funcSec.end);
    const count = r.u32();
    for (let i = 0; i < count; i++) {
      const t = r.u32();
      const np = typeParams[t];
      if (np === undefined) throw new MeterError(`function ${i + importedFuncs} has type ${t}, which does not exist`);
      funcParams.push(np);
    }
  }
  const check = (scratch: number): number[] => {
    const L = leb(scratch);
    // fuel = fuel - 1; if (fuel <= 0) { fuel = refuel(); if (fuel == 0) unreachable }
    return [
      0x23, ...G, 0x41, 0x01, 0x6b, 0x22, ...L, 0x24, ...G, 0x20, ...L, 0x41, 0x00, 0x4c, 0x04, 0x40,
      0x10, ...leb(rw.refuel), 0x22, ...L, 0x24, ...G, 0x20, ...L, 0x45, 0x04, 0x40, 0x00, 0x0b, 0x0b,
    ];
  };

  const shift = (idx: number): number => (idx >= rw.refuel ? idx + 1 : idx);
  const out: Uint8Array[] = [b.subarray(0, 8)];
  const emitted = new Set<number>();

  const build = (id: number): Uint8Array[] | undefined => {
    const s = find(id);
    switch (id) {
      case 1: {
        if (!newTypes) return undefined;
        const w = new Writer();
        w.push(leb(typeCount + 1));
        if (s) w.push(b.subarray(new Reader(b, s.start, s.end).u32Pos(), s.end));
        w.push([0x60, 0x00, 0x01, 0x7f]);
        return section(1, w);
      }
      case 2: {
        const w = new Writer();
        w.push(leb(importCount + 1));
        if (s) w.push(b.subarray(new Reader(b, s.start, s.end).u32Pos(), s.end));
        w.push([...nameBytes(METER_MODULE), ...nameBytes(REFUEL), 0x00, ...leb(refuelType)]);
        return section(2, w);
      }
      case 6: {
        const w = new Writer();
        w.push(leb(definedGlobals + 1));
        if (s) {
          const r = new Reader(b, s.start, s.end);
          r.u32();
          for (let i = 0; i < definedGlobals; i++) {
            const at = r.pos;
            r.valType();
            r.byte();
            w.push(b.subarray(at, r.pos));
            rewriteExpr(r, w, rw, undefined);
          }
        }
        w.push([0x7f, 0x01, 0x41, 0x00, 0x0b]); // (mut i32) (i32.const 0): the first check refuels
        return section(6, w);
      }
      case 7: {
        const w = new Writer();
        let n = 0;
        const entries = new Writer();
        if (s) {
          const r = new Reader(b, s.start, s.end);
          n = r.u32();
          for (let i = 0; i < n; i++) {
            const at = r.pos;
            const len = r.u32();
            const name = Buffer.from(b.subarray(r.pos, r.pos + len)).toString('utf8');
            r.skip(len);
            if (name === FUEL_EXPORT) throw new MeterError(`module already exports ${FUEL_EXPORT}`);
            const kind = r.byte();
            const idxAt = r.pos;
            const idx = r.u32();
            entries.push(b.subarray(at, idxAt));
            entries.push(leb(kind === 0 ? shift(idx) : idx));
          }
        }
        w.push(leb(n + 1));
        for (const p of entries.parts) w.push(p);
        w.push([...nameBytes(FUEL_EXPORT), 0x03, ...G]);
        return section(7, w);
      }
      case 8: {
        if (!s) return undefined;
        return section(8, leb(shift(new Reader(b, s.start, s.end).u32())));
      }
      case 9:
        return s ? section(9, rewriteElements(b, s, rw, shift)) : undefined;
      case 10:
        return s ? section(10, rewriteCode(b, s, rw, funcParams, check)) : undefined;
      default:
        return undefined;
    }
  };

  // Sections the rewrite must have even when the module has none.
  const required = new Set([2, 6, 7, ...(newTypes ? [1] : [])]);
  const rank = (id: number): number => ORDER.indexOf(id);
  const emitMissingBefore = (id: number): void => {
    for (const m of ORDER) {
      if (id >= 0 && rank(m) >= rank(id)) break;
      if (required.has(m) && !emitted.has(m) && !find(m)) {
        out.push(...build(m)!);
        emitted.add(m);
      }
    }
  };
  for (const s of secs) {
    if (s.id !== 0) {
      if (rank(s.id) < 0) throw new MeterError(`unknown section id ${s.id}`);
      emitMissingBefore(s.id);
      const rebuilt = build(s.id);
      emitted.add(s.id);
      if (rebuilt) {
        out.push(...rebuilt);
        continue;
      }
    } else {
      const custom = rewriteCustom(b, s, shift);
      if (custom) {
        out.push(...custom);
        continue;
      }
    }
    out.push(b.subarray(s.head, s.end));
  }
  emitMissingBefore(-1);
  return Buffer.concat(out);
}

function rewriteElements(b: Uint8Array, s: Section, rw: Rewrite, shift: (i: number) => number): Writer {
  const r = new Reader(b, s.start, s.end);
  const w = new Writer();
  const n = r.u32();
  w.push(leb(n));
  let copied = r.pos;
  const flush = (): void => {
    if (r.pos > copied) w.push(b.subarray(copied, r.pos));
    copied = r.pos;
  };
  const expr = (): void => {
    flush();
    rewriteExpr(r, w, rw, undefined);
    copied = r.pos;
  };
  const funcs = (): void => {
    const k = r.u32();
    for (let j = 0; j < k; j++) {
      flush();
      const idx = r.u32();
      w.push(leb(shift(idx)));
      copied = r.pos;
    }
  };
  for (let i = 0; i < n; i++) {
    const flags = r.u32();
    switch (flags) {
      case 0:
        expr();
        funcs();
        break;
      case 1:
      case 3:
        r.byte(); // elemkind
        funcs();
        break;
      case 2:
        r.u32();
        expr();
        r.byte();
        funcs();
        break;
      case 4:
      case 5:
      case 6:
      case 7: {
        if (flags === 6) r.u32();
        if (flags === 4 || flags === 6) expr();
        if (flags !== 4) r.valType();
        const k = r.u32();
        for (let j = 0; j < k; j++) expr();
        break;
      }
      default:
        throw new MeterError(`unknown element segment flags ${flags}`);
    }
  }
  flush();
  return w;
}

/**
 * Which functions get an entry check. Loops are always checked, so what entry checks must catch is
 * unbounded work made of calls alone: recursion, and chains of calls that fan out. A function is
 * checked when
 * - it makes an indirect call (its target may lead back into a cycle);
 * - it calls itself, or it is picked to break a cycle of direct calls: every cycle must hold at
 *   least one checked function. Cycles are found as strongly connected components (Tarjan's
 *   algorithm); in a component of up to FVS_MAX functions, checks go one at a time to the
 *   function with the most calls in and out inside what is left of the cycle (the greedy feedback
 *   vertex set), until no cycle is left; in a larger one, every function is checked;
 * - the calls it can make before any other check, counted through its unchecked callees (each
 *   call site once: a loop-free stretch runs each site once per pass, and a loop ticks per pass),
 *   exceed ENTRY_SPAN: this bounds fan-out such as f1 calling f2 twice, f2 calling f3 twice, ...
 * Every other function runs a bounded number of instructions between checks. This leaves out the
 * entry checks of most of an AssemblyScript module's runtime helpers (__retain, __release, ...),
 * called hundreds of times per request, whose reference counting recurses through a cycle.
 */
const ENTRY_SPAN = 64;
const FVS_MAX = 64;

/** Strongly connected components of the graph on `nodes` (edges leaving `nodes` are ignored), callees first. */
function components(nodes: readonly number[], inSet: (v: number) => boolean, succ: (v: number) => readonly number[]): number[][] {
  const index = new Map<number, number>();
  const low = new Map<number, number>();
  const onStack = new Set<number>();
  const stack: number[] = [];
  const out: number[][] = [];
  let next = 0;
  for (const root of nodes) {
    if (index.has(root)) continue;
    const work: [number, number][] = [[root, 0]];
    index.set(root, next);
    low.set(root, next++);
    stack.push(root);
    onStack.add(root);
    while (work.length) {
      const top = work[work.length - 1]!;
      const [v, k] = top;
      const callees = succ(v);
      if (k < callees.length) {
        top[1] = k + 1;
        const w = callees[k]!;
        if (!inSet(w)) continue;
        if (!index.has(w)) {
          index.set(w, next);
          low.set(w, next++);
          stack.push(w);
          onStack.add(w);
          work.push([w, 0]);
        } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
        continue;
      }
      work.pop();
      if (work.length) {
        const parent = work[work.length - 1]![0];
        low.set(parent, Math.min(low.get(parent)!, low.get(v)!));
      }
      if (low.get(v) === index.get(v)) {
        const comp: number[] = [];
        for (;;) {
          const w = stack.pop()!;
          onStack.delete(w);
          comp.push(w);
          if (w === v) break;
        }
        out.push(comp);
      }
    }
  }
  return out;
}

function entryChecks(b: Uint8Array, s: Section, rw: Rewrite): { checked: boolean[]; loops: boolean[] } {
  const r = new Reader(b, s.start, s.end);
  const n = r.u32();
  const scans: BodyScan[] = [];
  const nul = new NullWriter();
  for (let i = 0; i < n; i++) {
    const size = r.u32();
    const end = r.pos + size;
    const br = new Reader(b, r.pos, end);
    const groups = br.u32();
    for (let j = 0; j < groups; j++) {
      br.u32();
      br.valType();
    }
    const scan: BodyScan = { loops: false, indirect: false, callees: [] };
    rewriteExpr(br, nul, rw, undefined, scan);
    // Calls to imports are host functions: bounded, and never back into the module.
    scan.callees = scan.callees.filter((c) => c >= rw.refuel).map((c) => c - rw.refuel);
    for (const c of scan.callees) if (c >= n) throw new MeterError(`function ${i + rw.refuel} calls function ${c + rw.refuel}, which does not exist`);
    scans.push(scan);
    r.pos = end;
  }
  const succ = (v: number): readonly number[] => scans[v]!.callees;
  const checked = scans.map((sc, f) => sc.indirect || sc.callees.includes(f));
  const all = Array.from({ length: n }, (_, i) => i);
  for (const comp of components(all, () => true, succ)) {
    if (comp.length === 1) continue;
    if (comp.length > FVS_MAX) {
      for (const f of comp) checked[f] = true;
      continue;
    }
    // Greedy feedback vertex set: break what is left of the cycles until none is.
    const left = new Set(comp.filter((f) => !checked[f]));
    for (;;) {
      const cyclic = components([...left], (v) => left.has(v), succ).filter((c) => c.length > 1);
      if (!cyclic.length) break;
      for (const c of cyclic) {
        const inC = new Set(c);
        let best = c[0]!;
        let bestScore = -1;
        for (const f of c) {
          const outs = scans[f]!.callees.filter((g) => inC.has(g)).length;
          const ins = c.reduce((k, g) => k + scans[g]!.callees.filter((h) => h === f).length, 0);
          if (ins * outs > bestScore) {
            bestScore = ins * outs;
            best = f;
          }
        }
        checked[best] = true;
        left.delete(best);
      }
    }
  }
  // The unchecked functions now call each other without cycles: count each one's calls up to
  // the next check, callees first, and check those past ENTRY_SPAN.
  const cost = new Array<number>(n).fill(0);
  for (const comp of components(all, (v) => !checked[v], succ)) {
    for (const f of comp) {
      if (checked[f]) continue;
      let c = 1;
      for (const g of scans[f]!.callees) if (!checked[g]) c += cost[g]!;
      if (c > ENTRY_SPAN) checked[f] = true;
      else cost[f] = c;
    }
  }
  return { checked, loops: scans.map((sc) => sc.loops) };
}

function rewriteCode(b: Uint8Array, s: Section, rw: Rewrite, params: number[], check: (scratch: number) => number[]): Writer {
  const { checked, loops } = entryChecks(b, s, rw);
  const r = new Reader(b, s.start, s.end);
  const w = new Writer();
  const n = r.u32();
  if (n !== params.length) throw new MeterError(`code section has ${n} bodies, function section ${params.length} functions`);
  w.push(leb(n));
  for (let i = 0; i < n; i++) {
    const size = r.u32();
    const end = r.pos + size;
    const body = new Writer();
    const br = new Reader(b, r.pos, end);
    const groups = br.u32();
    const declStart = br.pos;
    let locals = params[i]!;
    for (let j = 0; j < groups; j++) {
      locals += br.u32();
      br.valType();
    }
    if (!checked[i] && !loops[i]) {
      body.push(b.subarray(r.pos, br.pos));
      rewriteExpr(br, body, rw, undefined);
    } else {
      // One more i32 local: the checks' scratch (the fuel value just computed).
      body.push(leb(groups + 1));
      body.push(b.subarray(declStart, br.pos));
      body.push([0x01, 0x7f]);
      const c = check(locals);
      if (checked[i]) body.push(c);
      rewriteExpr(br, body, rw, loops[i] ? c : undefined);
    }
    if (br.pos !== end) throw new MeterError(`function ${i}: body ends at byte ${br.pos}, its size says ${end}`);
    w.push(leb(body.length));
    for (const p of body.parts) w.push(p);
    r.pos = end;
  }
  return w;
}

/** The name section with function indices renumbered (subsections 1, 2, 3); others as they are. */
function rewriteCustom(b: Uint8Array, s: Section, shift: (i: number) => number): Uint8Array[] | undefined {
  const r = new Reader(b, s.start, s.end);
  const nameLen = r.u32();
  const name = Buffer.from(b.subarray(r.pos, r.pos + nameLen)).toString('utf8');
  r.skip(nameLen);
  if (name !== 'name') return undefined;
  const w = new Writer();
  w.push(b.subarray(s.start, r.pos));
  try {
    while (r.pos < s.end) {
      const id = r.byte();
      const size = r.u32();
      const end = r.pos + size;
      if (id < 1 || id > 3) {
        w.push([id, ...leb(size)]);
        w.push(b.subarray(r.pos, end));
        r.pos = end;
        continue;
      }
      const sub = new Writer();
      const sr = new Reader(b, r.pos, end);
      const count = sr.u32();
      sub.push(leb(count));
      for (let i = 0; i < count; i++) {
        sub.push(leb(shift(sr.u32())));
        const at = sr.pos;
        if (id === 1) sr.name();
        else {
          const k = sr.u32();
          for (let j = 0; j < k; j++) {
            sr.u32();
            sr.name();
          }
        }
        sub.push(b.subarray(at, sr.pos));
      }
      w.push([id, ...leb(sub.length)]);
      for (const p of sub.parts) w.push(p);
      r.pos = end;
    }
  } catch {
    return []; // an unreadable name section is dropped (it only names functions in traces)
  }
  return section(0, w);
}
