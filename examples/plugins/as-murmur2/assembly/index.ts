// An Eddy partitioner plugin in AssemblyScript, written straight against
// the plugin ABI v1 (docs/PLUGIN-ABI.md) with no SDK: it reads the RBV1
// input in place and places keyed records exactly as Kafka's default
// partitioner does, toPositive(murmur2(key)) % partitions. Records with a
// null key get 0xFFFFFFFF (the broker's built-in partitioner).

// eddy_v1 imports.
@external("eddy_v1", "set_error")
declare function set_error(code: u32, ptr: usize, len: u32): void;

const RBV1_MAGIC: u32 = 0x31564252;
const HEADER_SIZE: u32 = 64;
const RECORD_SIZE: u32 = 48;
const NULL_LEN: u32 = 0xffffffff;
const USE_DEFAULT: u32 = 0xffffffff;
const ERR_INPUT: i32 = -2;

export function eddy_abi_version(): u32 {
  return (1 << 16) | 0;
}

// Buffers handed to the host come from the raw heap: they are never moved
// or collected, so they stay valid until eddy_free.
export function eddy_alloc(size: u32): usize {
  return heap.alloc(<usize>size);
}

export function eddy_free(ptr: usize): void {
  heap.free(ptr);
}

function murmur2(p: usize, len: u32): u32 {
  const m: u32 = 0x5bd1e995;
  let h: u32 = 0x9747b28c ^ len;
  let i: u32 = 0;
  for (; i + 4 <= len; i += 4) {
    let k = load<u32>(p + i);
    k *= m;
    k ^= k >>> 24;
    k *= m;
    h = h * m ^ k;
  }
  const rest = len - i;
  if (rest == 3) h ^= <u32>load<u8>(p + i + 2) << 16;
  if (rest >= 2) h ^= <u32>load<u8>(p + i + 1) << 8;
  if (rest >= 1) {
    h ^= <u32>load<u8>(p + i);
    h *= m;
  }
  h ^= h >>> 13;
  h *= m;
  h ^= h >>> 15;
  return h;
}

const BAD_INPUT = "not an RBV1 buffer";

export function eddy_partition(inPtr: usize, inLen: u32, outPtr: usize): i32 {
  if (inLen < HEADER_SIZE || load<u32>(inPtr) != RBV1_MAGIC) {
    set_error(1, changetype<usize>(BAD_INPUT), <u32>String.UTF8.byteLength(BAD_INPUT));
    return ERR_INPUT;
  }
  const count = load<u32>(inPtr, 8);
  const partitions = load<u32>(inPtr, 28);
  const table = inPtr + <usize>load<u32>(inPtr, 48);
  for (let i: u32 = 0; i < count; i++) {
    const e = table + <usize>(i * RECORD_SIZE);
    const keyLen = load<u32>(e, 20);
    let p = USE_DEFAULT;
    if (keyLen != NULL_LEN && partitions > 0) {
      p = (murmur2(inPtr + <usize>load<u32>(e, 16), keyLen) & 0x7fffffff) % partitions;
    }
    store<u32>(outPtr + <usize>(i * 4), p);
  }
  return <i32>count;
}

// Replaces AssemblyScript's default abort (an import from "env", which
// the broker refuses): a failed check traps.
export function abort(message: usize, fileName: usize, line: u32, column: u32): void {
  unreachable();
}
