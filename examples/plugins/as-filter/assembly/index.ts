// An Eddy filter plugin in AssemblyScript, written straight against the
// plugin ABI v1 (docs/PLUGIN-ABI.md) with no SDK. It behaves as the Go
// example filter (examples/plugins/filter) with its default
// configuration, and the conformance corpus holds both to the same output:
//
//   - a record carrying the header "eddy-drop" is dropped;
//   - a record whose JSON value has a top-level "level" of "debug" is
//     dropped;
//   - the top-level "password" members (up to 8) of the remaining records
//     are replaced by "***".
//
// It takes no configuration. Keys are compared after JSON unescaping, so
// "pass\u0077ord" is redacted too; level values are compared as written.

@external("eddy_v1", "set_error")
declare function set_error(code: u32, ptr: usize, len: u32): void;

@external("eddy_v1", "set_output")
declare function set_output(ptr: usize, len: u32): void;

const RBV1_MAGIC: u32 = 0x31564252;
const HEADER_SIZE: u32 = 64;
const RECORD_SIZE: u32 = 48;
const KV_SIZE: u32 = 16;
const NULL_LEN: u32 = 0xffffffff;
const UNASSIGNED: u32 = 0xffffffff;
const ERR_INPUT: i32 = -2;
const ERR_CONFIG: i32 = -4;

const DROP: u8 = 0;
const KEEP: u8 = 1;
const REPLACED: u8 = 2;

const MAX_SPANS: u32 = 8;
// A replaced record in the scratch area: its index, its span count and
// up to MAX_SPANS (start, end) pairs, as u32s.
const SCRATCH_WORDS: u32 = 2 + 2 * MAX_SPANS;

// The ASCII strings the filter compares against.
const DROP_HEADER = bytes("eddy-drop");
const LEVEL = bytes("level");
const DEBUG = bytes("debug");
const PASSWORD = bytes("password");
const MASK = bytes('"***"');

class Bytes {
  // The first and the last four bytes, for same.
  first: u32 = 0;
  last: u32 = 0;

  constructor(public ptr: usize, public len: u32) {
    if (len >= 4) {
      this.first = load<u32>(ptr);
      this.last = load<u32>(ptr + <usize>(len - 4));
    }
  }
}

function bytes(s: string): Bytes {
  const b = String.UTF8.encode(s);
  return new Bytes(changetype<usize>(b), <u32>b.byteLength);
}

function fail(code: i32, msg: string): i32 {
  const b = String.UTF8.encode(msg);
  set_error(1, changetype<usize>(b), <u32>b.byteLength);
  return code;
}

export function eddy_abi_version(): u32 {
  return (1 << 16) | 0;
}

export function eddy_alloc(size: u32): usize {
  return heap.alloc(<usize>size);
}

export function eddy_free(ptr: usize): void {
  heap.free(ptr);
}

export function eddy_init(cfgPtr: usize, cfgLen: u32): i32 {
  if (cfgLen > 0) {
    return fail(ERR_CONFIG, "as-filter takes no configuration");
  }
  return 0;
}

// A buffer kept across calls. It only grows, doubling: the stub runtime
// reclaims a freed block only when it is the last one allocated, so
// growing step by step would leak.
class Buffer {
  ptr: usize = 0;
  cap: usize = 0;

  ensure(need: usize): usize {
    if (need > this.cap) {
      const cap = max(need, this.cap << 1);
      if (this.ptr != 0) heap.free(this.ptr);
      this.ptr = heap.alloc(cap);
      this.cap = cap;
    }
    return this.ptr;
  }
}

// The output (valid until the next call, as the ABI requires) and the
// scratch list of replaced records.
const outBuf = new Buffer();
const scratchBuf = new Buffer();

function equal(p: usize, n: u32, s: Bytes): bool {
  return n == s.len && memory.compare(p, s.ptr, n) == 0;
}

// same reports whether p[0:n] is s, a string of four to eight bytes: two
// four-byte loads, which overlap when s is shorter than eight.
// @ts-ignore: decorator
@inline
function same(p: usize, n: u32, s: Bytes): bool {
  return n == s.len && load<u32>(p) == s.first && load<u32>(p + <usize>(n - 4)) == s.last;
}

function isSpace(c: u32): bool {
  return c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d;
}

function hexDigit(c: u32): i32 {
  if (c >= 0x30 && c <= 0x39) return <i32>(c - 0x30);
  if (c >= 0x61 && c <= 0x66) return <i32>(c - 0x61 + 10);
  if (c >= 0x41 && c <= 0x46) return <i32>(c - 0x41 + 10);
  return -1;
}

// skipSpace returns the index of the first byte of p[i:n] that is not
// JSON whitespace. Compact JSON has none: the common case takes no loop
// (each loop entered pays the guard's check).
// @ts-ignore: decorator
@inline
function skipSpace(p: usize, n: u32, i: u32): u32 {
  if (i < n && isSpace(load<u8>(p + i))) {
    do {
      i++;
    } while (i < n && isSpace(load<u8>(p + i)));
  }
  return i;
}

// keyIs compares the JSON string body p[0:n] (escapes undone) with the
// ASCII string s. It returns 1 on a match, 0 otherwise, -1 when an escape
// is malformed (which ends the scan, as in the Go filter).
function keyIs(p: usize, n: u32, s: Bytes): i32 {
  let j: u32 = 0;
  let match = true;
  for (let i: u32 = 0; i < n; i++) {
    let c = <u32>load<u8>(p + i);
    if (c == 0x5c) {
      if (++i >= n) return -1;
      c = <u32>load<u8>(p + i);
      if (c == 0x62) c = 0x08;
      else if (c == 0x66) c = 0x0c;
      else if (c == 0x6e) c = 0x0a;
      else if (c == 0x72) c = 0x0d;
      else if (c == 0x74) c = 0x09;
      else if (c == 0x75) {
        if (i + 4 >= n) return -1;
        let u: i32 = 0;
        for (let k: u32 = 1; k <= 4; k++) {
          const d = hexDigit(<u32>load<u8>(p + i + k));
          if (d < 0) return -1;
          u = (u << 4) | d;
        }
        i += 4;
        c = <u32>u; // beyond ASCII it cannot match s
      } else if (c != 0x22 && c != 0x5c && c != 0x2f) return -1;
    }
    match = match && j < s.len && c == <u32>load<u8>(s.ptr + j);
    j++;
  }
  return match && j == s.len ? 1 : 0;
}

// Whether the last string stringEnd walked held an escape: keys without
// one are compared as they are written.
let escaped = false;

const QUOTES = i8x16.splat(0x22);
const BACKSLASHES = i8x16.splat(0x5c);

// special returns a mask of the quotes and backslashes among the 16 bytes
// at p, bit k for p[k].
// @ts-ignore: decorator
@inline
function special(p: usize): u32 {
  const v = v128.load(p);
  return <u32>i8x16.bitmask(v128.or(i8x16.eq(v, QUOTES), i8x16.eq(v, BACKSLASHES)));
}

// nextSpecial returns the index of the first quote or backslash in
// p[i:n], or n. It looks at 16 bytes at a time; the last (partial) step
// looks at the text's last 16 bytes and ignores those before i, so it
// never reads past p[n-1].
// @ts-ignore: decorator
@inline
function nextSpecial(p: usize, n: u32, i: u32): u32 {
  while (i + 16 <= n) {
    const m = special(p + <usize>i);
    if (m != 0) return i + ctz(m);
    i += 16;
  }
  if (i >= n) return n;
  if (n >= 16) {
    const m = special(p + <usize>(n - 16)) >> (16 - (n - i));
    return m != 0 ? i + ctz(m) : n;
  }
  for (; i < n; i++) {
    const c = load<u8>(p + <usize>i);
    if (c == 0x22 || c == 0x5c) return i;
  }
  return n;
}

// stringEnd returns the index of the quote closing the JSON string whose
// body starts at p[start], or -1 when the text ends first; it sets
// escaped.
function stringEnd(p: usize, n: u32, start: u32): i32 {
  escaped = false;
  // Most strings end within the first 16 bytes, without an escape.
  if (start + 16 <= n) {
    const m = special(p + <usize>start);
    if (m != 0 && load<u8>(p + <usize>(start + ctz(m))) == 0x22) return <i32>(start + ctz(m));
  }
  let i = start;
  while (true) {
    i = nextSpecial(p, n, i);
    if (i >= n) return -1;
    if (load<u8>(p + <usize>i) == 0x22) return <i32>i;
    escaped = true;
    i += 2;
  }
  return -1;
}

// scan walks the top-level members of the JSON object p[0:n]. It returns
// -1 when the record is to be dropped (level "debug"), else the number of
// password members whose value spans it stored at spans. A malformed text
// ends the walk: what was found before counts.
function scan(p: usize, n: u32, spans: usize): i32 {
  let found: u32 = 0;
  let i: u32 = 0;
  i = skipSpace(p, n, i);
  if (i >= n || load<u8>(p + i) != 0x7b) return 0;
  i++;
  i = skipSpace(p, n, i);
  if (i < n && load<u8>(p + i) == 0x7d) return 0;
  while (i < n) {
    if (load<u8>(p + i) != 0x22) return found;
    const ks = i + 1;
    const ke = stringEnd(p, n, ks);
    if (ke < 0) return found;
    const keyEscaped = escaped;
    i = <u32>ke + 1;
    i = skipSpace(p, n, i);
    if (i >= n || load<u8>(p + i) != 0x3a) return found;
    i++;
    i = skipSpace(p, n, i);
    const vs = i;
    if (i >= n) return found;
    const c = load<u8>(p + i);
    if (c == 0x22) {
      const e = stringEnd(p, n, i + 1);
      if (e < 0) return found;
      i = <u32>e + 1;
    } else if (c == 0x7b || c == 0x5b) {
      let depth = 0;
      for (; i < n; i++) {
        const d = load<u8>(p + i);
        if (d == 0x22) {
          const e = stringEnd(p, n, i + 1);
          if (e < 0) return found;
          i = <u32>e;
        } else if (d == 0x7b || d == 0x5b) {
          depth++;
        } else if (d == 0x7d || d == 0x5d) {
          depth--;
          if (depth == 0) {
            i++;
            break;
          }
        }
      }
      if (depth != 0) return found;
    } else {
      while (i < n) {
        const d = load<u8>(p + i);
        if (d == 0x2c || d == 0x7d || d == 0x5d || isSpace(d)) break;
        i++;
      }
      if (i == vs) return found;
    }
    // The member: key p[ks:ke], value p[vs:i].
    const kp = p + ks;
    const kn = <u32>ke - ks;
    const isLevel = keyEscaped ? keyIs(kp, kn, LEVEL) : <i32>same(kp, kn, LEVEL);
    if (isLevel < 0) return found;
    if (isLevel == 1) {
      let lp = p + vs;
      let ln = i - vs;
      if (ln >= 2 && load<u8>(lp) == 0x22) {
        lp++;
        ln -= 2;
      }
      if (same(lp, ln, DEBUG)) return -1;
    }
    if (found < MAX_SPANS && (keyEscaped ? keyIs(kp, kn, PASSWORD) == 1 : same(kp, kn, PASSWORD))) {
      store<u32>(spans + (<usize>found << 3), vs);
      store<u32>(spans + (<usize>found << 3), i, 4);
      found++;
    }
    i = skipSpace(p, n, i);
    if (i < n && load<u8>(p + i) == 0x7d) return found;
    if (i >= n || load<u8>(p + i) != 0x2c) return found;
    i++;
    i = skipSpace(p, n, i);
  }
  return found;
}

function hasDropHeader(base: usize, e: usize): bool {
  const hc = load<u32>(e, 36);
  const ht = base + <usize>load<u32>(e, 32);
  for (let j: u32 = 0; j < hc; j++) {
    const h = ht + <usize>(j * KV_SIZE);
    const kl = load<u32>(h, 4);
    if (kl != NULL_LEN && equal(base + <usize>load<u32>(h), kl, DROP_HEADER)) return true;
  }
  return false;
}

// put writes the off/len pair of a field and copies its bytes to data,
// returning the new end of the data area.
function put(out: usize, at: usize, data: u32, src: usize, len: u32): u32 {
  store<u32>(at, data);
  store<u32>(at, len, 4);
  if (len == NULL_LEN) return data;
  memory.copy(out + <usize>data, src, len);
  return data + len;
}

export function eddy_transform(inPtr: usize, inLen: u32, decisions: usize): i32 {
  if (inLen < HEADER_SIZE || load<u32>(inPtr) != RBV1_MAGIC) {
    return fail(ERR_INPUT, "not an RBV1 buffer");
  }
  const count = load<u32>(inPtr, 8);
  const table = inPtr + <usize>load<u32>(inPtr, 48);
  const scratch = scratchBuf.ensure(<usize>count * SCRATCH_WORDS * 4);

  // Pass 1: decisions, and the size of the output.
  let replaced: u32 = 0;
  let kvs: u32 = 0;
  let data: u32 = 0;
  for (let i: u32 = 0; i < count; i++) {
    const e = table + <usize>(i * RECORD_SIZE);
    let d = KEEP;
    const vl = load<u32>(e, 28);
    if (hasDropHeader(inPtr, e)) {
      d = DROP;
    } else if (vl != NULL_LEN) {
      const slot = scratch + <usize>(replaced * SCRATCH_WORDS * 4);
      const found = scan(inPtr + <usize>load<u32>(e, 24), vl, slot + 8);
      if (found < 0) {
        d = DROP;
      } else if (found > 0) {
        d = REPLACED;
        store<u32>(slot, i);
        store<u32>(slot, <u32>found, 4);
        let size = vl;
        for (let s: u32 = 0; s < <u32>found; s++) {
          const sp = slot + 8 + (<usize>s << 3);
          size += MASK.len - (load<u32>(sp, 4) - load<u32>(sp));
        }
        const kl = load<u32>(e, 20);
        if (kl != NULL_LEN) size += kl;
        const hc = load<u32>(e, 36);
        const ht = inPtr + <usize>load<u32>(e, 32);
        for (let j: u32 = 0; j < hc; j++) {
          const h = ht + <usize>(j * KV_SIZE);
          const hk = load<u32>(h, 4);
          const hv = load<u32>(h, 12);
          if (hk != NULL_LEN) size += hk;
          if (hv != NULL_LEN) size += hv;
        }
        kvs += hc;
        data += size;
        replaced++;
      }
    }
    store<u8>(decisions + <usize>i, d);
  }
  if (replaced == 0) return <i32>count;

  // Pass 2: the output buffer, in the input's layout.
  const kvOff = HEADER_SIZE + replaced * RECORD_SIZE;
  const dataOff = kvOff + kvs * KV_SIZE;
  const total = dataOff + data;
  const out = outBuf.ensure(<usize>total);
  memory.fill(out, 0, HEADER_SIZE);
  store<u32>(out, RBV1_MAGIC);
  store<u16>(out, <u16>HEADER_SIZE, 4);
  store<u32>(out, replaced, 8);
  store<u8>(out, load<u8>(inPtr, 12), 12);
  store<u32>(out, dataOff, 16);
  store<u32>(out, UNASSIGNED, 24);
  store<i64>(out, -1, 32);
  store<u32>(out, HEADER_SIZE, 48);
  store<u32>(out, total, 52);
  let at = dataOff;
  let kv = kvOff;
  for (let r: u32 = 0; r < replaced; r++) {
    const slot = scratch + <usize>(r * SCRATCH_WORDS * 4);
    const i = load<u32>(slot);
    const found = load<u32>(slot, 4);
    const e = table + <usize>(i * RECORD_SIZE);
    const o = out + <usize>(HEADER_SIZE + r * RECORD_SIZE);
    memory.fill(o, 0, RECORD_SIZE);
    store<i64>(o, load<i64>(e, 8), 8);
    at = put(out, o + 16, at, inPtr + <usize>load<u32>(e, 16), load<u32>(e, 20));
    // The value with each password member's value masked.
    const vp = inPtr + <usize>load<u32>(e, 24);
    const vl = load<u32>(e, 28);
    const vStart = at;
    let prev: u32 = 0;
    for (let s: u32 = 0; s < found; s++) {
      const sp = slot + 8 + (<usize>s << 3);
      const start = load<u32>(sp);
      memory.copy(out + <usize>at, vp + <usize>prev, start - prev);
      at += start - prev;
      memory.copy(out + <usize>at, MASK.ptr, MASK.len);
      at += MASK.len;
      prev = load<u32>(sp, 4);
    }
    memory.copy(out + <usize>at, vp + <usize>prev, vl - prev);
    at += vl - prev;
    store<u32>(o, vStart, 24);
    store<u32>(o, at - vStart, 28);
    // The headers, copied.
    const hc = load<u32>(e, 36);
    const ht = inPtr + <usize>load<u32>(e, 32);
    store<u32>(o, kv, 32);
    store<u32>(o, hc, 36);
    for (let j: u32 = 0; j < hc; j++) {
      const h = ht + <usize>(j * KV_SIZE);
      const q = out + <usize>kv;
      at = put(out, q, at, inPtr + <usize>load<u32>(h), load<u32>(h, 4));
      at = put(out, q + 8, at, inPtr + <usize>load<u32>(h, 8), load<u32>(h, 12));
      kv += KV_SIZE;
    }
    store<u32>(o, i, 40);
  }
  set_output(out, total);
  return <i32>count;
}

// Replaces AssemblyScript's default abort (an import from "env", which
// the broker refuses): a failed check traps.
export function abort(message: usize, fileName: usize, line: u32, column: u32): void {
  unreachable();
}
