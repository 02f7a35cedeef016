/**
 * Building a table's intervals from lists (see `table.ts` for the rules).
 *
 * Each list is swept once in order of first address, with a heap of the
 * entries that may still cover the sweep point, so that the narrowest entry
 * decides; then the lists are combined at every point where one of them
 * changes. Everything runs on numbers in typed arrays: IPv4 addresses are
 * numbers already, and IPv6 addresses are first replaced by their rank among
 * every boundary of every list, so that one sweep serves both.
 *
 * @module
 */

import { compareWords } from "./_addr.ts";
import { type EntriesData, NO_SCORE } from "./entries.ts";

/** The score of an address on no list. */
export const UNLISTED = 255;

/** A list as the build sees it. */
export interface ListSource {
  /** `block` lists take the lowest score; `allow` lists win and take the highest. */
  readonly kind: "block" | "allow";
  /** The score of entries without one of their own. */
  readonly score: number;
  /** The entries. */
  readonly entries: EntriesData;
}

/**
 * Intervals with ascending starts (below 2^32: IPv4 addresses or IPv6
 * ranks); consecutive equal scores are merged on the way in.
 */
export class Intervals {
  starts: Uint32Array;
  scores: Uint8Array;
  length = 0;

  /** @param capacity Room for this many intervals before growing. */
  constructor(capacity = 1024) {
    this.starts = new Uint32Array(Math.max(capacity, 16));
    this.scores = new Uint8Array(Math.max(capacity, 16));
  }

  /** Adds an interval starting at `start` (after every one before). */
  push(start: number, score: number): void {
    const n = this.length;
    if (n > 0 && this.scores[n - 1] === score) return;
    if (n === this.scores.length) {
      const starts = new Uint32Array(n * 2);
      starts.set(this.starts);
      this.starts = starts;
      const scores = new Uint8Array(n * 2);
      scores.set(this.scores);
      this.scores = scores;
    }
    this.starts[n] = start;
    this.scores[n] = score;
    this.length = n + 1;
  }
}

/**
 * One list's entries as intervals of numbers below 2^32: entry `i` covers
 * `lo[i]` to `last[i]` inclusive.
 */
interface Spans {
  n: number;
  lo: ArrayLike<number>;
  last: ArrayLike<number>;
  /** `last - first` when it is not `last[i] - lo[i]` (IPv6 ranks), rounded (see `tie`). */
  width?: Float64Array;
  /** Each entry's own score, or `NO_SCORE` for the list's. */
  own: Uint8Array;
  /** The list's score. */
  score: number;
  /** For IPv6: compares two exact widths whose rounded values are equal. */
  tie?: (a: number, b: number) => number;
}

/**
 * The IPv4 intervals of a set of lists.
 *
 * @param lists The lists.
 * @returns Intervals whose starts are addresses; the first starts at 0.
 */
export function intervalsV4(lists: readonly ListSource[]): Intervals {
  const each = lists.map((list) => {
    const e = list.entries;
    const spans: Spans = {
      n: e.v4Count,
      lo: e.v4First,
      last: e.v4Last,
      own: e.v4Score,
      score: list.score,
    };
    return sweep(spans, list.kind === "block");
  });
  return combine(each, lists, 2 ** 32);
}

/**
 * The IPv6 intervals of a set of lists.
 *
 * @param lists The lists.
 * @returns Intervals whose starts are indices into `points` (4 words each).
 */
export function intervalsV6(
  lists: readonly ListSource[],
): { intervals: Intervals; points: Uint32Array } {
  // Every boundary: `::`, each entry's first address, and the address after its last.
  let total = 1;
  for (const list of lists) total += 2 * list.entries.v6Count;
  const words = new Uint32Array(total * 4);
  /** Set for "the address after the last one" (2^128), which words cannot hold. */
  const beyond = new Uint8Array(total);
  let m = 1;
  for (const list of lists) {
    const e = list.entries;
    for (let i = 0; i < e.v6Count; i++) {
      words.set(e.v6First.subarray(i * 4, i * 4 + 4), m * 4);
      m++;
      // last + 1, with the carry.
      let carry = 1;
      for (let k = 3; k >= 0; k--) {
        const sum = e.v6Last[i * 4 + k]! + carry;
        words[m * 4 + k] = sum >>> 0;
        carry = sum > 0xffff_ffff ? 1 : 0;
      }
      beyond[m] = carry;
      m++;
    }
  }
  // Rank them: sort, then number the distinct ones.
  const order = new Uint32Array(total);
  for (let i = 0; i < total; i++) order[i] = i;
  const compare = (a: number, b: number) =>
    beyond[a]! - beyond[b]! || compareWords(words, a * 4, words, b * 4);
  order.sort((a, b) => compare(a, b) || a - b);
  const rank = new Float64Array(total);
  const points = new Uint32Array(total * 4);
  let distinct = 0;
  let end = Infinity;
  for (let j = 0; j < total; j++) {
    const i = order[j]!;
    const prev = j > 0 ? order[j - 1]! : -1;
    if (prev < 0 || compare(prev, i) !== 0) {
      if (beyond[i] === 1) end = distinct;
      else points.set(words.subarray(i * 4, i * 4 + 4), distinct * 4);
      distinct++;
    }
    rank[i] = distinct - 1;
  }
  let base = 1;
  const each = lists.map((list) => {
    const e = list.entries;
    const n = e.v6Count;
    const exact = new Uint32Array(n * 4);
    const lo = new Uint32Array(n);
    const last = new Uint32Array(n);
    const width = new Float64Array(n);
    const spans: Spans = {
      n,
      lo,
      last,
      width,
      own: e.v6Score,
      score: list.score,
      tie: (a, b) => compareWords(exact, a * 4, exact, b * 4),
    };
    for (let i = 0; i < n; i++) {
      lo[i] = rank[base + 2 * i]!;
      last[i] = rank[base + 2 * i + 1]! - 1;
      // last - first, with the borrow.
      let borrow = 0;
      let w = 0;
      for (let k = 3; k >= 0; k--) {
        const d = e.v6Last[i * 4 + k]! - e.v6First[i * 4 + k]! - borrow;
        exact[i * 4 + k] = d >>> 0;
        borrow = d < 0 ? 1 : 0;
      }
      for (let k = 0; k < 4; k++) w = w * 2 ** 32 + exact[i * 4 + k]!;
      width[i] = w;
    }
    base += 2 * n;
    return sweep(spans, list.kind === "block");
  });
  return { intervals: combine(each, lists, end), points };
}

/** The entries' indices in order of `lo`. */
function orderOf(n: number, lo: ArrayLike<number>): Uint32Array {
  const order = new Uint32Array(n);
  if (n < 2 ** 21) {
    // Sorting plain numbers is far faster than sorting with a comparator.
    const keys = new Float64Array(n);
    for (let i = 0; i < n; i++) keys[i] = lo[i]! * 2 ** 21 + i;
    keys.sort();
    for (let i = 0; i < n; i++) order[i] = keys[i]! % 2 ** 21;
  } else {
    for (let i = 0; i < n; i++) order[i] = i;
    order.sort((a, b) => lo[a]! - lo[b]! || a - b);
  }
  return order;
}

/** Cuts one list's spans into intervals where the narrowest span decides. */
function sweep(spans: Spans, preferLow: boolean): Intervals {
  const { n, lo, last, width, own, score: listScore, tie } = spans;
  const order = orderOf(n, lo);
  // At most two intervals a span, and one after the last: never grown.
  const out = new Intervals(2 * n + 2);
  const scoreOf = (i: number) => {
    const s = own[i]!;
    return s === NO_SCORE ? listScore : s;
  };
  const widthOf = width === undefined ? (i: number) => last[i]! - lo[i]! : (i: number) => width[i]!;
  // Whether span a decides over span b.
  const before = (a: number, b: number): boolean => {
    const wa = widthOf(a);
    const wb = widthOf(b);
    if (wa !== wb) return wa < wb;
    if (tie !== undefined) {
      const t = tie(a, b);
      if (t !== 0) return t < 0;
    }
    return preferLow ? scoreOf(a) < scoreOf(b) : scoreOf(a) > scoreOf(b);
  };
  const heap = new Uint32Array(n);
  let size = 0;
  let pos = 0;
  // Every list's intervals start at 0 (unlisted up to its first span).
  let point = 0;
  while (pos < n || size > 0) {
    // Spans that ended before the point cover nothing more.
    while (size > 0 && last[heap[0]!]! < point) {
      const item = heap[--size]!;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= size) break;
        const r = l + 1;
        const child = r < size && before(heap[r]!, heap[l]!) ? r : l;
        if (!before(heap[child]!, item)) break;
        heap[i] = heap[child]!;
        i = child;
      }
      heap[i] = item;
    }
    if (size === 0) {
      if (pos >= n) break;
      const start = lo[order[pos]!]!;
      if (point < start) out.push(point, UNLISTED);
      point = start;
    }
    while (pos < n && lo[order[pos]!]! === point) {
      const item = order[pos++]!;
      let i = size++;
      while (i > 0) {
        const parent = (i - 1) >> 1;
        if (!before(item, heap[parent]!)) break;
        heap[i] = heap[parent]!;
        i = parent;
      }
      heap[i] = item;
    }
    const top = heap[0]!;
    out.push(point, scoreOf(top));
    // The decision changes after the top span's last address, or where the next span starts.
    let change = last[top]! + 1;
    if (pos < n && lo[order[pos]!]! < change) change = lo[order[pos]!]!;
    point = change;
  }
  // After the last span (unless it ends the space: 2^32 does not fit).
  if (point <= 0xffff_ffff) out.push(point, UNLISTED);
  return out;
}

/** One interval: every address unlisted. */
function unlisted(): Intervals {
  const out = new Intervals(1);
  out.push(0, UNLISTED);
  return out;
}

/**
 * Combines the lists' intervals: at every point where some list changes,
 * the allow lists' highest score, else the block lists' lowest, else
 * unlisted. Points at or after `end` are dropped.
 */
function combine(each: Intervals[], lists: readonly ListSource[], end: number): Intervals {
  const some = each.filter((intervals) => intervals.length > 1 || intervals.scores[0] !== UNLISTED);
  // No list, or one alone, decides (every list's intervals start at 0).
  if (some.length <= 1) return some[0] ?? each[0] ?? unlisted();
  let size = 1;
  for (const intervals of each) size += intervals.length;
  const points = new Float64Array(size);
  let n = 1;
  for (const intervals of each) {
    points.set(intervals.starts.subarray(0, intervals.length), n);
    n += intervals.length;
  }
  points.sort();
  const out = new Intervals();
  const at = new Int32Array(each.length).fill(-1);
  for (let p = 0; p < size; p++) {
    const point = points[p]!;
    if (point >= end) break;
    if (p > 0 && points[p - 1] === point) continue;
    let allow = -1;
    let block = 256;
    for (let l = 0; l < each.length; l++) {
      const { starts, scores, length } = each[l]!;
      let i = at[l]!;
      while (i + 1 < length && starts[i + 1]! <= point) i++;
      at[l] = i;
      const score = i < 0 ? UNLISTED : scores[i]!;
      if (score === UNLISTED) continue;
      if (lists[l]!.kind === "allow") allow = Math.max(allow, score);
      else block = Math.min(block, score);
    }
    out.push(point, allow >= 0 ? allow : block <= 100 ? block : UNLISTED);
  }
  return out;
}
