/**
 * HAProxy's variable-length integer ("peers" varint), `../shared/docs/spop.md`
 * §2.1. It is not LEB128: the first byte carries 4 value bits when it is 240
 * or more, and decoding is a plain sum of `byte << shift`. It spans the whole
 * unsigned 64-bit range in at most 10 bytes.
 *
 * Values up to `Number.MAX_SAFE_INTEGER` are JS numbers; larger ones are
 * bigints, so 64-bit ids survive a round trip exactly without costing an
 * allocation in the common case.
 *
 * @module
 */

import { SpopError, Status } from "./errors.ts";

/** The longest varint: a full 64-bit value takes 10 bytes. */
export const MAX_VARINT_BYTES = 10;

/** Returned by {@linkcode readVarint} when the bytes end inside a varint. */
export const INCOMPLETE = -1;

/** The largest unsigned 64-bit value. */
export const U64_MAX = 0xffff_ffff_ffff_ffffn;

/** Where {@linkcode readVarint} leaves the value it decoded. */
export interface VarintOut {
  /** A number when it fits `Number.MAX_SAFE_INTEGER`, a bigint otherwise. */
  value: number | bigint;
}

/**
 * Reads a varint that starts at `off` and must end before `end`.
 *
 * @param buf The bytes.
 * @param off Offset of the first byte.
 * @param end Offset just past the last readable byte.
 * @param out Receives the value (unsigned).
 * @returns The offset after the varint, or {@linkcode INCOMPLETE} when `end`
 * comes first.
 * @throws {SpopError} INVALID_FRAME for more than 10 bytes or a value above
 * 2^64-1.
 *
 * @example Decode 300
 * ```ts
 * import { readVarint } from "./_varint.ts";
 *
 * const out = { value: 0 as number | bigint };
 * readVarint(new Uint8Array([0xfc, 0x03]), 0, 2, out); // 2, out.value === 300
 * ```
 */
export function readVarint(buf: Uint8Array, off: number, end: number, out: VarintOut): number {
  if (off >= end) return INCOMPLETE;
  const first = buf[off]!;
  if (first < 240) {
    out.value = first;
    return off + 1;
  }
  // Sum of exact terms (byte * 2^shift); exact while the sum stays below 2^53.
  let value = first;
  let scale = 16;
  let pos = off + 1;
  for (;;) {
    if (pos - off >= MAX_VARINT_BYTES) {
      throw new SpopError(
        Status.INVALID_FRAME,
        `Cannot read varint at offset ${off}: longer than ${MAX_VARINT_BYTES} bytes`,
      );
    }
    if (pos >= end) return INCOMPLETE;
    const b = buf[pos++]!;
    value += b * scale;
    if (b < 128) break;
    scale *= 128;
  }
  if (value <= Number.MAX_SAFE_INTEGER) {
    out.value = value;
    return pos;
  }
  out.value = readBig(buf, off, pos);
  return pos;
}

/** Re-decodes a varint known to span [off, end) with bigint arithmetic. */
function readBig(buf: Uint8Array, off: number, end: number): bigint {
  let value = BigInt(buf[off]!);
  let shift = 4n;
  for (let i = off + 1; i < end; i++) {
    value += BigInt(buf[i]!) << shift;
    shift += 7n;
  }
  if (value > U64_MAX) {
    throw new SpopError(
      Status.INVALID_FRAME,
      `Cannot read varint at offset ${off}: value exceeds 64 bits`,
    );
  }
  // The float sum only exceeds 2^53-1 when the exact sum does, so this value
  // is never a safe integer.
  return value;
}

/**
 * Writes `value` as a varint at `off`. The caller guarantees 10 free bytes.
 *
 * @param buf The destination.
 * @param off Where to write.
 * @param value An unsigned integer: a safe-integer number or a bigint up to
 * 2^64-1.
 * @returns The offset after the varint.
 * @throws {RangeError} When `value` is negative, not an integer, or too large.
 *
 * @example Encode 16380
 * ```ts
 * import { writeVarint } from "./_varint.ts";
 *
 * const buf = new Uint8Array(10);
 * writeVarint(buf, 0, 16380); // 3; buf starts fc f0 06
 * ```
 */
export function writeVarint(buf: Uint8Array, off: number, value: number | bigint): number {
  if (typeof value === "bigint") return writeBig(buf, off, value);
  if ((value >>> 0) === value) {
    // 0..2^32-1, the ids and lengths of every frame: 32-bit integer arithmetic.
    if (value < 240) {
      buf[off] = value;
      return off + 1;
    }
    buf[off++] = 0xf0 | (value & 0x0f);
    let n = (value - 240) >>> 4;
    while (n >= 128) {
      buf[off++] = 0x80 | (n & 0x7f);
      n = (n - 128) >>> 7;
    }
    buf[off] = n;
    return off + 1;
  }
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`Cannot encode varint: ${value} is not an unsigned safe integer`);
  }
  if (value < 240) {
    buf[off] = value;
    return off + 1;
  }
  buf[off++] = 0xf0 | (value % 16);
  let v = Math.floor((value - 240) / 16);
  while (v >= 128) {
    buf[off++] = 0x80 | (v % 128);
    v = Math.floor((v - 128) / 128);
  }
  buf[off] = v;
  return off + 1;
}

function writeBig(buf: Uint8Array, off: number, value: bigint): number {
  if (value < 0n || value > U64_MAX) {
    throw new RangeError(`Cannot encode varint: ${value} is outside 0..2^64-1`);
  }
  if (value <= BigInt(Number.MAX_SAFE_INTEGER)) return writeVarint(buf, off, Number(value));
  buf[off++] = 0xf0 | Number(value & 0x0fn);
  let v = (value - 240n) >> 4n;
  while (v >= 128n) {
    buf[off++] = 0x80 | Number(v & 0x7fn);
    v = (v - 128n) >> 7n;
  }
  buf[off] = Number(v);
  return off + 1;
}

/**
 * Reinterprets an unsigned 64-bit value as two's complement signed, the way
 * SPOP carries INT32 and INT64 data.
 *
 * @param value An unsigned value as read by {@linkcode readVarint}.
 * @returns The signed value: a number when it is a safe integer.
 */
export function toSigned(value: number | bigint): number | bigint {
  if (typeof value === "number") return value;
  const signed = BigInt.asIntN(64, value);
  return signed >= -9007199254740991n && signed <= 9007199254740991n ? Number(signed) : signed;
}

/**
 * Converts a signed integer to the unsigned 64-bit value that encodes it.
 *
 * @param value A safe-integer number or bigint in -2^63..2^63-1.
 * @returns The unsigned value to pass to {@linkcode writeVarint}.
 * @throws {RangeError} When `value` is not an integer in range.
 */
export function toUnsigned(value: number | bigint): number | bigint {
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) {
      throw new RangeError(`Cannot encode integer: ${value} is not a safe integer`);
    }
    return value >= 0 ? value : BigInt.asUintN(64, BigInt(value));
  }
  if (value < -0x8000_0000_0000_0000n || value > 0x7fff_ffff_ffff_ffffn) {
    throw new RangeError(`Cannot encode integer: ${value} is outside the signed 64-bit range`);
  }
  return value >= 0n ? value : BigInt.asUintN(64, value);
}
