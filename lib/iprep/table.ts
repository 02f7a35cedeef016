/**
 * The lookup table: the address space cut into intervals, each with the
 * score an address in it gets from the lists, searched by bisection. It is
 * built once from every list and kept in one `SharedArrayBuffer`, which all
 * threads read.
 *
 * Scores follow the lists' rules: an address on an allow list gets that
 * list's score (the highest, if several allow lists have it); otherwise the
 * lowest score of the block lists that have it; otherwise it is unlisted.
 * Within one list the most specific entry (the narrowest) decides; between
 * equally narrow entries of one list, the lowest score of a block list and
 * the highest of an allow list.
 *
 * @module
 */

import { intervalsV4, intervalsV6, type ListSource, UNLISTED } from "./build.ts";

export { type ListSource, UNLISTED };

/** The table's arrays (what crosses threads). */
export interface TableData {
  /**
   * Each IPv4 interval, ascending, in one number: the low 16 bits of its
   * start, shifted left by 8, and its score (or {@linkcode UNLISTED}) in the
   * low 8 bits. The high 16 bits of a start are those of the index slot that
   * leads to it: the intervals of one /16 sit side by side, in a cache line
   * or two, so that a lookup touches little memory.
   */
  v4Packed: Uint32Array;
  /** For each value of an address's top 16 bits, the interval holding its first address. */
  v4Index: Uint32Array;
  /** Start of each IPv6 interval (4 words each), ascending; the first is `::`. */
  v6Starts: Uint32Array;
  v6Scores: Uint8Array;
  /** As `v4Index`, for the top 16 bits of an IPv6 address. */
  v6Index: Uint32Array;
}

const INDEX_SIZE = 65537;

/**
 * Builds the table of a set of lists.
 *
 * @param lists The lists.
 * @returns The table's arrays, in one `SharedArrayBuffer`.
 */
export function buildTable(lists: readonly ListSource[]): TableData {
  const v4 = intervalsV4(lists);
  const { intervals: v6, points } = intervalsV6(lists);
  const n4 = v4.length;
  const n6 = v6.length;
  const buffer = new SharedArrayBuffer(4 * (n4 + 4 * n6 + 2 * INDEX_SIZE) + n6);
  let at = 0;
  const u32 = (length: number) => {
    const view = new Uint32Array(buffer, at, length);
    at += length * 4;
    return view;
  };
  const v4Packed = u32(n4);
  const v6Starts = u32(n6 * 4);
  const v4Index = u32(INDEX_SIZE);
  const v6Index = u32(INDEX_SIZE);
  const v6Scores = new Uint8Array(buffer, at, n6);
  const v4Starts = v4.starts;
  for (let i = 0; i < n4; i++) v4Packed[i] = (((v4Starts[i]! & 0xffff) << 8) | v4.scores[i]!) >>> 0;
  for (let i = 0; i < n6; i++) {
    const rank = v6.starts[i]!;
    v6Starts.set(points.subarray(rank * 4, rank * 4 + 4), i * 4);
  }
  v6Scores.set(v6.scores.subarray(0, n6));
  // The interval holding h << 16 (IPv4) or h << 112 (IPv6), for every h.
  let i = 0;
  for (let h = 0; h < INDEX_SIZE - 1; h++) {
    const point = h * 65536;
    while (i + 1 < n4 && v4Starts[i + 1]! <= point) i++;
    v4Index[h] = i;
  }
  v4Index[INDEX_SIZE - 1] = n4 - 1;
  i = 0;
  for (let h = 0; h < INDEX_SIZE - 1; h++) {
    while (i + 1 < n6 && atOrBefore(v6Starts, (i + 1) * 4, h)) i++;
    v6Index[h] = i;
  }
  v6Index[INDEX_SIZE - 1] = n6 - 1;
  return { v4Packed, v4Index, v6Starts, v6Scores, v6Index };
}

/** Whether the address at `words[at]` is at or before `h << 112`. */
function atOrBefore(words: Uint32Array, at: number, h: number): boolean {
  const top = words[at]! >>> 16;
  if (top !== h) return top < h;
  return (words[at]! & 0xffff) === 0 && words[at + 1] === 0 && words[at + 2] === 0 &&
    words[at + 3] === 0;
}

/** The big-endian 32-bit word at `bytes[i]`. */
function wordAt(bytes: Uint8Array, i: number): number {
  return ((bytes[i]! << 24) | (bytes[i + 1]! << 16) | (bytes[i + 2]! << 8) | bytes[i + 3]!) >>> 0;
}

/**
 * Looks addresses up in a table's arrays, allocating nothing.
 *
 * @example Score an address
 * ```ts
 * import { buildTable, IpTable, UNLISTED } from "./table.ts";
 * import { parseList } from "./formats.ts";
 *
 * const text = new TextEncoder().encode("192.0.2.0/24\n");
 * const entries = parseList(text, "block.txt").entries.data();
 * const table = new IpTable(buildTable([{ kind: "block", score: 0, entries }]));
 * table.v4(0xc0000205); // 0: 192.0.2.5 is blocked
 * table.v4(0xc0000305) === UNLISTED; // true
 * ```
 */
export class IpTable {
  readonly #packed4: Uint32Array;
  readonly #index4: Uint32Array;
  readonly #starts6: Uint32Array;
  readonly #scores6: Uint8Array;
  readonly #index6: Uint32Array;

  /**
   * Wraps a table's arrays.
   *
   * @param data What {@linkcode buildTable} made (possibly on another thread).
   */
  constructor(readonly data: TableData) {
    this.#packed4 = data.v4Packed;
    this.#index4 = data.v4Index;
    this.#starts6 = data.v6Starts;
    this.#scores6 = data.v6Scores;
    this.#index6 = data.v6Index;
  }

  /**
   * The score of an IPv4 address.
   *
   * @param address 0..2^32-1.
   * @returns 0..100, or {@linkcode UNLISTED}.
   */
  v4(address: number): number {
    const packed = this.#packed4;
    const h = address >>> 16;
    let lo = this.#index4[h]!;
    let hi = this.#index4[h + 1]!;
    // An interval starting exactly at the next /16 is not a candidate: only
    // it (or the first, at lo) can have low bits 0 past lo.
    if (hi > lo && packed[hi]! >>> 8 === 0) hi--;
    // The last interval starting at or before the address, in [lo, hi]; the
    // one at lo holds the /16's first address, so it always qualifies.
    const low = (address & 0xffff) << 8 | 0xff;
    while (hi - lo > 16) {
      const mid = (lo + hi + 1) >>> 1;
      if (packed[mid]! <= low) lo = mid;
      else hi = mid - 1;
    }
    // A few neighbours: read in order, they arrive together (no dependent misses).
    while (lo < hi && packed[lo + 1]! <= low) lo++;
    return packed[lo]! & 0xff;
  }

  /**
   * The score of an IPv6 address given as four words (most significant
   * first). An IPv4-mapped address (`::ffff:a.b.c.d`) is looked up as IPv4.
   *
   * @returns 0..100, or {@linkcode UNLISTED}.
   */
  v6(w0: number, w1: number, w2: number, w3: number): number {
    if (w0 === 0 && w1 === 0 && w2 === 0xffff) return this.v4(w3);
    const starts = this.#starts6;
    const h = w0 >>> 16;
    let lo = this.#index6[h]!;
    let hi = this.#index6[h + 1]!;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      const k = mid * 4;
      const s0 = starts[k]!;
      const before = s0 !== w0
        ? s0 < w0
        : starts[k + 1] !== w1
        ? starts[k + 1]! < w1
        : starts[k + 2] !== w2
        ? starts[k + 2]! < w2
        : starts[k + 3]! <= w3;
      if (before) lo = mid;
      else hi = mid - 1;
    }
    return this.#scores6[lo]!;
  }

  /**
   * The score of an address held as bytes in network order (what
   * `message.ipBytes()` copies).
   *
   * @param bytes The address's bytes.
   * @param length 4 or 16.
   * @returns 0..100, or {@linkcode UNLISTED}.
   */
  bytes(bytes: Uint8Array, length: number): number {
    if (length === 4) return this.v4(wordAt(bytes, 0));
    return this.v6(wordAt(bytes, 0), wordAt(bytes, 4), wordAt(bytes, 8), wordAt(bytes, 12));
  }

  /** How many intervals the table has: IPv4, IPv6. */
  get intervals(): [number, number] {
    return [this.#packed4.length, this.#starts6.length / 4];
  }
}
