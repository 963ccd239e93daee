import { Buffer } from "node:buffer";
import { createRequire } from "node:module";

/**
 * The optional peer `bufferutil` (native XOR) masks long payloads several times faster than any JS loop.
 * sockway works without it; with it installed, payloads of NATIVE_MIN bytes or more use it, unless
 * SOCKWAY_NO_NATIVE_MASK=1 is set.
 */
const native = loadNativeUnmask();
const NATIVE_MIN = 128;
/** From this length the portable path XORs 32-bit words through an Int32Array view. */
const WORDS_MIN = 128;

function loadNativeUnmask(): ((buffer: Uint8Array, mask: Uint8Array) => void) | undefined {
  if (process.env.SOCKWAY_NO_NATIVE_MASK === "1") return undefined;
  try {
    const bufferutil = createRequire(import.meta.url)("bufferutil") as { unmask?: unknown };
    return typeof bufferutil.unmask === "function"
      ? (bufferutil.unmask as (buffer: Uint8Array, mask: Uint8Array) => void)
      : undefined;
  } catch {
    return undefined;
  }
}

/** Whether masking runs on the native helper (for tests and benchmark reports). */
export const nativeMasking = native !== undefined;

/** Typed-array words follow the platform's byte order; the key word must be built to match. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * XOR `data[start..end)` in place with the 4-byte masking key (RFC 6455 §5.3), where `offset` is the
 * position of `data[start]` within the frame payload (so a payload can be unmasked piece by piece).
 */
export function applyMask(data: Uint8Array, key: Uint8Array, offset = 0, start = 0, end = data.length): void {
  if (native && end - start >= NATIVE_MIN) {
    const p = offset & 3; // key index of data[start]
    const rotated =
      p === 0 ? key : new Uint8Array([key[p]!, key[(p + 1) & 3]!, key[(p + 2) & 3]!, key[(p + 3) & 3]!]);
    // The helper takes Buffers: a view over the same memory, no copy.
    native(Buffer.from(data.buffer, data.byteOffset + start, end - start), rotated);
    return;
  }
  applyMaskPortable(data, key, offset, start, end);
}

/** `applyMask` in plain JavaScript, whatever is installed. */
export function applyMaskPortable(
  data: Uint8Array,
  key: Uint8Array,
  offset = 0,
  start = 0,
  end = data.length,
): void {
  let i = start;
  const phase = (offset - start) & 3; // key index of data[j] is (j + phase) & 3
  if (end - start < WORDS_MIN) {
    // Short payloads: four bytes per step with the key rotated once. A word view costs more to make
    // than it saves below this size (32 B: about 29 ns against 82 ns on the benchmark machine).
    const p = (start + phase) & 3;
    xorShort(data, start, end, key[p]!, key[(p + 1) & 3]!, key[(p + 2) & 3]!, key[(p + 3) & 3]!);
    return;
  }
  // Bytes up to a 4-byte-aligned address, then whole words with the key rotated to that position.
  while (((data.byteOffset + i) & 3) !== 0) {
    data[i] = data[i]! ^ key[(i + phase) & 3]!;
    i++;
  }
  const words = (end - i) >>> 2;
  const p = (i + phase) & 3;
  const k0 = key[p]!;
  const k1 = key[(p + 1) & 3]!;
  const k2 = key[(p + 2) & 3]!;
  const k3 = key[(p + 3) & 3]!;
  const k = LITTLE_ENDIAN
    ? k0 | (k1 << 8) | (k2 << 16) | (k3 << 24)
    : (k0 << 24) | (k1 << 16) | (k2 << 8) | k3;
  const view = new Int32Array(data.buffer, data.byteOffset + i, words);
  for (let w = 0; w < words; w++) view[w] = view[w]! ^ k;
  i += words << 2;
  for (; i < end; i++) data[i] = data[i]! ^ key[(i + phase) & 3]!;
}

/** Scratch key for `unmaskRange` on the long path (filled just before use). */
const KEY = new Uint8Array(4);

/**
 * `applyMask` with the key as one 32-bit number (byte 0 in the top bits), as the frame parser holds it.
 * Short ranges (most messages) XOR four bytes per step with the key rotated in registers: no key array
 * to fill and no view to make.
 */
export function unmaskRange(data: Uint8Array, key: number, offset: number, start: number, end: number): void {
  if (end - start >= WORDS_MIN) {
    KEY[0] = key >>> 24;
    KEY[1] = (key >>> 16) & 0xff;
    KEY[2] = (key >>> 8) & 0xff;
    KEY[3] = key & 0xff;
    applyMask(data, KEY, offset, start, end);
    return;
  }
  const r = (offset & 3) << 3;
  const k = r === 0 ? key : (key << r) | (key >>> (32 - r)); // byte for data[start] on top
  xorShort(data, start, end, (k >>> 24) & 0xff, (k >>> 16) & 0xff, (k >>> 8) & 0xff, k & 0xff);
}

/** XORs `data[start..end)` with the key bytes `k0..k3` in turn, `k0` on `data[start]`, four per step. */
function xorShort(
  data: Uint8Array,
  start: number,
  end: number,
  k0: number,
  k1: number,
  k2: number,
  k3: number,
): void {
  let i = start;
  for (const stop = end - 3; i < stop; i += 4) {
    data[i] = data[i]! ^ k0;
    data[i + 1] = data[i + 1]! ^ k1;
    data[i + 2] = data[i + 2]! ^ k2;
    data[i + 3] = data[i + 3]! ^ k3;
  }
  if (i < end) {
    data[i] = data[i]! ^ k0;
    if (++i < end) {
      data[i] = data[i]! ^ k1;
      if (++i < end) data[i] = data[i]! ^ k2;
    }
  }
}
