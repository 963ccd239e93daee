import { isUtf8 } from "node:buffer";

/** Below this many bytes a JS loop beats the native call; measured with bench/protocol-throughput. */
const NATIVE_THRESHOLD = 64;

/**
 * Streaming UTF-8 validator (RFC 3629, as RFC 6455 §5.6 and §8.1 require).
 *
 * Feed the bytes of one message in any number of pieces; `write` returns false as soon as the bytes
 * seen so far cannot be the prefix of valid UTF-8 (overlongs, surrogates and code points above
 * U+10FFFF are rejected at their first invalid byte), so a connection can fail fast. `end` reports
 * whether the message stopped on a character boundary.
 */
export class Utf8Validator {
  /** Continuation bytes still expected for the current character. */
  private need = 0;
  /** Allowed range of the next continuation byte (narrower after E0, ED, F0, F4). */
  private lower = 0x80;
  private upper = 0xbf;

  write(bytes: Uint8Array): boolean {
    let i = 0;
    const len = bytes.length;
    // Finish a character split across pieces first.
    while (this.need > 0 && i < len) {
      if (!this.step(bytes[i]!)) return false;
      i++;
    }
    if (i === len) return true;
    if (len - i < NATIVE_THRESHOLD) {
      for (; i < len; i++) if (!this.step(bytes[i]!)) return false;
      return true;
    }
    // Validate everything up to the last (possibly incomplete) character natively, then the tail here.
    const tail = incompleteTailStart(bytes, i);
    if (!isUtf8(bytes.subarray(i, tail))) return false;
    for (let j = tail; j < len; j++) if (!this.step(bytes[j]!)) return false;
    return true;
  }

  /** True when the bytes written so far form complete characters. Resets for the next message. */
  end(): boolean {
    const complete = this.need === 0;
    this.reset();
    return complete;
  }

  reset(): void {
    this.need = 0;
    this.lower = 0x80;
    this.upper = 0xbf;
  }

  private step(b: number): boolean {
    if (this.need > 0) {
      if (b < this.lower || b > this.upper) return false;
      this.need--;
      this.lower = 0x80;
      this.upper = 0xbf;
      return true;
    }
    if (b < 0x80) return true;
    if (b < 0xc2) return false; // stray continuation byte or overlong 2-byte lead
    if (b < 0xe0) {
      this.need = 1;
    } else if (b < 0xf0) {
      this.need = 2;
      if (b === 0xe0)
        this.lower = 0xa0; // overlong
      else if (b === 0xed) this.upper = 0x9f; // UTF-16 surrogates
    } else if (b < 0xf5) {
      this.need = 3;
      if (b === 0xf0)
        this.lower = 0x90; // overlong
      else if (b === 0xf4) this.upper = 0x8f; // above U+10FFFF
    } else {
      return false;
    }
    return true;
  }
}

/** Index where a trailing, not yet complete multi-byte character starts (or `bytes.length`). */
function incompleteTailStart(bytes: Uint8Array, from: number): number {
  const len = bytes.length;
  for (let back = 1; back <= 3 && len - back >= from; back++) {
    const b = bytes[len - back]!;
    if (b < 0x80) return len; // ASCII: everything before it is whole
    if (b >= 0xc0) {
      const size = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
      return size > back ? len - back : len;
    }
  }
  return len;
}

/** Whole-buffer check for payloads known to be complete (close reasons, single-frame messages). */
export function isValidUtf8(bytes: Uint8Array): boolean {
  if (bytes.length >= NATIVE_THRESHOLD) return isUtf8(bytes);
  const v = new Utf8Validator();
  return v.write(bytes) && v.end();
}
