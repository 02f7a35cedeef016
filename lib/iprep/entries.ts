/**
 * One list's entries, in the order of its file: for each, the first and last
 * address it covers, its line and its own score. IPv4 entries hold numbers,
 * IPv6 entries four 32-bit words each. They live while the table is built
 * (and while an address is explained), not beside the table.
 *
 * @module
 */

/** An entry without a score of its own: the list's score applies. */
export const NO_SCORE = 255;

/** The arrays of a list's entries (what crosses threads). */
export interface EntriesData {
  /** IPv4 entries. */
  v4Count: number;
  v4First: Uint32Array;
  v4Last: Uint32Array;
  v4Line: Uint32Array;
  v4Score: Uint8Array;
  /** IPv6 entries (4 words an address). */
  v6Count: number;
  v6First: Uint32Array;
  v6Last: Uint32Array;
  v6Line: Uint32Array;
  v6Score: Uint8Array;
}

/**
 * Collects entries in arrays made at the size they need: each family's
 * arrays are made at its first entry, with room for one entry on every line
 * left, so that they never grow (growing would leave garbage that the
 * allocator keeps; an IPv6 entry with IPv4-mapped addresses, which adds an
 * IPv4 entry too, is the one case that may still grow them).
 */
export class EntriesBuilder {
  v4Count = 0;
  v4First: Uint32Array = EMPTY32;
  v4Last: Uint32Array = EMPTY32;
  v4Line: Uint32Array = EMPTY32;
  v4Score: Uint8Array = EMPTY8;
  v6Count = 0;
  v6First: Uint32Array = EMPTY32;
  v6Last: Uint32Array = EMPTY32;
  v6Line: Uint32Array = EMPTY32;
  v6Score: Uint8Array = EMPTY8;
  readonly #lines: number;

  /** @param lines How many lines the file has (room for one entry on each). */
  constructor(lines = 1024) {
    this.#lines = lines;
  }

  /** Room for the entries of the lines from `line` on (at least twice `used`). */
  #room(line: number, used: number): number {
    return Math.max(this.#lines - line + 1, used * 2, 16);
  }

  /** Adds an IPv4 entry covering `first..last`. */
  addV4(first: number, last: number, line: number, score: number): void {
    const i = this.v4Count;
    if (i === this.v4Line.length) {
      const size = this.#room(line, i);
      this.v4First = grow32(this.v4First, size);
      this.v4Last = grow32(this.v4Last, size);
      this.v4Line = grow32(this.v4Line, size);
      this.v4Score = grow8(this.v4Score, size);
    }
    this.v4First[i] = first;
    this.v4Last[i] = last;
    this.v4Line[i] = line;
    this.v4Score[i] = score;
    this.v4Count = i + 1;
  }

  /** Adds an IPv6 entry covering the words `first[f..f+4)` to `last[l..l+4)`. */
  addV6(
    first: Uint32Array,
    f: number,
    last: Uint32Array,
    l: number,
    line: number,
    score: number,
  ): void {
    const i = this.v6Count;
    if (i === this.v6Line.length) {
      const size = this.#room(line, i);
      this.v6First = grow32(this.v6First, size * 4);
      this.v6Last = grow32(this.v6Last, size * 4);
      this.v6Line = grow32(this.v6Line, size);
      this.v6Score = grow8(this.v6Score, size);
    }
    for (let k = 0; k < 4; k++) {
      this.v6First[i * 4 + k] = first[f + k]!;
      this.v6Last[i * 4 + k] = last[l + k]!;
    }
    this.v6Line[i] = line;
    this.v6Score[i] = score;
    this.v6Count = i + 1;
  }

  /** How many entries, both families. */
  get count(): number {
    return this.v4Count + this.v6Count;
  }

  /**
   * The entries as arrays of exactly their count (views, no copy).
   *
   * @returns The views.
   */
  data(): EntriesData {
    const n4 = this.v4Count;
    const n6 = this.v6Count;
    return {
      v4Count: n4,
      v4First: this.v4First.subarray(0, n4),
      v4Last: this.v4Last.subarray(0, n4),
      v4Line: this.v4Line.subarray(0, n4),
      v4Score: this.v4Score.subarray(0, n4),
      v6Count: n6,
      v6First: this.v6First.subarray(0, n6 * 4),
      v6Last: this.v6Last.subarray(0, n6 * 4),
      v6Line: this.v6Line.subarray(0, n6),
      v6Score: this.v6Score.subarray(0, n6),
    };
  }
}

const EMPTY32 = new Uint32Array(0);
const EMPTY8 = new Uint8Array(0);

function grow32(old: Uint32Array, size: number): Uint32Array {
  const next = new Uint32Array(size);
  next.set(old);
  return next;
}

function grow8(old: Uint8Array, size: number): Uint8Array {
  const next = new Uint8Array(size);
  next.set(old);
  return next;
}
