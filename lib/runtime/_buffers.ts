/**
 * Buffers of the socket adapters, sized for thousands of mostly idle
 * connections (HAProxy 3.x keeps pools of agent connections per thread):
 *
 * - {@linkcode ReadBuffer}: a connection's read buffer, which a pending read
 *   holds (so it cannot be shared). It starts small, doubles when a read
 *   fills it, and halves back after a long run of reads that used a quarter
 *   of it or less: it changes size rarely, never per frame.
 * - {@linkcode BufferPool}: buffers a connection holds only while it has
 *   output in flight, shared by the connections of one thread.
 *
 * No runtime globals: the same code serves every adapter and runs in tests.
 *
 * @module
 */

/** A connection's first read buffer: a HAProxy HELLO (about 140 bytes) and a few NOTIFYs. */
export const READ_BUFFER_MIN = 256;
/** The largest read buffer: a read carries a batch of NOTIFYs; a larger frame spans reads. */
export const READ_BUFFER_MAX = 8 * 1024;
/** Consecutive reads of a quarter of the buffer or less after which it halves. */
export const READ_SHRINK_AFTER = 256;

/**
 * A read buffer that follows the size of the reads.
 *
 * @example Grows after reads that fill it
 * ```ts
 * import { ReadBuffer } from "./_buffers.ts";
 *
 * const rb = new ReadBuffer(256, 1024);
 * rb.used(256); // a full read: more may be waiting
 * rb.bytes.length; // 512
 * ```
 */
export class ReadBuffer {
  /** Where the next read goes; replaced when the size changes. */
  bytes: Uint8Array<ArrayBuffer>;
  readonly #min: number;
  readonly #max: number;
  /** Reads in a row that used a quarter of the buffer or less. */
  #small = 0;

  /**
   * @param min The first and smallest size.
   * @param max The largest size.
   */
  constructor(min: number = READ_BUFFER_MIN, max: number = READ_BUFFER_MAX) {
    this.#min = min;
    this.#max = Math.max(min, max);
    this.bytes = new Uint8Array(min);
  }

  /**
   * Adapts the size to a read of `n` bytes. Call it once the bytes were
   * handed on: the buffer may be replaced.
   *
   * @param n The bytes the last read delivered.
   */
  used(n: number): void {
    const size = this.bytes.length;
    if (n >= size) {
      this.#small = 0;
      if (size < this.#max) this.bytes = new Uint8Array(Math.min(size * 2, this.#max));
    } else if (n <= size >> 2 && size > this.#min) {
      if (++this.#small < READ_SHRINK_AFTER) return;
      this.#small = 0;
      this.bytes = new Uint8Array(Math.max(size >> 1, this.#min));
    } else this.#small = 0;
  }
}

/**
 * Buffers lent to connections while they have output in flight. A buffer
 * taken must be given back only once nothing uses it any more (its write
 * finished); one grown beyond `keepBytes` is dropped instead, and so are
 * buffers beyond `maxBytes` in all.
 *
 * @example One buffer, lent twice
 * ```ts
 * import { BufferPool } from "./_buffers.ts";
 *
 * const pool = new BufferPool(4096);
 * const a = pool.take(100);
 * pool.give(a);
 * pool.take(100) === a; // true
 * ```
 */
export class BufferPool {
  readonly #size: number;
  readonly #keepBytes: number;
  readonly #maxBytes: number;
  readonly #free: Uint8Array<ArrayBuffer>[] = [];
  #freeBytes = 0;

  /**
   * @param size The size of a new buffer (a larger one when a take needs more).
   * @param keepBytes The largest buffer taken back.
   * @param maxBytes The most bytes kept in all.
   */
  constructor(size: number, keepBytes: number = 16 * size, maxBytes: number = 256 * size) {
    this.#size = size;
    this.#keepBytes = keepBytes;
    this.#maxBytes = maxBytes;
  }

  /** Bytes the pool holds now. */
  get freeBytes(): number {
    return this.#freeBytes;
  }

  /**
   * A buffer of at least `need` bytes, pooled when the last one given back
   * is large enough.
   *
   * @param need The bytes it must hold.
   * @returns A buffer whose contents are undefined.
   */
  take(need: number): Uint8Array<ArrayBuffer> {
    const free = this.#free;
    if (free.length > 0 && free[free.length - 1]!.length >= need) {
      const buf = free.pop()!;
      this.#freeBytes -= buf.length;
      return buf;
    }
    let size = this.#size;
    while (size < need) size *= 2;
    return new Uint8Array(size);
  }

  /**
   * Takes a buffer back (or lets it go when it is too large or the pool full).
   *
   * @param buf A buffer no longer in use.
   */
  give(buf: Uint8Array<ArrayBuffer>): void {
    const n = buf.length;
    if (n === 0 || n > this.#keepBytes || this.#freeBytes + n > this.#maxBytes) return;
    this.#free.push(buf);
    this.#freeBytes += n;
  }
}
