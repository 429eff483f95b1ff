// A small JSON reader for plugin configuration (AssemblyScript 0.14 has no JSON in its
// standard library). Objects, arrays, strings (with \" \\ \/ \n \t \uXXXX escapes), numbers,
// true/false/null. Malformed input yields null from parseJSON.

export const enum Kind { Null, Bool, Num, Str, Arr, Obj }

export class JValue {
  kind: Kind = Kind.Null;
  b: bool = false;
  n: f64 = 0;
  s: string = "";
  arr: Array<JValue> = new Array<JValue>();
  keys: Array<string> = new Array<string>();
  vals: Array<JValue> = new Array<JValue>();

  get(key: string): JValue | null {
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i] == key) return this.vals[i];
    }
    return null;
  }

  /** The string at `key`, or `dflt` when absent or not a string. */
  str(key: string, dflt: string): string {
    const v = this.get(key);
    if (v === null || v.kind != Kind.Str) return dflt;
    return v.s;
  }

  /** The strings of the array at `key` (non-strings skipped). */
  strs(key: string): Array<string> {
    const out = new Array<string>();
    const v = this.get(key);
    if (v === null || v.kind != Kind.Arr) return out;
    for (let i = 0; i < v.arr.length; i++) {
      if (v.arr[i].kind == Kind.Str) out.push(v.arr[i].s);
    }
    return out;
  }
}

class Reader {
  src: string;
  pos: i32 = 0;
  ok: bool = true;
  constructor(src: string) { this.src = src; }

  ws(): void {
    while (this.pos < this.src.length) {
      const c = this.src.charCodeAt(this.pos);
      if (c == 32 || c == 9 || c == 10 || c == 13) this.pos++;
      else break;
    }
  }

  peek(): i32 {
    return this.pos < this.src.length ? this.src.charCodeAt(this.pos) : -1;
  }

  value(): JValue {
    this.ws();
    const v = new JValue();
    const c = this.peek();
    if (c == 123) { // {
      this.pos++;
      v.kind = Kind.Obj;
      this.ws();
      if (this.peek() == 125) { this.pos++; return v; }
      while (this.ok) {
        this.ws();
        if (this.peek() != 34) { this.ok = false; break; }
        const k = this.string();
        this.ws();
        if (this.peek() != 58) { this.ok = false; break; }
        this.pos++;
        const val = this.value();
        v.keys.push(k);
        v.vals.push(val);
        this.ws();
        const d = this.peek();
        this.pos++;
        if (d == 125) break;
        if (d != 44) { this.ok = false; break; }
      }
    } else if (c == 91) { // [
      this.pos++;
      v.kind = Kind.Arr;
      this.ws();
      if (this.peek() == 93) { this.pos++; return v; }
      while (this.ok) {
        v.arr.push(this.value());
        this.ws();
        const d = this.peek();
        this.pos++;
        if (d == 93) break;
        if (d != 44) { this.ok = false; break; }
      }
    } else if (c == 34) {
      v.kind = Kind.Str;
      v.s = this.string();
    } else if (this.src.startsWith("true", this.pos)) {
      v.kind = Kind.Bool; v.b = true; this.pos += 4;
    } else if (this.src.startsWith("false", this.pos)) {
      v.kind = Kind.Bool; this.pos += 5;
    } else if (this.src.startsWith("null", this.pos)) {
      this.pos += 4;
    } else if (c == 45 || (c >= 48 && c <= 57)) {
      const start = this.pos;
      this.pos++;
      while (this.pos < this.src.length) {
        const d = this.src.charCodeAt(this.pos);
        if ((d >= 48 && d <= 57) || d == 46 || d == 101 || d == 69 || d == 43 || d == 45) this.pos++;
        else break;
      }
      v.kind = Kind.Num;
      v.n = parseFloat(this.src.substring(start, this.pos));
    } else {
      this.ok = false;
    }
    return v;
  }

  string(): string {
    this.pos++; // opening quote
    let out = "";
    let start = this.pos;
    while (this.pos < this.src.length) {
      const c = this.src.charCodeAt(this.pos);
      if (c == 34) {
        out += this.src.substring(start, this.pos);
        this.pos++;
        return out;
      }
      if (c == 92) {
        out += this.src.substring(start, this.pos);
        const e = this.src.charCodeAt(this.pos + 1);
        this.pos += 2;
        if (e == 110) out += "\n";
        else if (e == 116) out += "\t";
        else if (e == 114) out += "\r";
        else if (e == 98) out += "\b";
        else if (e == 102) out += "\f";
        else if (e == 117) {
          out += String.fromCharCode(I32.parseInt(this.src.substring(this.pos, this.pos + 4), 16));
          this.pos += 4;
        } else out += String.fromCharCode(e);
        start = this.pos;
        continue;
      }
      this.pos++;
    }
    this.ok = false;
    return out;
  }
}

/** Parses `src`; null when it is not JSON. */
export function parseJSON(src: string): JValue | null {
  const r = new Reader(src);
  const v = r.value();
  r.ws();
  if (!r.ok || r.pos != src.length) return null;
  return v;
}
