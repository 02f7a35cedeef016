/**
 * Encoding into one reused, growable buffer (`../shared/docs/spop.md` §1–§8).
 * Frames are appended back to back, so the ACKs produced by one read leave in
 * one socket write: `begin()`, the payload, `end()`, repeat, then `bytes()`.
 *
 * @module
 */

import { DataType, Flag, LENGTH_SIZE } from "./_constants.ts";
import { toUnsigned, writeVarint } from "./_varint.ts";
import { parseIPv4, parseIPv6 } from "./_ip.ts";
import type { Value } from "./_data.ts";

const utf8 = new TextEncoder();
/** The range of an integer type, as numbers (for number values) and as bigints. */
interface IntBounds {
  min: number;
  max: number;
  bigMin: bigint;
  bigMax: bigint;
}
// Every safe integer fits the 64-bit types, so their number bounds are infinite.
const INT32: IntBounds = {
  min: -0x8000_0000,
  max: 0x7fff_ffff,
  bigMin: -0x8000_0000n,
  bigMax: 0x7fff_ffffn,
};
const UINT32: IntBounds = { min: 0, max: 0xffff_ffff, bigMin: 0n, bigMax: 0xffff_ffffn };
const INT64: IntBounds = {
  min: -Infinity,
  max: Infinity,
  bigMin: -0x8000_0000_0000_0000n,
  bigMax: 0x7fff_ffff_ffff_ffffn,
};
const UINT64: IntBounds = { min: 0, max: Infinity, bigMin: 0n, bigMax: 0xffff_ffff_ffff_ffffn };

/** A name or string to write: text, or bytes already encoded (faster). */
export type Text = string | Uint8Array;

/**
 * Writes frames into a reused buffer.
 *
 * @example An ACK that sets sess.<prefix>.ip_score = 42
 * ```ts
 * import { FrameWriter } from "./_writer.ts";
 * import { DataType, FrameType, VarScope } from "./_constants.ts";
 *
 * const w = new FrameWriter();
 * w.begin(FrameType.ACK, 1, 1).setVar(VarScope.SESS, "ip_score", DataType.UINT32, 42).end();
 * w.bytes(); // 25 bytes: 00 00 00 15 67 00 00 00 01 01 01 01 03 01 08 ... 03 2a
 * ```
 */
export class FrameWriter {
  #buf: Uint8Array;
  #view: DataView;
  #pos = 0;
  #frame = -1;

  /**
   * @param capacity Initial buffer size in bytes; it grows when needed.
   */
  constructor(capacity = 4096) {
    this.#buf = new Uint8Array(capacity);
    this.#view = new DataView(this.#buf.buffer);
  }

  /** Bytes written so far, including an unfinished frame. */
  get size(): number {
    return this.#pos;
  }

  /**
   * The finished frames, as a view into the buffer: valid until the next
   * `reset()`, `take()` or write.
   *
   * @returns The bytes to send.
   * @throws {TypeError} While a frame is still open.
   */
  bytes(): Uint8Array {
    this.#closed();
    return this.#buf.subarray(0, this.#pos);
  }

  /**
   * The whole buffer, for writing without making a view: the finished frames
   * are its first {@linkcode FrameWriter.size} bytes. Valid until the next
   * write, which may replace it with a larger one.
   *
   * @returns The buffer.
   * @throws {TypeError} While a frame is still open.
   */
  buffer(): Uint8Array {
    this.#closed();
    return this.#buf;
  }

  /**
   * Hands the finished frames over and continues in a fresh buffer, for
   * transports that keep the bytes after a write returns.
   *
   * @returns The bytes to send, no longer touched by this writer.
   * @throws {TypeError} While a frame is still open.
   */
  take(): Uint8Array {
    this.#closed();
    const out = this.#buf.subarray(0, this.#pos);
    this.#buf = new Uint8Array(this.#buf.length);
    this.#view = new DataView(this.#buf.buffer);
    this.#pos = 0;
    return out;
  }

  /** Forgets everything written, keeping the buffer. */
  reset(): void {
    this.#pos = 0;
    this.#frame = -1;
  }

  /** The buffer's size now (it grows as frames need). */
  get capacity(): number {
    return this.#buf.length;
  }

  /**
   * Forgets everything written and, when the buffer grew beyond `limit`
   * bytes (for one large frame), replaces it with one of `capacity` bytes, so
   * that one large frame does not hold memory for good.
   *
   * @param limit The largest buffer to keep.
   * @param capacity The size of the replacement.
   */
  shrink(limit: number, capacity: number): void {
    this.reset();
    if (this.#buf.length <= limit) return;
    this.#buf = new Uint8Array(capacity);
    this.#view = new DataView(this.#buf.buffer);
  }

  /**
   * Opens a frame. The LENGTH is filled in by {@linkcode FrameWriter.end}.
   *
   * @param type The frame type.
   * @param streamId The stream-id (0 for HELLO and DISCONNECT).
   * @param frameId The frame-id (0 for HELLO and DISCONNECT).
   * @param flags Flag bits; FIN by default, as on every frame an agent sends.
   * @returns This writer.
   * @throws {TypeError} While another frame is open.
   */
  begin(
    type: number,
    streamId: number | bigint = 0,
    frameId: number | bigint = 0,
    flags: number = Flag.FIN,
  ): this {
    this.#closed();
    this.#ensure(LENGTH_SIZE + 5 + 20);
    this.#frame = this.#pos;
    this.#buf[this.#pos + 4] = type;
    this.#view.setUint32(this.#pos + 5, flags >>> 0);
    this.#pos = writeVarint(this.#buf, this.#pos + 9, streamId);
    this.#pos = writeVarint(this.#buf, this.#pos, frameId);
    return this;
  }

  /**
   * Closes the open frame by writing its LENGTH.
   *
   * @param maxLength The largest LENGTH allowed (the negotiated max-frame-size).
   * @returns The frame's LENGTH.
   * @throws {RangeError} When the frame exceeds `maxLength`; the frame is then
   * dropped and the writer holds only the frames before it.
   */
  end(maxLength: number = Infinity): number {
    const start = this.#frame;
    if (start < 0) throw new TypeError("Cannot end frame: no frame is open");
    const length = this.#pos - start - LENGTH_SIZE;
    this.#frame = -1;
    if (length > maxLength) {
      this.#pos = start;
      throw new RangeError(
        `Cannot write frame: length ${length} exceeds max-frame-size ${maxLength}`,
      );
    }
    this.#view.setUint32(start, length);
    return length;
  }

  /** Drops the open frame, if any. */
  cancel(): void {
    if (this.#frame >= 0) this.#pos = this.#frame;
    this.#frame = -1;
  }

  /**
   * Writes one byte.
   *
   * @param value 0..255.
   * @returns This writer.
   */
  byte(value: number): this {
    this.#ensure(1);
    this.#buf[this.#pos++] = value;
    return this;
  }

  /**
   * Appends bytes as they are (for example actions encoded elsewhere).
   *
   * @param bytes The bytes to copy.
   * @returns This writer.
   */
  append(bytes: Uint8Array): this {
    return this.#copy(bytes, bytes.length);
  }

  /**
   * Appends everything another writer holds (its `size` bytes), without
   * making a view of its buffer.
   *
   * @param other A writer, typically holding encoded actions.
   * @returns This writer.
   */
  appendWriter(other: FrameWriter): this {
    return this.#copy(other.#buf, other.#pos);
  }

  #copy(src: Uint8Array, n: number): this {
    this.#ensure(n);
    const buf = this.#buf;
    const pos = this.#pos;
    // TypedArray.set() costs more than a loop for a few dozen bytes.
    if (n > 64) buf.set(src.subarray(0, n), pos);
    else for (let i = 0; i < n; i++) buf[pos + i] = src[i]!;
    this.#pos = pos + n;
    return this;
  }

  /**
   * Writes a varint.
   *
   * @param value An unsigned integer up to 2^64-1.
   * @returns This writer.
   * @throws {RangeError} When `value` cannot be encoded.
   */
  varint(value: number | bigint): this {
    this.#ensure(10);
    this.#pos = writeVarint(this.#buf, this.#pos, value);
    return this;
  }

  /**
   * Writes a raw STRING: varint length, then the bytes (no type byte). Used for
   * KV names, message and argument names, and variable names.
   *
   * @param text The string, or its bytes.
   * @returns This writer.
   */
  raw(text: Text): this {
    if (typeof text !== "string") {
      const n = text.length;
      this.#ensure(10 + n);
      const buf = this.#buf;
      let pos = writeVarint(buf, this.#pos, n);
      // TypedArray.set() costs more than a loop for names of a few bytes.
      if (n > 32) {
        buf.set(text, pos);
        pos += n;
      } else {
        for (let i = 0; i < n; i++) buf[pos++] = text[i]!;
      }
      this.#pos = pos;
      return this;
    }
    const n = text.length;
    this.#ensure(10 + n * 3);
    const size = utf8Length(text);
    let pos = writeVarint(this.#buf, this.#pos, size);
    if (size === n) {
      const buf = this.#buf;
      for (let i = 0; i < n; i++) buf[pos++] = text.charCodeAt(i);
    } else {
      pos += utf8.encodeInto(text, this.#buf.subarray(pos)).written;
    }
    this.#pos = pos;
    return this;
  }

  /**
   * Writes TYPED-DATA.
   *
   * @param type The SPOP type.
   * @param value A JS value of that type: boolean for BOOL; integer number or
   * bigint in the type's range; 4/16 bytes or text for IPV4/IPV6; string or
   * bytes for STRING/BINARY; anything for NULL.
   * @returns This writer.
   * @throws {TypeError} When `value` does not suit `type`.
   * @throws {RangeError} When an integer is out of the type's range.
   */
  typed(type: DataType, value: Value): this {
    this.#ensure(11);
    const buf = this.#buf;
    switch (type) {
      case DataType.NULL:
        buf[this.#pos++] = DataType.NULL;
        return this;
      case DataType.BOOL:
        if (typeof value !== "boolean") throw mismatch(type, value);
        buf[this.#pos++] = value ? 0x11 : 0x01;
        return this;
      case DataType.INT32:
        return this.#int(type, value, INT32);
      case DataType.UINT32:
        return this.#int(type, value, UINT32);
      case DataType.INT64:
        return this.#int(type, value, INT64);
      case DataType.UINT64:
        return this.#int(type, value, UINT64);
      case DataType.IPV4:
      case DataType.IPV6: {
        const size = type === DataType.IPV4 ? 4 : 16;
        this.#ensure(1 + size);
        this.#buf[this.#pos] = type;
        const at = this.#pos + 1;
        if (value instanceof Uint8Array && value.length === size) {
          this.#buf.set(value, at);
        } else if (
          typeof value !== "string" ||
          !(size === 4 ? parseIPv4(value, this.#buf, at) : parseIPv6(value, this.#buf, at))
        ) {
          throw mismatch(type, value);
        }
        this.#pos = at + size;
        return this;
      }
      case DataType.STRING:
      case DataType.BINARY:
        if (typeof value !== "string" && !(value instanceof Uint8Array)) {
          throw mismatch(type, value);
        }
        buf[this.#pos++] = type;
        return this.raw(value);
      default:
        throw new TypeError(`Cannot write typed data: unknown type ${type}`);
    }
  }

  /**
   * Writes one KV item (HELLO and DISCONNECT payloads); nothing when the
   * value is refused.
   *
   * @param name The item name.
   * @param type Its SPOP type.
   * @param value Its value (see {@linkcode FrameWriter.typed}).
   * @returns This writer.
   */
  kv(name: Text, type: DataType, value: Value): this {
    const start = this.#pos;
    try {
      return this.raw(name).typed(type, value);
    } catch (err) {
      this.#pos = start;
      throw err;
    }
  }

  /**
   * Starts a message in a NOTIFY: its name and argument count. Follow with
   * exactly `argCount` calls to {@linkcode FrameWriter.arg}.
   *
   * @param name The message name.
   * @param argCount 0..255.
   * @returns This writer.
   * @throws {RangeError} When `argCount` is out of range.
   */
  message(name: Text, argCount: number): this {
    if (!Number.isInteger(argCount) || argCount < 0 || argCount > 255) {
      throw new RangeError(`Cannot write message: ${argCount} arguments is outside 0..255`);
    }
    return this.raw(name).byte(argCount);
  }

  /**
   * Writes one message argument.
   *
   * @param name The argument name; `""` for an unnamed argument.
   * @param type Its SPOP type.
   * @param value Its value (see {@linkcode FrameWriter.typed}).
   * @returns This writer.
   */
  arg(name: Text, type: DataType, value: Value): this {
    return this.kv(name, type, value);
  }

  /**
   * Writes a set-var action: `01 03 <scope> <raw name> <typed value>`.
   * A NULL value makes HAProxy unset the variable. When the value is refused,
   * nothing of the action is written.
   *
   * @param scope The variable's scope (`VarScope`).
   * @param name The name without scope or prefix, e.g. `"ip_score"`.
   * @param type The value's SPOP type.
   * @param value The value (see {@linkcode FrameWriter.typed}).
   * @returns This writer.
   */
  setVar(scope: number, name: Text, type: DataType, value: Value): this {
    const start = this.#pos;
    this.#ensure(3);
    this.#buf[start] = 1;
    this.#buf[start + 1] = 3;
    this.#buf[start + 2] = scope;
    this.#pos = start + 3;
    try {
      return this.raw(name).typed(type, value);
    } catch (err) {
      this.#pos = start; // A bad value leaves no half-written action behind.
      throw err;
    }
  }

  /**
   * Writes an unset-var action: `02 02 <scope> <raw name>`.
   *
   * @param scope The variable's scope (`VarScope`).
   * @param name The name without scope or prefix.
   * @returns This writer.
   */
  unsetVar(scope: number, name: Text): this {
    this.#ensure(3);
    this.#buf[this.#pos] = 2;
    this.#buf[this.#pos + 1] = 2;
    this.#buf[this.#pos + 2] = scope;
    this.#pos += 3;
    return this.raw(name);
  }

  /**
   * Writes an integer type. Numbers are checked against number bounds and
   * bigints against bigint bounds: comparing across the two is slow (and on
   * JavaScriptCore, so is converting a bigint bound per call).
   */
  #int(type: DataType, value: Value, bounds: IntBounds): this {
    let unsigned: number | bigint;
    if (typeof value === "number") {
      if (!Number.isSafeInteger(value)) {
        throw new RangeError(`Cannot write integer: ${value} is not a safe integer`);
      }
      if (value < bounds.min || value > bounds.max) throw outOfRange(value, bounds);
      unsigned = value >= 0 ? value : toUnsigned(value);
    } else if (typeof value === "bigint") {
      if (value < bounds.bigMin || value > bounds.bigMax) throw outOfRange(value, bounds);
      unsigned = value >= 0n ? value : toUnsigned(value);
    } else {
      throw mismatch(type, value);
    }
    this.#buf[this.#pos] = type;
    this.#pos = writeVarint(this.#buf, this.#pos + 1, unsigned);
    return this;
  }

  #ensure(extra: number): void {
    const need = this.#pos + extra;
    if (need <= this.#buf.length) return;
    const grown = new Uint8Array(Math.max(need, this.#buf.length * 2));
    grown.set(this.#buf.subarray(0, this.#pos));
    this.#buf = grown;
    this.#view = new DataView(grown.buffer);
  }

  #closed(): void {
    if (this.#frame >= 0) throw new TypeError("Cannot continue: a frame is still open");
  }
}

/** Bytes of `text` in UTF-8 (a lone surrogate becomes U+FFFD, 3 bytes). */
function utf8Length(text: string): number {
  let size = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) size += 1;
    else if (c < 0x800) size += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        size += 4;
        i++;
      } else size += 3;
    } else size += 3;
  }
  return size;
}

function outOfRange(value: number | bigint, bounds: IntBounds): RangeError {
  return new RangeError(
    `Cannot write integer: ${value} is outside ${bounds.bigMin}..${bounds.bigMax}`,
  );
}

function mismatch(type: DataType, value: Value): TypeError {
  const shown = value instanceof Uint8Array ? `${value.length} bytes` : JSON.stringify(
    typeof value === "bigint" ? `${value}n` : value,
  );
  return new TypeError(`Cannot write typed data of type ${type}: unsuitable value ${shown}`);
}
