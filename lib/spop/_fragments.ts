/**
 * Reassembly of fragmented NOTIFY frames (HAProxy 2.x only,
 * `../shared/docs/spop.md` §6): a NOTIFY without FIN, then UNSET frames with
 * the same stream-id and frame-id until one has FIN. A fragment with ABORT
 * cancels the frame; a fragment of another frame while one is open is an
 * error (status 11).
 *
 * @module
 */

import { SpopError, Status } from "./errors.ts";
import { FrameType } from "./_constants.ts";
import type { Frame } from "./_frame.ts";

/** What {@linkcode Reassembly.add} made of a fragment. */
export const Fragment = {
  /** More fragments are expected. */
  PARTIAL: 0,
  /** The frame is complete: read it from `bytes()`. */
  COMPLETE: 1,
  /** HAProxy cancelled the frame: drop it, send no ACK. */
  ABORTED: 2,
} as const;
/** One of the {@linkcode Fragment} values. */
export type Fragment = typeof Fragment[keyof typeof Fragment];

/** A buffer grown beyond this for one large payload is let go before the next one. */
const KEEP_BYTES = 64 * 1024;

/** Joins the payloads of one fragmented NOTIFY. */
export class Reassembly {
  #buf = new Uint8Array(0);
  #size = 0;
  #open = false;
  /** The stream-id of the frame being reassembled. */
  streamId: number | bigint = 0;
  /** Its frame-id. */
  frameId: number | bigint = 0;
  readonly #limit: number;

  /** @param limit The largest reassembled payload, in bytes. */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /** The buffer's size now. */
  get capacity(): number {
    return this.#buf.length;
  }

  /** Drops what is being reassembled and the buffer (for a closed connection). */
  release(): void {
    this.#open = false;
    this.#size = 0;
    this.#buf = new Uint8Array(0);
  }

  /** Whether a frame is being reassembled. */
  get open(): boolean {
    return this.#open;
  }

  /**
   * Takes a NOTIFY or UNSET frame that belongs to a fragmented NOTIFY.
   *
   * @param frame A NOTIFY without FIN (the first fragment) or an UNSET frame.
   * @returns What happened; on COMPLETE the payload is in `bytes()`.
   * @throws {SpopError} INTERLACED_FRAMES for a fragment of another frame,
   * INVALID_FRAME for an UNSET frame with nothing open, FRAME_TOO_BIG past the
   * size limit.
   */
  add(frame: Frame): Fragment {
    if (frame.type === FrameType.NOTIFY) {
      if (this.#open) throw interlaced(frame, this);
      this.#open = true;
      this.#size = 0;
      // The last payload was used: a buffer grown large for it goes.
      if (this.#buf.length > KEEP_BYTES) this.#buf = new Uint8Array(0);
      this.streamId = frame.streamId;
      this.frameId = frame.frameId;
    } else if (!this.#open) {
      if (frame.abort) return Fragment.ABORTED;
      throw new SpopError(
        Status.INVALID_FRAME,
        `Cannot continue frame ${frame.streamId}/${frame.frameId}: no fragmented frame is open`,
      );
    } else if (frame.streamId !== this.streamId || frame.frameId !== this.frameId) {
      throw interlaced(frame, this);
    }
    if (frame.abort) {
      this.#open = false;
      return Fragment.ABORTED;
    }
    this.#append(frame.buf, frame.payloadStart, frame.end);
    if (!frame.fin) return Fragment.PARTIAL;
    this.#open = false;
    return Fragment.COMPLETE;
  }

  /**
   * The reassembled payload (a view, valid until the next `add()`).
   *
   * @returns The bytes.
   */
  bytes(): Uint8Array {
    return this.#buf.subarray(0, this.#size);
  }

  #append(src: Uint8Array, start: number, end: number): void {
    const size = this.#size + end - start;
    if (size > this.#limit) {
      this.#open = false;
      throw new SpopError(
        Status.FRAME_TOO_BIG,
        `Cannot reassemble frame: payload exceeds ${this.#limit} bytes`,
      );
    }
    if (size > this.#buf.length) {
      const grown = new Uint8Array(Math.min(this.#limit, Math.max(size, this.#buf.length * 2)));
      grown.set(this.#buf.subarray(0, this.#size));
      this.#buf = grown;
    }
    this.#buf.set(src.subarray(start, end), this.#size);
    this.#size = size;
  }
}

function interlaced(frame: Frame, open: Reassembly): SpopError {
  return new SpopError(
    Status.INTERLACED_FRAMES,
    `Cannot take frame ${frame.streamId}/${frame.frameId}: frame ${open.streamId}/${open.frameId} is still being reassembled`,
  );
}
