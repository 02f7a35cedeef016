/**
 * One SPOP connection, from HAPROXY-HELLO to close (`../shared/docs/spop.md`
 * §4–§11, checklist §17). The session talks to its socket only through a
 * {@linkcode Conn} and uses no runtime globals besides timers and
 * `queueMicrotask`, so the same code runs on Deno, on Bun and in tests.
 *
 * - The first frame must be a HAPROXY-HELLO; the answer is an AGENT-HELLO with
 *   version 2.0, min(HAProxy's, ours) as max-frame-size and the capabilities
 *   both sides use. A health-check HELLO gets its answer, then a close.
 * - Every NOTIFY gets exactly one ACK with its stream-id and frame-id, in the
 *   order handlers finish, whatever the handlers do (throw, reject, ignore).
 * - Protocol errors close the connection with an AGENT-DISCONNECT carrying
 *   the status code; HAPROXY-DISCONNECT is answered, then the connection
 *   closes; EOF and resets close quietly.
 * - ACKs produced while handling one read leave in one write; reading pauses
 *   while too much output is queued or too many NOTIFYs are in flight.
 *
 * @module
 */

import type { Conn, ConnHandler } from "./conn.ts";
import { errorDetail, type Logger } from "./log.ts";
import type { Agent } from "./handler.ts";
import { InFlight, type InFlightHost, type Timers } from "./_inflight.ts";
import type { ReplySlot } from "./reply.ts";
import {
  decodeDisconnect,
  encodeName,
  Frame,
  FrameScanner,
  FrameType,
  FrameWriter,
  SpopError,
  Status,
  VarScope,
  writeAgentHello,
  writeDisconnect,
} from "../spop.ts";
import { Fragment, Reassembly } from "../spop/_fragments.ts";
import type { SessionConfig } from "./session_options.ts";
import { FRAME_NAMES, negotiate } from "./_handshake.ts";
import { AgentMetrics } from "../metrics/agent.ts";

export type { Timers } from "./_inflight.ts";

export {
  DEFAULT_REFERENCE_KNOBS,
  DEFAULT_SESSION_OPTIONS,
  type ReferenceKnobs,
  type SessionConfig,
  type SessionOptions,
} from "./session_options.ts";

const GLOBAL_TIMERS: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as number),
};

/** Where sessions count when nobody reads their metrics. */
let unobserved: AgentMetrics | undefined;

const State = { HELLO: 0, RUNNING: 1, DRAINING: 2, CLOSING: 3, CLOSED: 4 } as const;
type State = typeof State[keyof typeof State];

/** The write buffer's first size, and the largest kept after a burst or a large ACK. */
const WRITER_BYTES = 1024;
const WRITER_KEEP_BYTES = 64 * 1024;
/**
 * Write buffers of this thread's sessions. A session holds one only from its
 * first frame written to the flush (the connection copies or sends the bytes
 * at once), so an idle connection holds none, and a read's ACKs still leave
 * in one write.
 */
const writers: FrameWriter[] = [];
/** Writers kept in `writers` at most (more are in use only when as many flushes wait). */
const MAX_POOLED_WRITERS = 64;

/**
 * The frozen capability lists handlers see, one per combination (at most 8):
 * every connection with the same capabilities shares one.
 */
const capabilityLists = new Map<string, readonly string[]>();

/**
 * The frame every session's scanner fills: a session uses a frame before its
 * `onData` returns (what must outlive it is copied), so no other session's
 * scanner can run in between.
 */
const FRAME = new Frame();

/** The variable an otherwise empty ACK unsets: `txn.<prefix>._`, which never exists. */
const PADDING_NAME = encodeName("_");

/**
 * A DISCONNECT message is cut to this many characters, each made ASCII, so
 * that it fits any frame size (256 at least).
 */
const MAX_REASON = 200;

/**
 * The state machine of one connection. The adapter feeds it socket events
 * through {@linkcode ConnHandler}; `shutdown()` ends it gracefully.
 */
export class Session implements ConnHandler {
  readonly #conn: Conn;
  readonly #opts: SessionConfig;
  readonly #log: Logger;
  readonly #timers: Timers;
  readonly #scanner: FrameScanner;
  /** Lent by `writers` while there is output to flush. */
  #writer: FrameWriter | undefined;
  readonly #inflight: InFlight;
  readonly #metrics: AgentMetrics;
  readonly #values: Float64Array;
  /** Made when first asked for (a server uses `onClosed`, which costs a connection less). */
  #closed: Promise<void> | undefined;
  #resolveClosed: (() => void) | undefined;

  /**
   * Called once the connection is closed, with the session: one function can
   * serve every session of a server.
   */
  onClosed: ((session: Session) => void) | undefined;

  #state: State = State.HELLO;
  #maxFrameSize: number;
  #fragments: Reassembly | undefined;
  #helloTimer: unknown;
  #inFlight = 0;
  #notifies = 0;
  #inData = false;
  #flushQueued = false;
  #outputFull = false;
  #readPaused = false;
  /** When queued output went above `maxQueuedBytes`. */
  #outputFullSince = 0;
  /** When the frame now buffered in part started to arrive (while reading), or -1. */
  #partialSince = -1;

  /**
   * @param conn The connection.
   * @param agent The handlers.
   * @param options Behaviour; see {@linkcode DEFAULT_SESSION_OPTIONS}.
   * @param log Where this connection logs.
   * @param timers Timer functions (the global ones by default).
   * @param metrics Where to count frames, messages and bytes.
   */
  constructor(
    conn: Conn,
    agent: Agent,
    options: SessionConfig,
    log: Logger,
    timers: Timers = GLOBAL_TIMERS,
    metrics: AgentMetrics = unobserved ??= new AgentMetrics(),
  ) {
    this.#conn = conn;
    this.#metrics = metrics;
    this.#values = metrics.values;
    this.#opts = options;
    this.#log = log;
    this.#timers = timers;
    this.#maxFrameSize = options.maxFrameSize;
    this.#scanner = new FrameScanner(options.maxFrameSize, FRAME);
    this.#inflight = new InFlight(agent, new Session.#Host(this), options, log, timers, metrics);
    this.#helloTimer = timers.setTimeout(() => {
      this.#helloTimer = undefined;
      this.#timeout(`no HAPROXY-HELLO within ${options.helloTimeout} ms`);
    }, options.helloTimeout);
  }

  /** Resolves once the connection is closed. */
  get closed(): Promise<void> {
    if (this.#closed === undefined) {
      this.#closed = this.#state === State.CLOSED
        ? Promise.resolve()
        : new Promise((resolve) => this.#resolveClosed = resolve);
    }
    return this.#closed;
  }

  /** NOTIFYs received and not yet acknowledged. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Handlers still running after their NOTIFY was acknowledged at the deadline, or dropped. */
  get lateHandlers(): number {
    return this.#inflight.late;
  }

  /**
   * Bytes the connection's buffers hold now: frame scanner, write buffer
   * (while output waits for the flush), reassembly, and the replies and
   * message copies of NOTIFYs in flight. Each grows for a large frame and
   * shrinks back once it is done; what the thread's pools keep is
   * `pooledBytes()` of `_inflight.ts`.
   */
  get bufferBytes(): number {
    return this.#scanner.capacity + (this.#writer?.capacity ?? 0) +
      (this.#fragments?.capacity ?? 0) + this.#inflight.bufferBytes;
  }

  /** Timers armed for this connection (HELLO, deadlines, `-t` delays). */
  get armedTimers(): number {
    return this.#inflight.armedTimers + (this.#helloTimer === undefined ? 0 : 1);
  }

  /**
   * What the NOTIFY manager needs of the session: one small object per
   * session, its methods shared (closures would cost each connection more).
   */
  static readonly #Host = class implements InFlightHost {
    readonly #session: Session;

    constructor(session: Session) {
      this.#session = session;
    }

    acked(streamId: number | bigint, frameId: number | bigint, reply: ReplySlot | undefined) {
      this.#session.#writeAckOf(streamId, frameId, reply);
      this.#session.#settled();
    }

    settled(): void {
      this.#session.#settled();
    }

    lateChanged(): void {
      this.#session.#updateReading();
    }

    get open(): boolean {
      return this.#session.#state < State.CLOSING;
    }
  };

  /**
   * Ends the session gracefully: stop reading, let in-flight NOTIFYs get
   * their ACKs, send AGENT-DISCONNECT (status 0), close.
   *
   * @returns The `closed` promise.
   */
  shutdown(): Promise<void> {
    if (this.#state === State.HELLO) this.#disconnect(Status.NORMAL, "agent is stopping");
    else if (this.#state === State.RUNNING) {
      this.#inflight.abortSignals();
      this.#drain();
    }
    return this.closed;
  }

  /** Closes at once, without DISCONNECT, queued output or waiting for handlers. */
  abort(): void {
    if (this.#state === State.CLOSED) return;
    this.#state = State.CLOSING;
    this.#clearHelloTimer();
    this.#releaseWriter(); // ACKs waiting for the queued flush must not follow destroy().
    this.#inflight.closeAll();
    this.#conn.destroy();
  }

  onData(bytes: Uint8Array, length: number): void {
    if (this.#state >= State.DRAINING) return;
    this.#inData = true;
    this.#values[this.#metrics.bytesIn]! += length;
    try {
      this.#scanner.push(bytes, length);
      for (let frame = this.#scanner.next(); frame !== null; frame = this.#scanner.next()) {
        this.#frame(frame);
        if (this.#state >= State.DRAINING) break;
      }
    } catch (err) {
      this.#fail(err);
    }
    this.#inData = false;
    this.#inflight.sealPlain();
    this.#flush();
    if (this.#scanner.buffered === 0) this.#partialSince = -1;
    else if (this.#partialSince < 0) this.#partialSince = this.#now();
  }

  /**
   * Closes the connection (status 2) when a frame has stayed incomplete for
   * `frameTimeout` while we were reading: a peer that trickles or stalls
   * mid-frame cannot hold a connection and its buffer forever. A peer that
   * has not read our queued output for `frameTimeout` is cut off the same way
   * (without DISCONNECT, which it would not read). The server calls this
   * about once a second.
   *
   * @param now The current time in milliseconds.
   */
  expire(now: number): void {
    if (this.#outputFull && this.#state < State.CLOSED) {
      // A peer that stopped reading our output: it cannot read a DISCONNECT either.
      if (now - this.#outputFullSince >= this.#opts.frameTimeout) {
        this.#log.warn(`peer read no output for ${now - this.#outputFullSince} ms; closing`);
        this.abort();
      }
      return;
    }
    const since = this.#partialSince;
    if (since < 0 || this.#readPaused || this.#state >= State.CLOSING) return;
    if (now - since >= this.#opts.frameTimeout) {
      this.#timeout(`frame still incomplete after ${now - since} ms`);
    }
  }

  #now(): number {
    return this.#timers.clock?.() ?? Date.now();
  }

  onDrain(): void {
    if (!this.#outputFull) return;
    this.#outputFull = false;
    this.#updateReading();
  }

  /**
   * The peer finished sending: NOTIFYs in flight still get their ACKs, then
   * AGENT-DISCONNECT (status 0) and the close, which sends what is queued.
   */
  onEnd(): void {
    if (this.#state === State.RUNNING) this.#drain();
    else if (this.#state === State.HELLO) this.#closeAfterOutput();
  }

  /** Closes without a DISCONNECT once what is written went out (health checks, FIN before HELLO). */
  #closeAfterOutput(): void {
    this.#state = State.CLOSING;
    this.#clearHelloTimer();
    this.#flush();
    this.#conn.close();
  }

  onClose(): void {
    if (this.#state === State.CLOSED) return;
    if (this.#state < State.CLOSING && this.#log.debugEnabled) {
      this.#log.debug(`closed by peer with ${this.#inFlight} NOTIFY in flight`);
    }
    this.#state = State.CLOSED;
    this.#clearHelloTimer();
    this.#inflight.closeAll();
    this.#releaseWriter();
    this.#scanner.release();
    this.#fragments?.release();
    this.#resolveClosed?.();
    this.onClosed?.(this);
  }

  #frame(frame: Frame): void {
    this.#values[this.#metrics.framesIn[frame.type]!]!++;
    if (this.#log.debugEnabled) {
      const name = FRAME_NAMES[frame.type] ?? `type ${frame.type}`;
      const flags = (frame.fin ? "" : " no-FIN") + (frame.abort ? " ABORT" : "");
      this.#log.debug(
        `<- ${name} stream=${frame.streamId} frame=${frame.frameId} length=${frame.length}${flags}`,
      );
    }
    if (this.#state === State.HELLO) return this.#hello(frame);
    switch (frame.type) {
      case FrameType.NOTIFY:
      case FrameType.UNSET:
        if (frame.fin && frame.type === FrameType.NOTIFY && !this.#fragments?.open) {
          return this.#notify(
            frame.buf,
            frame.payloadStart,
            frame.end,
            frame.streamId,
            frame.frameId,
          );
        }
        return this.#fragment(frame);
      case FrameType.HAPROXY_DISCONNECT:
        return this.#peerDisconnect(frame);
      case FrameType.HAPROXY_HELLO:
      case FrameType.AGENT_HELLO:
      case FrameType.AGENT_DISCONNECT:
      case FrameType.ACK:
        throw new SpopError(
          Status.INVALID_FRAME,
          `Cannot accept ${FRAME_NAMES[frame.type]} frame after the handshake`,
        );
      default:
        if (this.#log.debugEnabled) this.#log.debug(`skipping unknown frame type ${frame.type}`);
    }
  }

  #hello(frame: Frame): void {
    const { hello, size, caps } = negotiate(frame, this.#opts);
    if (caps.includes("fragmentation")) {
      this.#fragments = new Reassembly(this.#opts.maxReassembledSize);
    }
    const capabilities = caps.join(",");
    this.#inflight.connection = {
      engineId: hello.engineId,
      remote: this.#conn.remote,
      capabilities: capabilityLists.get(capabilities) ??
        capabilityLists.set(capabilities, Object.freeze(caps)).get(capabilities)!,
      log: this.#log,
    };
    writeAgentHello(this.#lendWriter(), { maxFrameSize: size, capabilities });
    this.#clearHelloTimer();
    this.#maxFrameSize = size;
    this.#scanner.maxLength = size;
    if (this.#log.debugEnabled) {
      this.#log.debug(
        `handshake: HAProxy offers versions "${hello.supportedVersions}", max-frame-size ${hello.maxFrameSize}, capabilities "${hello.capabilities}"${
          hello.healthcheck ? ", health check" : ""
        }${
          hello.engineId ? `, engine-id ${hello.engineId}` : ""
        }; agent answers 2.0, ${size}, "${capabilities}"`,
      );
    }
    this.#metrics.hello(hello.healthcheck, capabilities);
    if (hello.healthcheck) return this.#closeAfterOutput();
    this.#state = State.RUNNING;
  }

  #fragment(frame: Frame): void {
    const fragments = this.#fragments;
    if (fragments === undefined) {
      throw new SpopError(
        Status.FRAGMENTATION_NOT_SUPPORTED,
        `Cannot accept fragment of frame ${frame.streamId}/${frame.frameId}: fragmentation was not negotiated`,
      );
    }
    const result = fragments.add(frame);
    if (result === Fragment.COMPLETE) {
      const payload = fragments.bytes();
      this.#notify(payload, 0, payload.length, fragments.streamId, fragments.frameId);
    } else if (result === Fragment.ABORTED && this.#log.debugEnabled) {
      this.#log.debug(`frame ${frame.streamId}/${frame.frameId} aborted by HAProxy`);
    }
  }

  #notify(
    buf: Uint8Array,
    start: number,
    end: number,
    streamId: number | bigint,
    frameId: number | bigint,
  ): void {
    this.#notifies++;
    this.#values[this.#metrics.inFlight]!++;
    if (++this.#inFlight >= this.#opts.maxInFlight) this.#updateReading();
    const reply = this.#inflight.notify(buf, start, end, streamId, frameId);
    if (reply !== null) {
      // Answered at once, the common case.
      if (this.#state < State.CLOSING) this.#writeAck(streamId, frameId, reply);
      this.#inflight.answered();
      this.#settled();
    }
    const limit = this.#opts.closeAfterFrames;
    if (limit > 0 && this.#notifies >= limit && this.#state === State.RUNNING) {
      if (this.#log.debugEnabled) this.#log.debug(`closing after ${limit} frames (-f)`);
      this.#drain();
    }
  }

  /** Writes the ACK of a NOTIFY whose handlers are done (or whose deadline passed). */
  #writeAckOf(streamId: number | bigint, frameId: number | bigint, reply: ReplySlot | undefined) {
    if (this.#state >= State.CLOSING) return;
    this.#writeAck(streamId, frameId, reply);
    if (!this.#inData) this.#queueFlush();
  }

  /** Writes one ACK frame (the actions must fit the negotiated frame size). */
  #writeAck(
    streamId: number | bigint,
    frameId: number | bigint,
    reply: ReplySlot | undefined,
  ): void {
    const w = this.#lendWriter();
    this.#values[this.#metrics.acks]!++;
    w.begin(FrameType.ACK, streamId, frameId);
    this.#actions(w, reply);
    try {
      w.end(this.#maxFrameSize);
    } catch (err) {
      if (!(err instanceof RangeError)) throw err;
      this.#log.error(`ACK for ${streamId}/${frameId} dropped its actions: ${err.message}`);
      w.begin(FrameType.ACK, streamId, frameId);
      this.#actions(w, undefined);
      w.end();
    }
    if (this.#log.debugEnabled) {
      this.#log.debug(`-> ACK stream=${streamId} frame=${frameId} actions=${reply?.count ?? 0}`);
    }
  }

  /** A NOTIFY left the in-flight count (acknowledged, or dropped on close). */
  #settled(): void {
    this.#values[this.#metrics.inFlight]!--;
    if (this.#inFlight-- >= this.#opts.maxInFlight) this.#updateReading();
    if (this.#state === State.DRAINING && this.#inFlight === 0) this.#finishDrain();
  }

  /** Writes an ACK's actions, padding an empty list unless allowed (§7.3). */
  #actions(w: FrameWriter, reply: ReplySlot | undefined): void {
    if (reply !== undefined && reply.count > 0) w.appendWriter(reply.writer);
    else if (!this.#opts.emptyAcks) w.unsetVar(VarScope.TXN, PADDING_NAME);
  }

  #peerDisconnect(frame: Frame): void {
    const { status, message } = decodeDisconnect(frame);
    this.#metrics.haproxyDisconnect(status);
    const line = `HAProxy disconnects: status ${status} (${message})`;
    if (status === Status.NORMAL) this.#log.debug(line, { status, event: "haproxy-disconnect" });
    else this.#log.info(line, { status, reason: message, event: "haproxy-disconnect" });
    // Echo HAProxy's code; a value no status can have (HAProxy never sends
    // one) is answered as "unknown" rather than breaking the reply.
    const valid = Number.isInteger(status) && status >= 0 && status <= 0xffff_ffff;
    this.#disconnect(valid ? status : Status.UNKNOWN, undefined);
  }

  #drain(): void {
    this.#state = State.DRAINING;
    this.#updateReading();
    if (this.#inFlight === 0) this.#finishDrain();
  }

  #finishDrain(): void {
    this.#disconnect(Status.NORMAL, undefined);
  }

  /**
   * Closes a peer that was too slow (status 2), with an info line: a scanner
   * or a slowloris leaves a trace at the default level. There is at most one
   * such line per connection, and a connection lives `helloTimeout` or
   * `frameTimeout` first, so `--max-connections` bounds their rate.
   */
  #timeout(reason: string): void {
    if (this.#state >= State.CLOSING) return;
    this.#log.info(`${this.#conn.remote}: ${reason}; closing with status ${Status.TIMEOUT}`, {
      status: Status.TIMEOUT,
      event: "agent-disconnect",
    });
    this.#disconnect(Status.TIMEOUT, reason);
  }

  #fail(err: unknown): void {
    if (err instanceof SpopError) {
      this.#log.warn(`protocol error, closing with status ${err.status}: ${err.message}`, {
        status: err.status,
        event: "agent-disconnect",
      });
      this.#disconnect(err.status, err.message);
      return;
    }
    this.#log.error(`internal error, closing with status ${Status.UNKNOWN}: ${errorDetail(err)}`, {
      status: Status.UNKNOWN,
      event: "agent-disconnect",
    });
    this.#disconnect(Status.UNKNOWN, "internal error");
  }

  /** Sends AGENT-DISCONNECT and closes; later calls do nothing. */
  #disconnect(status: number, reason: string | undefined): void {
    if (this.#state >= State.CLOSING) return;
    this.#state = State.CLOSING;
    this.#clearHelloTimer();
    const w = this.#lendWriter();
    w.cancel();
    const message = reason === undefined
      ? undefined
      : reason.slice(0, MAX_REASON).replace(/[^\x20-\x7e]/g, "?");
    writeDisconnect(w, FrameType.AGENT_DISCONNECT, status, message);
    this.#metrics.agentDisconnect(status);
    if (this.#log.debugEnabled) this.#log.debug(`-> AGENT-DISCONNECT status=${status}`);
    this.#flush();
    this.#conn.close();
  }

  #queueFlush(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => {
      this.#flushQueued = false;
      this.#flush();
    });
  }

  #flush(): void {
    const w = this.#writer;
    if (w === undefined) return;
    if (w.size === 0 || this.#state === State.CLOSED) {
      this.#releaseWriter();
      return;
    }
    this.#values[this.#metrics.bytesOut]! += w.size;
    this.#conn.write(w.buffer(), w.size);
    this.#releaseWriter();
    if (!this.#outputFull && this.#conn.queued > this.#opts.maxQueuedBytes) {
      this.#outputFull = true;
      this.#outputFullSince = this.#now();
      this.#updateReading();
    }
  }

  /** The session's write buffer, lent from `writers` when it has none. */
  #lendWriter(): FrameWriter {
    return this.#writer ??= writers.pop() ?? new FrameWriter(WRITER_BYTES);
  }

  /** Gives the write buffer back, empty (one grown large for a burst is let go). */
  #releaseWriter(): void {
    const w = this.#writer;
    if (w === undefined) return;
    this.#writer = undefined;
    w.shrink(WRITER_KEEP_BYTES, WRITER_BYTES);
    if (writers.length < MAX_POOLED_WRITERS) writers.push(w);
  }

  #updateReading(): void {
    if (this.#state >= State.CLOSING) return;
    const pause = this.#state === State.DRAINING || this.#outputFull ||
      this.#inFlight >= this.#opts.maxInFlight ||
      this.#inflight.late >= this.#opts.maxLateHandlers;
    if (pause === this.#readPaused) return;
    this.#readPaused = pause;
    if (pause) this.#conn.pause();
    else {
      // Time spent paused by us does not count against the peer.
      if (this.#partialSince >= 0) this.#partialSince = this.#now();
      this.#conn.resume();
    }
  }

  #clearHelloTimer(): void {
    if (this.#helloTimer === undefined) return;
    this.#timers.clearTimeout(this.#helloTimer);
    this.#helloTimer = undefined;
  }
}
