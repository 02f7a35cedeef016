/**
 * Reading a list file. The format is told from the file's first entry line
 * (blank lines and lines starting with `#`, `;` or `//` are comments):
 *
 * - `json`: the line starts with `{`. One JSON object a line, as in Spamhaus
 *   DROP's NDJSON: `{"cidr": "1.10.16.0/20", "sblid": "...", "rir": "..."}`;
 *   a line whose `type` is `"metadata"` is skipped.
 * - `ranges`: two addresses separated by a comma, optionally quoted, then
 *   optional fields: `start,end[,score]` (DB-IP and IP2Location style). An
 *   address is dotted, IPv6 text, or a decimal number (above 2^32-1 it is an
 *   IPv6 address, as in IP2Location's IPv6 files). A third field that is an
 *   integer is the entry's score (0..100); any other field is ignored (a
 *   country code, a name).
 * - `scored`: an address or CIDR, white space, then an integer 0..100 that is
 *   the entry's own score, then nothing but a comment.
 * - `plain`: an address or CIDR, and anything after it ignored (FireHOL
 *   `.netset`/`.ipset`, Spamhaus DROP text `1.10.16.0/20 ; SBL256894`,
 *   Emerging Threats, Tor exit lists, AbuseIPDB plaintext).
 *
 * A CIDR's host bits are ignored (`10.1.2.3/8` is `10.0.0.0/8`). IPv6
 * entries inside `::ffff:0:0/96` (IPv4-mapped) are stored as the IPv4
 * addresses they map. Every other line of the file must be of the same
 * format; one that is not is an error naming the file and the line.
 *
 * @module
 */

import { compareWords, isMapped, readIPv4, readIPv6 } from "./_addr.ts";
import { EntriesBuilder, NO_SCORE } from "./entries.ts";

/** The formats a list file can have. */
export type Format = "plain" | "scored" | "ranges" | "json";

/** A list file that cannot be read; the message names the file and the line. */
export class ListError extends Error {
  /**
   * Builds the error.
   *
   * @param file The file as given.
   * @param line The line (1 first), or 0 for the whole file.
   * @param reason What is wrong.
   */
  constructor(readonly file: string, readonly line: number, readonly reason: string) {
    super(line > 0 ? `${file}:${line}: ${reason}` : `${file}: ${reason}`);
    this.name = "ListError";
  }
}

const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const TAB = 0x09;
const HASH = 0x23;
const SEMI = 0x3b;
const SLASH = 0x2f;
const COMMA = 0x2c;
const QUOTE = 0x22;
const BRACE = 0x7b;

const isSpace = (c: number) => c === SPACE || c === TAB || c === CR;

/** Scratch words for IPv6 addresses: first, last, and a spare. */
const W = new Uint32Array(12);
const MAPPED_FIRST = new Uint32Array([0, 0, 0xffff, 0]);
const MAPPED_LAST = new Uint32Array([0, 0, 0xffff, 0xffff_ffff]);

/** What parsing a file gives. */
export interface ParsedList {
  /** The format told from the first entry line (`undefined` for a file with none). */
  format: Format | undefined;
  /** The entries. */
  entries: EntriesBuilder;
}

/**
 * Parses a list file's bytes.
 *
 * @param bytes The file's content.
 * @param file The file's name, for errors.
 * @returns The format and the entries.
 * @throws {ListError} At the first line that cannot be read.
 */
export function parseList(bytes: Uint8Array, file: string): ParsedList {
  let lines = 1;
  for (let at = bytes.indexOf(LF); at >= 0; at = bytes.indexOf(LF, at + 1)) lines++;
  const entries = new EntriesBuilder(lines);
  const parser = new LineParser(bytes, file, entries);
  let start = bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf
    ? 3
    : 0;
  let line = 0;
  let format: Format | undefined;
  while (start < bytes.length) {
    let end = bytes.indexOf(LF, start);
    if (end < 0) end = bytes.length;
    line++;
    let s = start;
    let e = end;
    while (s < e && isSpace(bytes[s]!)) s++;
    while (e > s && isSpace(bytes[e - 1]!)) e--;
    start = end + 1;
    if (s === e) continue;
    const c = bytes[s]!;
    if (c === HASH || c === SEMI || (c === SLASH && bytes[s + 1] === SLASH)) continue;
    format ??= detect(bytes, s, e);
    parser.line = line;
    switch (format) {
      case "plain":
        parser.plain(s, e);
        break;
      case "scored":
        parser.scored(s, e);
        break;
      case "ranges":
        parser.ranges(s, e);
        break;
      case "json":
        parser.json(s, e);
        break;
    }
  }
  return { format, entries };
}

/** The end of the token at `s`: white space, a comment or a comma ends it. */
function tokenEnd(bytes: Uint8Array, s: number, e: number): number {
  let i = s;
  while (i < e) {
    const c = bytes[i]!;
    if (isSpace(c) || c === HASH || c === SEMI || c === COMMA) break;
    i++;
  }
  return i;
}

function skipSpace(bytes: Uint8Array, s: number, e: number): number {
  while (s < e && isSpace(bytes[s]!)) s++;
  return s;
}

/** Reads an integer 0..100 at `[s, t)`, or -1. */
function readScore(bytes: Uint8Array, s: number, t: number): number {
  if (t - s < 1 || t - s > 3) return -1;
  let value = 0;
  for (let i = s; i < t; i++) {
    const c = bytes[i]!;
    if (c < 0x30 || c > 0x39) return -1;
    value = value * 10 + c - 0x30;
  }
  return value <= 100 ? value : -1;
}

function isDigits(bytes: Uint8Array, s: number, t: number): boolean {
  if (s === t) return false;
  for (let i = s; i < t; i++) if (bytes[i]! < 0x30 || bytes[i]! > 0x39) return false;
  return true;
}

/** The format of a file whose first entry line is `[s, e)`. */
function detect(bytes: Uint8Array, s: number, e: number): Format {
  if (bytes[s] === BRACE) return "json";
  if (bytes[s] === QUOTE) return "ranges";
  const t = tokenEnd(bytes, s, e);
  if (bytes[skipSpace(bytes, t, e)] === COMMA) return "ranges";
  const u = skipSpace(bytes, t, e);
  if (u > t && u < e) {
    const v = tokenEnd(bytes, u, e);
    const rest = skipSpace(bytes, v, e);
    if (isDigits(bytes, u, v) && (rest === e || bytes[rest] === HASH || bytes[rest] === SEMI)) {
      return "scored";
    }
  }
  return "plain";
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** Reads the lines of one file into its entries. */
class LineParser {
  line = 0;

  constructor(
    readonly bytes: Uint8Array,
    readonly file: string,
    readonly entries: EntriesBuilder,
  ) {}

  fail(reason: string): never {
    throw new ListError(this.file, this.line, reason);
  }

  quoted(s: number, t: number): string {
    const text = decoder.decode(this.bytes.subarray(s, Math.min(t, s + 60)));
    return JSON.stringify(t - s > 60 ? `${text}...` : text);
  }

  plain(s: number, e: number): void {
    this.cidr(s, tokenEnd(this.bytes, s, e), NO_SCORE);
  }

  scored(s: number, e: number): void {
    const bytes = this.bytes;
    const t = tokenEnd(bytes, s, e);
    const u = skipSpace(bytes, t, e);
    const v = tokenEnd(bytes, u, e);
    const rest = skipSpace(bytes, v, e);
    if (u === v || (rest < e && bytes[rest] !== HASH && bytes[rest] !== SEMI)) {
      this.fail(`expected "ADDRESS SCORE" (the format of this file's first entry)`);
    }
    const score = readScore(bytes, u, v);
    if (score < 0) this.fail(`score ${this.quoted(u, v)} is not an integer from 0 to 100`);
    this.cidr(s, t, score);
  }

  ranges(s: number, e: number): void {
    const bytes = this.bytes;
    const fields: number[] = [];
    let i = s;
    // Up to three fields: [start, end) pairs, unquoted, trimmed.
    while (i <= e && fields.length < 6) {
      i = skipSpace(bytes, i, e);
      let a = i;
      let b: number;
      if (bytes[i] === QUOTE) {
        a = i + 1;
        b = bytes.indexOf(QUOTE, a);
        if (b < 0 || b > e) this.fail("a quoted field has no closing quote");
        i = skipSpace(bytes, b + 1, e);
      } else {
        b = a;
        while (b < e && bytes[b] !== COMMA) b++;
        i = b;
        while (b > a && isSpace(bytes[b - 1]!)) b--;
      }
      fields.push(a, b);
      if (i < e && bytes[i] !== COMMA) this.fail("expected a comma after a quoted field");
      i++;
    }
    if (fields.length < 4) this.fail(`expected "FIRST,LAST[,SCORE]" (the format of this file)`);
    let score = NO_SCORE;
    if (fields.length === 6 && isDigits(bytes, fields[4]!, fields[5]!)) {
      score = readScore(bytes, fields[4]!, fields[5]!);
      if (score < 0) {
        this.fail(`score ${this.quoted(fields[4]!, fields[5]!)} is not an integer from 0 to 100`);
      }
    }
    const f4 = this.rangeAddress(fields[0]!, fields[1]!, 0);
    const l4 = this.rangeAddress(fields[2]!, fields[3]!, 4);
    if ((f4 < 0) !== (l4 < 0)) {
      this.fail("a range's first and last addresses must be both IPv4 or both IPv6");
    }
    if (f4 >= 0) {
      if (f4 > l4) this.fail("a range's first address is after its last");
      this.entries.addV4(f4, l4, this.line, score);
      return;
    }
    if (compareWords(W, 0, W, 4) > 0) this.fail("a range's first address is after its last");
    this.addV6(score);
  }

  /**
   * A range's address at `[a, b)`: an IPv4 address as a number, or -1 with an
   * IPv6 address in `W[at..at+4)`.
   */
  rangeAddress(a: number, b: number, at: number): number {
    const bytes = this.bytes;
    if (isDigits(bytes, a, b)) {
      if (b - a <= 10) {
        let value = 0;
        for (let i = a; i < b; i++) value = value * 10 + bytes[i]! - 0x30;
        if (value <= 0xffff_ffff) return value;
      }
      if (b - a > 39) this.fail(`${this.quoted(a, b)} is above the largest IPv6 address`);
      const big = BigInt(decoder.decode(bytes.subarray(a, b)));
      if (big >> 128n !== 0n) this.fail(`${this.quoted(a, b)} is above the largest IPv6 address`);
      for (let k = 0; k < 4; k++) W[at + k] = Number((big >> BigInt(96 - 32 * k)) & 0xffff_ffffn);
      return -1;
    }
    const v4 = readIPv4(bytes, a, b);
    if (v4 >= 0) return v4;
    if (readIPv6(bytes, a, b, W, at)) return -1;
    return this.fail(`${this.quoted(a, b)} is not an IPv4 or IPv6 address`);
  }

  json(s: number, e: number): void {
    let value: unknown;
    try {
      value = JSON.parse(decoder.decode(this.bytes.subarray(s, e)));
    } catch {
      this.fail("not a JSON object (the format of this file's first entry)");
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      this.fail("not a JSON object (the format of this file's first entry)");
    }
    const record = value as Record<string, unknown>;
    if (record.type === "metadata") return;
    const cidr = record.cidr;
    if (typeof cidr !== "string") this.fail('a JSON line without a "cidr" string');
    const text = encoder.encode(cidr);
    const parser = new LineParser(text, this.file, this.entries);
    parser.line = this.line;
    parser.cidr(0, text.length, NO_SCORE);
  }

  /** Adds the address or CIDR at `[s, t)`. */
  cidr(s: number, t: number, score: number): void {
    const bytes = this.bytes;
    let slash = -1;
    for (let i = s; i < t; i++) {
      if (bytes[i] === SLASH) {
        slash = i;
        break;
      }
    }
    const end = slash < 0 ? t : slash;
    const v4 = readIPv4(bytes, s, end);
    const v6 = v4 < 0 && readIPv6(bytes, s, end, W, 0);
    if (v4 < 0 && !v6) {
      this.fail(`${this.quoted(s, t)} is not an IPv4 or IPv6 address or CIDR`);
    }
    const bits = v4 >= 0 ? 32 : 128;
    let prefix = bits;
    if (slash >= 0) {
      prefix = -1;
      if (isDigits(bytes, slash + 1, t) && t - slash - 1 <= 3) {
        prefix = 0;
        for (let i = slash + 1; i < t; i++) prefix = prefix * 10 + bytes[i]! - 0x30;
      }
      if (prefix < 0 || prefix > bits) {
        this.fail(`${this.quoted(s, t)} has a prefix length outside 0..${bits}`);
      }
    }
    if (v4 >= 0) {
      const size = 2 ** (32 - prefix);
      const first = v4 - (v4 % size);
      this.entries.addV4(first, first + size - 1, this.line, score);
      return;
    }
    // W[0..4) is the address: the first address in W[0..4), the last in W[4..8).
    for (let k = 0; k < 4; k++) {
      const bitsIn = Math.max(0, Math.min(32, prefix - 32 * k));
      const mask = bitsIn === 0 ? 0 : (0xffff_ffff << (32 - bitsIn)) >>> 0;
      const word = W[k]!;
      W[k] = (word & mask) >>> 0;
      W[4 + k] = (word | ~mask) >>> 0;
    }
    this.addV6(score);
  }

  /**
   * Adds the IPv6 entry `W[0..4)..W[4..8)`; the part inside
   * `::ffff:0:0/96` becomes an IPv4 entry.
   */
  addV6(score: number): void {
    const entries = this.entries;
    if (compareWords(W, 4, MAPPED_FIRST, 0) >= 0 && compareWords(W, 0, MAPPED_LAST, 0) <= 0) {
      const first = compareWords(W, 0, MAPPED_FIRST, 0) < 0 ? 0 : W[3]!;
      const last = compareWords(W, 4, MAPPED_LAST, 0) > 0 ? 0xffff_ffff : W[7]!;
      entries.addV4(first, last, this.line, score);
      // Wholly inside: nothing is left for IPv6.
      if (isMapped(W, 0) && isMapped(W, 4)) return;
    }
    entries.addV6(W, 0, W, 4, this.line, score);
  }
}
