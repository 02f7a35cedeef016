/**
 * SPOP status codes and the one error class of the protocol core.
 *
 * The codes travel in the `status-code` item of DISCONNECT frames
 * (`../shared/docs/spop.md` §8). Their texts are HAProxy's own, so that an
 * operator reading HAProxy's logs and ours sees the same words.
 *
 * @module
 */

/**
 * SPOP status codes, as sent in AGENT-DISCONNECT and HAPROXY-DISCONNECT.
 *
 * @example Close with "frame is too big"
 * ```ts
 * import { Status, statusMessage } from "./errors.ts";
 *
 * const code = Status.FRAME_TOO_BIG; // 3
 * statusMessage(code); // "frame is too big"
 * ```
 */
export const Status = {
  /** Normal close. */
  NORMAL: 0,
  /** An I/O error. */
  IO_ERROR: 1,
  /** A timeout (hello or idle) expired. */
  TIMEOUT: 2,
  /** A frame is larger than the negotiated max-frame-size. */
  FRAME_TOO_BIG: 3,
  /** A malformed frame, bad ids or an unexpected frame type. */
  INVALID_FRAME: 4,
  /** The HELLO has no `supported-versions`/`version` item. */
  NO_VERSION: 5,
  /** The HELLO has no `max-frame-size` item. */
  NO_FRAME_SIZE: 6,
  /** The HELLO has no `capabilities` item. */
  NO_CAPABILITIES: 7,
  /** No supported version in common. */
  BAD_VERSION: 8,
  /** The max-frame-size is below 256 or above the peer's. */
  BAD_FRAME_SIZE: 9,
  /** A frame without FIN where fragmentation was not negotiated. */
  FRAGMENTATION_NOT_SUPPORTED: 10,
  /** A fragment of another frame arrived while one was being reassembled. */
  INTERLACED_FRAMES: 11,
  /** An ACK matches no frame that was sent. */
  FRAME_ID_NOT_FOUND: 12,
  /** A resource could not be allocated. */
  RESOURCE_ERROR: 13,
  /** Any other error. */
  UNKNOWN: 99,
} as const;

/** One of the {@linkcode Status} codes. */
export type Status = typeof Status[keyof typeof Status];

const MESSAGES: readonly string[] = [
  "normal",
  "I/O error",
  "a timeout occurred",
  "frame is too big",
  "invalid frame received",
  "version value not found",
  "max-frame-size value not found",
  "capabilities value not found",
  "unsupported version",
  "max-frame-size too big or too small",
  "fragmentation not supported",
  "invalid interlaced frames",
  "frame-id not found",
  "resource allocation error",
];

/**
 * Returns HAProxy's text for a status code; codes without one (the unassigned
 * values an agent may use, and 99) read "an unknown error occurred".
 *
 * @param code A status code from a DISCONNECT frame.
 * @returns The message HAProxy logs for that code.
 *
 * @example Usage
 * ```ts
 * import { statusMessage } from "./errors.ts";
 *
 * statusMessage(8); // "unsupported version"
 * statusMessage(42); // "an unknown error occurred"
 * ```
 */
export function statusMessage(code: number): string {
  return MESSAGES[code] ?? "an unknown error occurred";
}

/**
 * A protocol error: the peer sent something SPOP does not allow. `status` is
 * the code to close the connection with (in an AGENT-DISCONNECT frame).
 *
 * @example Usage
 * ```ts
 * import { SpopError, Status } from "./errors.ts";
 *
 * const err = new SpopError(Status.INVALID_FRAME, "Cannot read varint: more than 10 bytes");
 * err.status; // 4
 * ```
 */
export class SpopError extends Error {
  /** The SPOP status code that describes the failure. */
  readonly status: Status;

  /**
   * Creates a protocol error.
   *
   * @param status The status code to disconnect with.
   * @param message What went wrong, for logs.
   * @param options Standard error options (`cause`).
   */
  constructor(status: Status, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SpopError";
    this.status = status;
  }
}

/**
 * The error of a handler's message, reply or context used after its NOTIFY
 * was done with (acknowledged, past its deadline, or its connection closed).
 *
 * @param what What was tried, e.g. `set variable "x"`.
 * @returns `Error: Cannot set variable "x": its NOTIFY was already acknowledged`.
 */
export function lateUse(what: string): Error {
  return new Error(`Cannot ${what}: its NOTIFY was already acknowledged`);
}

/**
 * The key of the handles' internal methods (arming a handle on its state,
 * finding a handler): a symbol no module outside `lib/` holds, so that they
 * stay off the API agent authors see. Methods rather than closures kept in
 * module variables, which JavaScriptCore calls far more slowly on the hot
 * path.
 */
export const INTERNAL: unique symbol = Symbol("spoa.internal");
