/**
 * What a session is configured with (`session.ts`): the options an agent
 * author may set, the test knobs of HAProxy's example agent, and their
 * defaults.
 *
 * @module
 */

/** How a session behaves. */
export interface SessionOptions {
  /** Our largest frame (`-m`); the answer is min(HAProxy's, this). */
  maxFrameSize: number;
  /** Announce `pipelining` when HAProxy offers it. */
  pipelining: boolean;
  /** Announce `async` when HAProxy offers it (HAProxy ≤ 3.0). */
  async: boolean;
  /** Announce `fragmentation` and reassemble fragmented NOTIFYs (HAProxy 2.x). */
  fragmentation: boolean;
  /** Milliseconds to wait for HAPROXY-HELLO before closing. */
  helloTimeout: number;
  /** Allow ACKs without actions (HAProxy 3.1.0 hangs on them, §7.3). */
  emptyAcks: boolean;
  /** NOTIFYs in flight on one connection before reading pauses. */
  maxInFlight: number;
  /** Queued output bytes before reading pauses. */
  maxQueuedBytes: number;
  /** The largest reassembled NOTIFY payload (with `fragmentation`). */
  maxReassembledSize: number;
  /**
   * Milliseconds handlers of one NOTIFY may take before it is acknowledged
   * without their actions (with a warning); 0 waits forever.
   */
  handlerTimeout: number;
  /** Milliseconds a frame may stay incomplete before the connection is closed. */
  frameTimeout: number;
  /**
   * Handlers still running after their NOTIFY was acknowledged at the
   * deadline (late handlers) at which reading pauses until some finish.
   */
  maxLateHandlers: number;
}

/**
 * The test knobs of HAProxy's example agent (`-t`, `-f`), which the `spoa`
 * command keeps; an agent of one's own has no use for them.
 */
export interface ReferenceKnobs {
  /** Milliseconds to hold each ACK back (`-t`, to exercise HAProxy's timeouts). */
  replyDelay: number;
  /** Close with AGENT-DISCONNECT after this many NOTIFYs (`-f`); 0 never. */
  closeAfterFrames: number;
}

/** Everything a session is configured with. */
export type SessionConfig = SessionOptions & ReferenceKnobs;

/** The defaults: those of HAProxy's example agent where it has one. */
export const DEFAULT_SESSION_OPTIONS: Readonly<SessionOptions> = Object.freeze({
  maxFrameSize: 16384,
  pipelining: true,
  async: false,
  fragmentation: false,
  helloTimeout: 5000,
  emptyAcks: false,
  maxInFlight: 1024,
  maxQueuedBytes: 1 << 20,
  maxReassembledSize: 1 << 20,
  handlerTimeout: 50,
  frameTimeout: 5000,
  maxLateHandlers: 1024,
});

/** The knobs off: ACKs at once, connections never closed after N NOTIFYs. */
export const DEFAULT_REFERENCE_KNOBS: Readonly<ReferenceKnobs> = Object.freeze({
  replyDelay: 0,
  closeAfterFrames: 0,
});
