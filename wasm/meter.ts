/**
 * Makes a module interruptible on the thread that runs it: a call into a metered module checks
 * a fuel counter at every function entry and at the top of every loop iteration, and when the
 * counter runs out it asks the host for more (`portico.refuel`, a cheap clock check). Past the
 * call's deadline the host answers 0 and the module executes `unreachable`, which traps: a trap
 * cannot be caught inside WebAssembly (unlike an exception thrown by an import, which wasm's
 * exception handling could catch), so the call unwinds to the host and the VM is failed.
 *
 * This is what lets VMs run inline on the main thread with the same time budget as worker-thread
 * VMs: nothing else can stop synchronous wasm on the thread that runs it. Every function entry and
 * every loop header is metered, so any unbounded execution (loops, recursion) reaches a check.
 *
 * The rewrite, per the WebAssembly binary format (https://webassembly.github.io/spec/core/binary/):
 * - type section: the type `[] -> [i32]`, appended unless present;
 * - import section: `portico.refuel` appended after the last import, so it takes the first index
 *   after the imported functions and every defined function's index moves up by one; every
 *   function index is renumbered (call, return_call, ref.func, exports, start, elements, global
 *   initialisers, the name section);
 * - global section: one mutable i32 (the fuel), appended, exported as `portico.fuel` so the host
 *   can empty it (a WASI sleep past the deadline);
 * - code section: at each function entry and after each `loop` header:
 *
 *       global.get $fuel  i32.eqz  if  call $refuel  global.set $fuel
 *                                      global.get $fuel  i32.eqz  if unreachable end  end
 *       global.get $fuel  i32.const 1  i32.sub  global.set $fuel
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
function rewriteExpr(r: Reader, w: Writer, rw: Rewrite, check: number[] | undefined): void {
  const b = r.b;
  let copied = r.pos;
  let depth = 1;
  const flush = (upTo: number): void => {
    if (upTo > copied) w.push(b.subarray(copied, upTo));
  };
  const funcIndex = (): void => {
    const at = r.pos;
    const idx = r.u32();
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
      case 0x07: case 0x08: case 0x09: case 0x0c: case 0x0d: case 0x14: case 0x15: case 0xd4: case 0xd6:
        // catch tag, throw tag, rethrow label, br, br_if, call_ref type, return_call_ref type, br_on_(non_)null label
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
      case 0xd2: // ref.func
        funcIndex();
        break;
      case 0x11: // call_indirect type table
      case 0x13: // return_call_indirect
        r.u32();
        r.u32();
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
  start: number; // body start
  end: number;
}

function sections(b: Uint8Array): Section[] {
  if (b.length < 8 || b[0] !== 0 || b[1] !== 0x61 || b[2] !== 0x73 || b[3] !== 0x6d) throw new MeterError('not a WebAssembly binary (bad magic)');
  if (b[4] !== 1 || b[5] !== 0 || b[6] !== 0 || b[7] !== 0) throw new MeterError('not a WebAssembly core module (version 1)');
  const out: Section[] = [];
  const r = new Reader(b, 8);
  while (r.pos < b.length) {
    const id = r.byte();
    const size = r.u32();
    const start = r.pos;
    if (start + size > b.length) throw new MeterError('section runs past the end of the module');
    out.push({ id, start, end: start + size });
    r.pos = start + size;
  }
  return out;
}

function section(id: number, body: Writer | number[]): Uint8Array[] {
  const len = body instanceof Writer ? body.length : body.length;
  const head = Uint8Array.from([id, ...leb(len)]);
  return body instanceof Writer ? [head, ...body.parts] : [head, Uint8Array.from(body)];
}

/** Instruments a module (see the file comment); throws MeterError for what it cannot decode. */
export function meter(b: Uint8Array): Uint8Array {
  const secs = sections(b);
  const find = (id: number): Section | undefined => secs.find((s) => s.id === id);

  // Types: find or append [] -> [i32].
  const typeSec = find(1);
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
  const check = [0x23, ...G, 0x45, 0x04, 0x40, 0x10, ...leb(rw.refuel), 0x24, ...G, 0x23, ...G, 0x45, 0x04, 0x40, 0x00, 0x0b, 0x0b, 0x23, ...G, 0x41, 0x01, 0x6b, 0x24, ...G];

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
        return s ? section(10, rewriteCode(b, s, rw, check)) : undefined;
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
    out.push(b.subarray(sectionHeadStart(b, s), s.end));
  }
  emitMissingBefore(-1);
  return Buffer.concat(out);
}

/** Where a section's id byte is, given its body start (the size LEB precedes the body). */
function sectionHeadStart(b: Uint8Array, s: Section): number {
  let p = s.start - 1; // last byte of the size LEB
  while (p > 0 && (b[p - 1]! & 0x80) !== 0) p--;
  return p - 1;
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

function rewriteCode(b: Uint8Array, s: Section, rw: Rewrite, check: number[]): Writer {
  const r = new Reader(b, s.start, s.end);
  const w = new Writer();
  const n = r.u32();
  w.push(leb(n));
  for (let i = 0; i < n; i++) {
    const size = r.u32();
    const end = r.pos + size;
    const body = new Writer();
    const br = new Reader(b, r.pos, end);
    const groups = br.u32();
    for (let j = 0; j < groups; j++) {
      br.u32();
      br.valType();
    }
    body.push(b.subarray(r.pos, br.pos));
    body.push(check);
    rewriteExpr(br, body, rw, check);
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
