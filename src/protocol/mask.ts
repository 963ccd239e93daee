/** Typed-array words follow the platform's byte order; the key word must be built to match. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * XOR `data[start..end)` in place with the 4-byte masking key (RFC 6455 §5.3), where `offset` is the
 * position of `data[start]` within the frame payload (so a payload can be unmasked piece by piece).
 */
export function applyMask(data: Uint8Array, key: Uint8Array, offset = 0, start = 0, end = data.length): void {
  let i = start;
  // Align to the key so the bulk can run on 32-bit words.
  while (i < end && ((offset + i - start) & 3) !== 0) {
    data[i] = data[i]! ^ key[(offset + i - start) & 3]!;
    i++;
  }
  const words = (end - i) >>> 2;
  if (words > 8 && ((data.byteOffset + i) & 3) === 0) {
    const k = LITTLE_ENDIAN
      ? key[0]! | (key[1]! << 8) | (key[2]! << 16) | (key[3]! << 24)
      : (key[0]! << 24) | (key[1]! << 16) | (key[2]! << 8) | key[3]!;
    const view = new Int32Array(data.buffer, data.byteOffset + i, words);
    for (let w = 0; w < words; w++) view[w] = view[w]! ^ k;
    i += words << 2;
  }
  for (; i < end; i++) data[i] = data[i]! ^ key[(offset + i - start) & 3]!;
}
