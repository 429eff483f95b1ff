/**
 * The ABI's header-map serialisation: u32 count, then (u32 key length, u32 value length) per
 * pair, then each key and value followed by a NUL (proxy-wasm spec, "Header maps").
 */
export type Pairs = [string, string][];

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodePairs(pairs: readonly (readonly [string, string])[]): Uint8Array {
  const keys = pairs.map((p) => enc.encode(p[0]));
  const vals = pairs.map((p) => enc.encode(p[1]));
  let size = 4 + 8 * pairs.length;
  for (let i = 0; i < pairs.length; i++) size += keys[i].length + vals[i].length + 2;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, pairs.length, true);
  let off = 4 + 8 * pairs.length;
  for (let i = 0; i < pairs.length; i++) {
    dv.setUint32(4 + 8 * i, keys[i].length, true);
    dv.setUint32(8 + 8 * i, vals[i].length, true);
    out.set(keys[i], off);
    off += keys[i].length + 1;
    out.set(vals[i], off);
    off += vals[i].length + 1;
  }
  return out;
}

/** Decodes pairs; throws on a truncated or inconsistent buffer. */
export function decodePairs(b: Uint8Array): Pairs {
  if (b.length < 4) return [];
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = dv.getUint32(0, true);
  if (4 + 8 * n > b.length) throw new RangeError(`header map claims ${n} pairs in ${b.length} bytes`);
  let off = 4 + 8 * n;
  const out: Pairs = [];
  for (let i = 0; i < n; i++) {
    const kl = dv.getUint32(4 + 8 * i, true);
    const vl = dv.getUint32(8 + 8 * i, true);
    if (off + kl + vl + 2 > b.length) throw new RangeError('header map data truncated');
    const k = dec.decode(b.subarray(off, off + kl));
    off += kl + 1;
    const v = dec.decode(b.subarray(off, off + vl));
    off += vl + 1;
    out.push([k, v]);
  }
  return out;
}
