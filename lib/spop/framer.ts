/**
 * Turns the chunks a socket delivers into whole SPOP frames
 * (`../shared/docs/spop.md` §1, §11.1–§11.3).
 *
 * Frames that lie wholly inside a chunk are read in place (no copy). Only a
 * frame split across chunks is copied, into a per-connection buffer that never
 * grows past the frame's LENGTH, and only after that LENGTH was checked
 * against the limit.
 *
 * @module
 */

import { DEFAULT_MAX_FRAME_SIZE, LENGTH_SIZE } from "./_constants.ts";
import { checkLength, Frame, readFrame } from "./_frame.ts";
import { INCOMPLETE } from "./_varint.ts";

const EMPTY = new Uint8Array(0);
const EMPTY_VIEW = new DataView(EMPTY.buffer);
/**
 * A stash grown beyond this (for a frame above the default max-frame-size)
 * is let go once its frame was used, so that one large frame does not hold
 * memory for the connection's lifetime.
 */
const KEEP_STASH_BYTES = DEFAULT_MAX_FRAME_SIZE + LENGTH_SIZE;

/**
 * Frames out of arbitrary chunks. Call {@linkcode FrameScanner.push} with a
 * chunk, then {@linkcode FrameScanner.next} until it returns `null` ("need
 * more bytes"); a malformed stream throws an `SpopError` whose `status` is the
 * code to disconnect with.
 *
 * The returned `Frame` is reused, and its bytes may be the caller's chunk or
 * the scanner's buffer: both stay valid only until the next `next()` or
 * `push()` call. Copy what must outlive that.
 *
 * @example Two frames in one chunk, then a frame in two halves
 * ```ts
 * import { FrameScanner } from "./framer.ts";
 *
 * const ack = [0, 0, 0, 7, 0x67, 0, 0, 0, 1, 1, 1];
 * const scanner = new FrameScanner(16380);
 * scanner.push(new Uint8Array([...ack, ...ack]));
 * scanner.next()?.type; // 103
 * scanner.next()?.type; // 103
 * scanner.next(); // null: need more bytes
 * scanner.push(new Uint8Array(ack.slice(0, 5)));
 * scanner.next(); // null
 * scanner.push(new Uint8Array(ack.slice(5)));
 * scanner.next()?.frameId; // 1
 * ```
 */
export class FrameScanner {
  /** The largest LENGTH accepted; lower it to the negotiated max-frame-size. */
  maxLength: number;
  /** The frame `next()` fills. */
  readonly frame: Frame;

  #chunk: Uint8Array = EMPTY;
  #view: DataView = EMPTY_VIEW;
  #pos = 0;
  #end = 0;

  #stash: Uint8Array = EMPTY;
  #stashView: DataView = EMPTY_VIEW;
  #stashLen = 0;
  /** Total size (prefix included) of the stashed frame; 0 while LENGTH is unknown. */
  #need = 0;

  /**
   * @param maxLength The largest LENGTH accepted before the handshake sets the
   * negotiated value.
   * @param frame The frame `next()` fills; scanners whose frames are each
   * used before another scanner's `next()` runs may share one (a server's
   * sessions, which use a frame within the read it came in).
   */
  constructor(maxLength: number = DEFAULT_MAX_FRAME_SIZE, frame: Frame = new Frame()) {
    this.maxLength = maxLength;
    this.frame = frame;
  }

  /** Bytes received but not yet returned as frames. */
  get buffered(): number {
    return this.#stashLen + this.#end - this.#pos;
  }

  /**
   * Hands the scanner the next chunk. Passing the same buffer again (a reused
   * read buffer) reuses its DataView.
   *
   * @param chunk The bytes read.
   * @param length How many bytes of `chunk` are valid.
   * @throws {TypeError} When the previous chunk was not drained with `next()`.
   */
  push(chunk: Uint8Array, length: number = chunk.length): void {
    if (this.#pos < this.#end) {
      throw new TypeError("Cannot push chunk: call next() until it returns null first");
    }
    // The frame last returned from the stash is no longer in use.
    if (this.#stashLen === 0 && this.#stash.length > KEEP_STASH_BYTES) this.release();
    if (chunk !== this.#chunk) {
      this.#chunk = chunk;
      this.#view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    }
    this.#pos = 0;
    this.#end = length;
  }

  /**
   * Returns the next whole frame.
   *
   * @returns The frame, or `null` when more bytes are needed.
   * @throws {SpopError} FRAME_TOO_BIG for a LENGTH above `maxLength` (found
   * before the frame is buffered), INVALID_FRAME for a LENGTH below 7 or ids
   * that run past the frame.
   */
  next(): Frame | null {
    if (this.#stashLen > 0) return this.#fromStash();
    if (this.#pos >= this.#end) return null;
    const after = readFrame(
      this.#chunk,
      this.#view,
      this.#pos,
      this.#end,
      this.maxLength,
      this.frame,
    );
    if (after !== INCOMPLETE) {
      this.#pos = after;
      return this.frame;
    }
    // A partial frame: its LENGTH, if present, was checked by readFrame.
    const avail = this.#end - this.#pos;
    this.#need = avail >= LENGTH_SIZE ? LENGTH_SIZE + this.#view.getUint32(this.#pos) : 0;
    this.#copyIn(avail);
    return null;
  }

  /** Drops everything buffered. */
  reset(): void {
    this.#pos = this.#end = 0;
    this.#stashLen = this.#need = 0;
  }

  /** Drops everything buffered and lets the buffer go (for a closed connection). */
  release(): void {
    this.reset();
    this.#stash = EMPTY;
    this.#stashView = EMPTY_VIEW;
    this.#chunk = EMPTY;
    this.#view = EMPTY_VIEW;
  }

  /** The stash's size now (it grows for frames split across chunks). */
  get capacity(): number {
    return this.#stash.length;
  }

  #fromStash(): Frame | null {
    if (this.#need === 0) {
      this.#copyIn(Math.min(LENGTH_SIZE - this.#stashLen, this.#end - this.#pos));
      if (this.#stashLen < LENGTH_SIZE) return null;
      const length = this.#stashView.getUint32(0);
      checkLength(length, this.maxLength);
      this.#need = LENGTH_SIZE + length;
    }
    this.#copyIn(Math.min(this.#need - this.#stashLen, this.#end - this.#pos));
    if (this.#stashLen < this.#need) return null;
    readFrame(this.#stash, this.#stashView, 0, this.#need, this.maxLength, this.frame);
    this.#stashLen = this.#need = 0;
    return this.frame;
  }

  /** Moves `count` bytes from the chunk to the stash, growing it as needed. */
  #copyIn(count: number): void {
    const size = Math.max(this.#need, LENGTH_SIZE);
    if (this.#stash.length < size) {
      let capacity = Math.max(this.#stash.length, 256);
      while (capacity < size) capacity *= 2;
      const grown = new Uint8Array(
        Math.min(capacity, Math.max(size, this.maxLength + LENGTH_SIZE)),
      );
      grown.set(this.#stash.subarray(0, this.#stashLen));
      this.#stash = grown;
      this.#stashView = new DataView(grown.buffer);
    }
    this.#stash.set(this.#chunk.subarray(this.#pos, this.#pos + count), this.#stashLen);
    this.#stashLen += count;
    this.#pos += count;
  }
}
