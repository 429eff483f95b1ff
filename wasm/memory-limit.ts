/**
 * Caps a module's linear memory: rewrites the maximum of the memory it defines (section 5) or
 * imports (section 2) to at most `limitBytes`, so `memory.grow` beyond it fails inside the VM
 * (the plugin then traps or exits, and the host applies the failure strategy) instead of taking
 * the process's memory. WebAssembly binary format: https://webassembly.github.io/spec/core/binary/
 */
const PAGE = 65536;

function readU32(b: Uint8Array, pos: number): [number, number] {
  let result = 0;
  let shift = 0;
  for (;;) {
    const byte = b[pos++];
    if (byte === undefined) throw new Error('truncated LEB128');
    result |= (byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) break;
    shift += 7;
    if (shift > 35) throw new Error('LEB128 too long');
  }
  return [result >>> 0, pos];
}

function u32(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function skipName(b: Uint8Array, pos: number): number {
  const [len, p] = readU32(b, pos);
  return p + len;
}

/** Re-encodes one limits record with max = min(max, cap); throws when min already exceeds cap. */
function capLimits(b: Uint8Array, pos: number, capPages: number): [number[], number] {
  const flags = b[pos];
  if (flags === undefined || flags > 3) throw new Error(`unsupported memory limits flags ${flags} (memory64?)`);
  let p = pos + 1;
  let min: number;
  [min, p] = readU32(b, p);
  let max = capPages;
  if (flags & 1) {
    let declared: number;
    [declared, p] = readU32(b, p);
    max = Math.min(declared, capPages);
  }
  if (min > capPages) throw new Error(`module needs ${min * PAGE} bytes of memory at start, above the limit of ${capPages * PAGE}`);
  return [[flags | 1, ...u32(min), ...u32(max)], p];
}

export function limitMemory(bytes: Uint8Array, limitBytes: number): Uint8Array {
  const capPages = Math.max(1, Math.floor(limitBytes / PAGE));
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new Error('not a WebAssembly binary (bad magic)');
  }
  const parts: Uint8Array[] = [bytes.subarray(0, 8)];
  let pos = 8;
  while (pos < bytes.length) {
    const id = bytes[pos];
    const [size, bodyStart] = readU32(bytes, pos + 1);
    const end = bodyStart + size;
    if (end > bytes.length) throw new Error('section runs past the end of the module');
    if (id === 5 || id === 2) {
      const body = bytes.subarray(bodyStart, end);
      const out: number[] = [];
      let p = 0;
      let count: number;
      [count, p] = readU32(body, p);
      out.push(...u32(count));
      let changed = false;
      for (let i = 0; i < count; i++) {
        if (id === 5) {
          const [enc, next] = capLimits(body, p, capPages);
          out.push(...enc);
          p = next;
          changed = true;
        } else {
          const start = p;
          p = skipName(body, p);
          p = skipName(body, p);
          const kind = body[p];
          p++;
          if (kind === 2) {
            out.push(...body.subarray(start, p));
            const [enc, next] = capLimits(body, p, capPages);
            out.push(...enc);
            p = next;
            changed = true;
          } else {
            // func (typeidx), table (reftype + limits), global (valtype + mut): copy as is
            if (kind === 0) [, p] = readU32(body, p);
            else if (kind === 1) {
              p++;
              const fl = body[p++];
              [, p] = readU32(body, p);
              if (fl & 1) [, p] = readU32(body, p);
            } else if (kind === 3) p += 2;
            else throw new Error(`unknown import kind ${kind}`);
            out.push(...body.subarray(start, p));
          }
        }
      }
      if (changed) {
        parts.push(Uint8Array.of(id, ...u32(out.length)), Uint8Array.from(out));
      } else {
        parts.push(bytes.subarray(pos, end));
      }
    } else {
      parts.push(bytes.subarray(pos, end));
    }
    pos = end;
  }
  return Buffer.concat(parts);
}
