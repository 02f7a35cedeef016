/**
 * Decoding of TYPED-DATA and raw strings (`../shared/docs/spop.md` §1.1,
 * §2.2) without copying: strings, binaries and addresses stay as offsets into
 * the frame's bytes until someone asks for a JS value.
 *
 * @module
 */

import { SpopError, Status } from "./errors.ts";
import { DataType } from "./_constants.ts";
import { INCOMPLETE, readVarint, toSigned, type VarintOut } from "./_varint.ts";
import { formatIPv4, formatIPv6 } from "./_ip.ts";

const EMPTY = new Uint8Array(0);
const utf8 = new TextDecoder();
const utf8Encoder = new TextEncoder();

/** Scratch for varints and spans; the codec is synchronous, so one is enough. */
const num: VarintOut = { value: 0 };

/** The [start, end) of the last raw string read by {@linkcode readRaw}. */
export const span = { start: 0, end: 0 };

/** A JS value of any SPOP type: what typed data decodes to or encodes from. */
export type Value = null | boolean | number | bigint | string | Uint8Array;

/**
 * One decoded TYPED-DATA item. It is reused from item to item: the fields
 * describe the item read last, and `buf` is the frame's own bytes, valid only
 * while the frame is.
 */
export class TypedData {
  /** The bytes holding the value (for IPV4, IPV6, STRING and BINARY). */
  buf: Uint8Array = EMPTY;
  /** The type, without flag bits. */
  type: DataType = DataType.NULL;
  /** The value of a BOOL. */
  bool = false;
  /** The value of an integer type: signed for INT32/INT64, unsigned otherwise. */
  int: number | bigint = 0;
  /** Where the bytes of an IPV4, IPV6, STRING or BINARY value start in `buf`. */
  start = 0;
  /** Where they end (exclusive). */
  end = 0;

  /**
   * The value's bytes as a view into the frame (no copy).
   *
   * @returns An empty array for types without bytes.
   */
  bytes(): Uint8Array {
    return this.buf.subarray(this.start, this.end);
  }

  /**
   * The value as text: STRING and BINARY as UTF-8, addresses in their usual
   * notation, numbers and booleans as JS would print them, NULL as "".
   *
   * @returns A new string.
   */
  text(): string {
    switch (this.type) {
      case DataType.STRING:
      case DataType.BINARY:
        return utf8.decode(this.bytes());
      case DataType.IPV4:
        return formatIPv4(this.buf, this.start);
      case DataType.IPV6:
        return formatIPv6(this.buf, this.start);
      case DataType.BOOL:
        return String(this.bool);
      case DataType.NULL:
        return "";
      default:
        return String(this.int);
    }
  }

  /**
   * The value as a plain JS value: null, a boolean, a number or bigint, a
   * string (STRING, and addresses in text form), or a copy of BINARY bytes.
   *
   * @returns A value that stays valid after the frame is gone.
   */
  value(): Value {
    switch (this.type) {
      case DataType.NULL:
        return null;
      case DataType.BOOL:
        return this.bool;
      case DataType.BINARY:
        return this.bytes().slice();
      case DataType.STRING:
      case DataType.IPV4:
      case DataType.IPV6:
        return this.text();
      default:
        return this.int;
    }
  }
}

/**
 * Reads one TYPED-DATA item at `off`, which must end before `end` (the end of
 * its frame).
 *
 * @param buf The frame's bytes.
 * @param off Offset of the type byte.
 * @param end End of the frame.
 * @param out Receives the item.
 * @returns The offset after the item.
 * @throws {SpopError} INVALID_FRAME for a reserved type (10–15) or an item
 * that runs past `end`.
 */
export function readTypedData(buf: Uint8Array, off: number, end: number, out: TypedData): number {
  if (off >= end) throw truncated("typed data", off);
  const typeByte = buf[off]!;
  const type = typeByte & 0x0f;
  let pos = off + 1;
  out.buf = buf;
  out.start = pos;
  out.end = pos;
  switch (type) {
    case DataType.NULL:
      out.type = DataType.NULL;
      return pos;
    case DataType.BOOL:
      out.type = DataType.BOOL;
      out.bool = (typeByte & 0x10) !== 0;
      return pos;
    case DataType.INT32:
    case DataType.INT64:
    case DataType.UINT32:
    case DataType.UINT64:
      pos = readVarint(buf, pos, end, num);
      if (pos === INCOMPLETE) throw truncated("integer", off);
      out.type = type;
      out.int = type === DataType.INT32 || type === DataType.INT64
        ? toSigned(num.value)
        : num.value;
      return pos;
    case DataType.IPV4:
    case DataType.IPV6: {
      const size = type === DataType.IPV4 ? 4 : 16;
      if (end - pos < size) throw truncated("address", off);
      out.type = type;
      out.end = pos + size;
      return pos + size;
    }
    case DataType.STRING:
    case DataType.BINARY:
      pos = readRaw(buf, pos, end);
      out.type = type;
      out.start = span.start;
      out.end = span.end;
      return pos;
    default:
      throw new SpopError(
        Status.INVALID_FRAME,
        `Cannot read typed data at offset ${off}: reserved type ${type}`,
      );
  }
}

/**
 * Reads a raw STRING (varint length, then bytes) and leaves its bytes' range
 * in {@linkcode span}.
 *
 * @param buf The frame's bytes.
 * @param off Offset of the length.
 * @param end End of the frame.
 * @returns The offset after the string.
 * @throws {SpopError} INVALID_FRAME when the string runs past `end`.
 */
export function readRaw(buf: Uint8Array, off: number, end: number): number {
  const pos = readVarint(buf, off, end, num);
  if (pos === INCOMPLETE) throw truncated("string length", off);
  const len = num.value;
  if (typeof len !== "number" || len > end - pos) {
    throw new SpopError(
      Status.INVALID_FRAME,
      `Cannot read string at offset ${off}: length ${len} exceeds the ${end - pos} bytes left`,
    );
  }
  span.start = pos;
  span.end = pos + len;
  return pos + len;
}

/**
 * Compares bytes `[start, end)` of `buf` with `name`, without allocating.
 *
 * @param buf The frame's bytes.
 * @param start Start of the name in `buf`.
 * @param end End of the name in `buf`.
 * @param name The expected name, as made by {@linkcode encodeName}.
 * @returns Whether they are equal.
 */
export function bytesEqual(buf: Uint8Array, start: number, end: number, name: Uint8Array): boolean {
  if (end - start !== name.length) return false;
  for (let i = 0; i < name.length; i++) {
    if (buf[start + i] !== name[i]) return false;
  }
  return true;
}

/**
 * Encodes a name once, for allocation-free matching and writing.
 *
 * @param name For example `"check-client-ip"`.
 * @returns Its UTF-8 bytes.
 *
 * @example Usage
 * ```ts
 * import { encodeName } from "./_data.ts";
 *
 * const IP_SCORE = encodeName("ip_score"); // 8 bytes
 * ```
 */
export function encodeName(name: string): Uint8Array {
  return utf8Encoder.encode(name);
}

/**
 * Decodes bytes `[start, end)` of `buf` as UTF-8.
 *
 * @param buf The bytes.
 * @param start Start offset.
 * @param end End offset (exclusive).
 * @returns A new string.
 */
export function decodeText(buf: Uint8Array, start: number, end: number): string {
  return utf8.decode(buf.subarray(start, end));
}

function truncated(what: string, off: number): SpopError {
  return new SpopError(Status.INVALID_FRAME, `Cannot read ${what} at offset ${off}: frame ends`);
}
