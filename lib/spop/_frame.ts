/**
 * The frame header (`../shared/docs/spop.md` §1): 4-byte LENGTH, type byte,
 * 32-bit flags, stream-id and frame-id varints, then the payload.
 *
 * @module
 */

import { SpopError, Status } from "./errors.ts";
import { Flag, LENGTH_SIZE, MIN_FRAME_LENGTH } from "./_constants.ts";
import { INCOMPLETE, readVarint, type VarintOut } from "./_varint.ts";

const EMPTY = new Uint8Array(0);
const num: VarintOut = { value: 0 };

/**
 * One decoded frame. The object is reused; `buf` is the memory that holds the
 * frame and stays valid only until the next frame is read from the same
 * source. Offsets index `buf`.
 */
export class Frame {
  /** The bytes holding the frame. */
  buf: Uint8Array = EMPTY;
  /** A DataView over exactly `buf`. */
  view: DataView = new DataView(EMPTY.buffer);
  /** Offset of the LENGTH prefix. */
  start = 0;
  /** Frame type (see `FrameType`); unknown values are kept as they are. */
  type = 0;
  /** Flag bits (see `Flag`). */
  flags = 0;
  /** The stream-id: a number, or a bigint above 2^53-1. */
  streamId: number | bigint = 0;
  /** The frame-id: a number, or a bigint above 2^53-1. */
  frameId: number | bigint = 0;
  /** Offset of the first payload byte. */
  payloadStart = 0;
  /** Offset just past the frame. */
  end = 0;

  /** Whether FIN is set: the frame is whole, or the last fragment. */
  get fin(): boolean {
    return (this.flags & Flag.FIN) !== 0;
  }

  /** Whether ABORT is set. */
  get abort(): boolean {
    return (this.flags & Flag.ABORT) !== 0;
  }

  /** LENGTH: the bytes after the prefix. */
  get length(): number {
    return this.end - this.start - LENGTH_SIZE;
  }

  /**
   * The payload as a view (no copy).
   *
   * @returns Bytes from `payloadStart` to `end`.
   */
  payload(): Uint8Array {
    return this.buf.subarray(this.payloadStart, this.end);
  }
}

/**
 * Checks a LENGTH prefix before any of the frame's body is buffered.
 *
 * @param length The LENGTH read from the wire.
 * @param maxLength The largest LENGTH accepted.
 * @throws {SpopError} FRAME_TOO_BIG above `maxLength`, INVALID_FRAME below 7.
 */
export function checkLength(length: number, maxLength: number): void {
  if (length > maxLength) {
    throw new SpopError(
      Status.FRAME_TOO_BIG,
      `Cannot read frame: length ${length} exceeds max-frame-size ${maxLength}`,
    );
  }
  if (length < MIN_FRAME_LENGTH) {
    throw new SpopError(
      Status.INVALID_FRAME,
      `Cannot read frame: length ${length} is below the minimum of ${MIN_FRAME_LENGTH}`,
    );
  }
}

/**
 * Reads the frame whose LENGTH prefix is at `off`.
 *
 * @param buf The bytes.
 * @param view A DataView over exactly `buf`.
 * @param off Offset of the LENGTH prefix.
 * @param end End of the readable bytes.
 * @param maxLength The largest LENGTH accepted.
 * @param out Receives the frame.
 * @returns The offset after the frame, or `INCOMPLETE` (-1) when `end` comes
 * before it (a LENGTH that is too big throws instead, even then).
 * @throws {SpopError} FRAME_TOO_BIG or INVALID_FRAME (bad LENGTH, ids that
 * run past the frame).
 */
export function readFrame(
  buf: Uint8Array,
  view: DataView,
  off: number,
  end: number,
  maxLength: number,
  out: Frame,
): number {
  if (end - off < LENGTH_SIZE) return INCOMPLETE;
  const length = view.getUint32(off);
  checkLength(length, maxLength);
  const frameEnd = off + LENGTH_SIZE + length;
  if (frameEnd > end) return INCOMPLETE;
  out.buf = buf;
  out.view = view;
  out.start = off;
  out.end = frameEnd;
  out.type = buf[off + 4]!;
  out.flags = view.getUint32(off + 5);
  let pos = readVarint(buf, off + 9, frameEnd, num);
  if (pos === INCOMPLETE) throw badIds(off);
  out.streamId = num.value;
  pos = readVarint(buf, pos, frameEnd, num);
  if (pos === INCOMPLETE) throw badIds(off);
  out.frameId = num.value;
  out.payloadStart = pos;
  return frameEnd;
}

function badIds(off: number): SpopError {
  return new SpopError(
    Status.INVALID_FRAME,
    `Cannot read frame at offset ${off}: stream-id or frame-id runs past the frame`,
  );
}
