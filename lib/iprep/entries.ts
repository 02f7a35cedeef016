/**
 * One list's entries, in the order of its file: for each, the first and last
 * address it covers, its line and its own score. IPv4 entries hold numbers,
 * IPv6 entries four 32-bit words each. The arrays can live in a
 * `SharedArrayBuffer`, so that every thread reads the same copy.
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

/** Collects entries in growable arrays, then packs them into shared memory. */
export class EntriesBuilder {
  v4Count = 0;
  v4First: Uint32Array = new Uint32Array(1024);
  v4Last: Uint32Array = new Uint32Array(1024);
  v4Line: Uint32Array = new Uint32Array(1024);
  v4Score: Uint8Array = new Uint8Array(1024);
  v6Count = 0;
  v6First: Uint32Array = new Uint32Array(256);
  v6Last: Uint32Array = new Uint32Array(256);
  v6Line: Uint32Array = new Uint32Array(64);
  v6Score: Uint8Array = new Uint8Array(64);

  /** Adds an IPv4 entry covering `first..last`. */
  addV4(first: number, last: number, line: number, score: number): void {
    const i = this.v4Count;
    if (i === this.v4Line.length) {
      const size = i * 2;
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
      const size = i * 2;
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
   * Packs the entries into one `SharedArrayBuffer` of exactly their size.
   *
   * @returns Views onto it.
   */
  finish(): EntriesData {
    const n4 = this.v4Count;
    const n6 = this.v6Count;
    const bytes = 4 * (3 * n4) + 4 * (9 * n6) + n4 + n6;
    const buffer = new SharedArrayBuffer(bytes);
    let at = 0;
    const take32 = (source: Uint32Array, length: number) => {
      const view = new Uint32Array(buffer, at, length);
      view.set(source.subarray(0, length));
      at += length * 4;
      return view;
    };
    const v4First = take32(this.v4First, n4);
    const v4Last = take32(this.v4Last, n4);
    const v4Line = take32(this.v4Line, n4);
    const v6First = take32(this.v6First, n6 * 4);
    const v6Last = take32(this.v6Last, n6 * 4);
    const v6Line = take32(this.v6Line, n6);
    const v4Score = new Uint8Array(buffer, at, n4);
    v4Score.set(this.v4Score.subarray(0, n4));
    at += n4;
    const v6Score = new Uint8Array(buffer, at, n6);
    v6Score.set(this.v6Score.subarray(0, n6));
    return {
      v4Count: n4,
      v4First,
      v4Last,
      v4Line,
      v4Score,
      v6Count: n6,
      v6First,
      v6Last,
      v6Line,
      v6Score,
    };
  }
}

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
