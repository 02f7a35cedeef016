/**
 * Addresses as numbers, read straight from a list file's bytes: an IPv4
 * address is one unsigned 32-bit number, an IPv6 address four of them (most
 * significant first). No strings are made while parsing, so that a list of a
 * million lines loads without a million small allocations.
 *
 * @module
 */

import { formatIPv4, formatIPv6 } from "../spop.ts";

const DOT = 0x2e;
const COLON = 0x3a;
const ZERO = 0x30;
const NINE = 0x39;

/** The value of a hex digit, or -1. */
function hexDigit(c: number): number {
  if (c >= ZERO && c <= NINE) return c - ZERO;
  const lower = c | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

/**
 * Reads a dotted-quad IPv4 address (`"192.0.2.1"`; each part 0..255, at most
 * three digits) from `bytes[start, end)`.
 *
 * @param bytes The text's bytes (ASCII).
 * @param start Where the address starts.
 * @param end Where it ends (exclusive).
 * @returns The address as 0..2^32-1, or -1 when the bytes are not one.
 */
export function readIPv4(bytes: Uint8Array, start: number, end: number): number {
  let value = 0;
  let parts = 0;
  let i = start;
  while (parts < 4) {
    let part = 0;
    let digits = 0;
    while (i < end && digits < 4) {
      const c = bytes[i]!;
      if (c < ZERO || c > NINE) break;
      part = part * 10 + c - ZERO;
      digits++;
      i++;
    }
    if (digits === 0 || digits > 3 || part > 255) return -1;
    value = value * 256 + part;
    parts++;
    if (parts < 4) {
      if (i >= end || bytes[i] !== DOT) return -1;
      i++;
    }
  }
  return i === end ? value : -1;
}

/**
 * Reads an IPv6 address (RFC 4291 text: hex groups, one `::`, an optional
 * dotted IPv4 tail) from `bytes[start, end)` into four 32-bit words.
 *
 * @param bytes The text's bytes (ASCII).
 * @param start Where the address starts.
 * @param end Where it ends (exclusive).
 * @param out Where the words go.
 * @param at Index of the first word in `out`.
 * @returns `false` (with `out` partly written) when the bytes are not an IPv6 address.
 */
export function readIPv6(
  bytes: Uint8Array,
  start: number,
  end: number,
  out: Uint32Array,
  at: number,
): boolean {
  // Up to 8 groups; `gap` is where "::" stands (-1 if none).
  const groups = GROUPS;
  let count = 0;
  let gap = -1;
  let i = start;
  if (end - start >= 2 && bytes[i] === COLON && bytes[i + 1] === COLON) {
    gap = 0;
    i += 2;
  } else if (i < end && bytes[i] === COLON) {
    return false;
  }
  while (i < end) {
    if (count === 8) return false;
    // A dotted IPv4 tail: the rest of the text, taking two groups.
    let j = i;
    let value = 0;
    let digits = 0;
    while (j < end && digits < 5) {
      const d = hexDigit(bytes[j]!);
      if (d < 0) break;
      value = value * 16 + d;
      digits++;
      j++;
    }
    if (j < end && bytes[j] === DOT) {
      if (count > 6) return false;
      const v4 = readIPv4(bytes, i, end);
      if (v4 < 0) return false;
      groups[count++] = v4 >>> 16;
      groups[count++] = v4 & 0xffff;
      i = end;
      break;
    }
    if (digits === 0 || digits > 4) return false;
    groups[count++] = value;
    i = j;
    if (i === end) break;
    if (bytes[i] !== COLON) return false;
    i++;
    if (i < end && bytes[i] === COLON) {
      if (gap >= 0) return false;
      gap = count;
      i++;
    } else if (i === end) {
      return false; // A trailing single ":".
    }
  }
  if (gap < 0 ? count !== 8 : count > 7) return false;
  const zeros = 8 - count;
  let word = 0;
  let half = 0;
  let k = 0;
  for (let g = 0; g < 8; g++) {
    let value: number;
    if (gap >= 0 && g >= gap && g < gap + zeros) value = 0;
    else value = groups[k++]!;
    if (half === 0) {
      word = value;
      half = 1;
    } else {
      out[at + (g >> 1)] = ((word << 16) | value) >>> 0;
      half = 0;
    }
  }
  return true;
}

const GROUPS = new Array<number>(8).fill(0);

/** Compares the 4-word addresses at `a[i]` and `b[j]`: negative, 0 or positive. */
export function compareWords(a: Uint32Array, i: number, b: Uint32Array, j: number): number {
  for (let k = 0; k < 4; k++) {
    const d = a[i + k]! - b[j + k]!;
    if (d !== 0) return d;
  }
  return 0;
}

/** Whether the words at `at` are an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`). */
export function isMapped(words: Uint32Array, at: number): boolean {
  return words[at] === 0 && words[at + 1] === 0 && words[at + 2] === 0xffff;
}

/**
 * The text of an IPv4 address held as a number.
 *
 * @param value 0..2^32-1.
 * @returns E.g. `"192.0.2.1"`.
 */
export function ipv4Text(value: number): string {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value);
  return formatIPv4(bytes, 0);
}

/**
 * The RFC 5952 text of an IPv6 address held as four words.
 *
 * @param words The words.
 * @param at Index of the first.
 * @returns E.g. `"2001:db8::1"`.
 */
export function ipv6Text(words: Uint32Array, at: number): string {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  for (let k = 0; k < 4; k++) view.setUint32(k * 4, words[at + k]!);
  return formatIPv6(bytes, 0);
}

/** An IPv6 address's four words as one 128-bit number. */
export function wordsToBig(words: Uint32Array, at: number): bigint {
  return (BigInt(words[at]!) << 96n) | (BigInt(words[at + 1]!) << 64n) |
    (BigInt(words[at + 2]!) << 32n) | BigInt(words[at + 3]!);
}

/** Writes a 128-bit number as four words. */
export function bigToWords(value: bigint, out: Uint32Array, at: number): void {
  out[at] = Number((value >> 96n) & 0xffff_ffffn);
  out[at + 1] = Number((value >> 64n) & 0xffff_ffffn);
  out[at + 2] = Number((value >> 32n) & 0xffff_ffffn);
  out[at + 3] = Number(value & 0xffff_ffffn);
}

/**
 * The text of a block of addresses: CIDR notation when it is one prefix,
 * `first-last` otherwise.
 *
 * @param first The first address.
 * @param last The last address (inclusive).
 * @param bits 32 for IPv4, 128 for IPv6.
 * @returns E.g. `"192.0.2.0/24"` or `"192.0.2.5-192.0.2.9"`.
 */
export function blockText(first: bigint, last: bigint, bits: 32 | 128): string {
  const text = (value: bigint) => {
    if (bits === 32) return ipv4Text(Number(value));
    const words = new Uint32Array(4);
    bigToWords(value, words, 0);
    return ipv6Text(words, 0);
  };
  const size = last - first + 1n;
  // A prefix: the size is a power of two and the first address is aligned to it.
  if ((size & (size - 1n)) === 0n && (first & (size - 1n)) === 0n) {
    let hostBits = 0;
    while ((1n << BigInt(hostBits)) < size) hostBits++;
    return `${text(first)}/${bits - hostBits}`;
  }
  return `${text(first)}-${text(last)}`;
}
