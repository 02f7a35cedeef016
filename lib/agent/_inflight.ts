/**
 * The NOTIFYs of one connection while their handlers run: which handler each
 * message goes to, the handles handlers get, deadlines, signals, and the
 * handlers that outlive their NOTIFY. The session owns the wire; this module
 * owns handler lifetimes.
 *
 * Handles (message, reply, context) are sealed when their NOTIFY is done, so
 * that nothing kept by a handler reaches another NOTIFY:
 *
 * - a plain function gets the connection's pooled handles, armed for the
 *   duration of the call only (no allocation per NOTIFY);
 * - an `async` function gets handles of its own, sealed when its NOTIFY is
 *   acknowledged (or abandoned: deadline, close).
 *
 * @module
 */

import { bindContext, type ConnectionInfo, Context, type ContextSlot } from "./context.ts";
import { findHandler, type HandlerEntry, slotsOf } from "./handler.ts";
import { type AgentMetrics, NO_HANDLER, PLAIN_SAMPLE } from "../metrics/agent.ts";
import type { Agent } from "./handler.ts";
import { errorDetail, type Logger } from "./log.ts";
import { bindMessage, Message, MessageSlot } from "./message.ts";
import { bindReply, Reply, ReplySlot } from "./reply.ts";
import { INTERNAL } from "../spop/errors.ts";
import { MessageReader } from "../spop.ts";

/** Timer functions; injectable for tests. */
export interface Timers {
  /** Calls `fn` after `ms` milliseconds; returns a handle. */
  setTimeout(fn: () => void, ms: number): unknown;
  /** Cancels a handle from `setTimeout`. */
  clearTimeout(handle: unknown): void;
  /** The current time in milliseconds; `Date.now` by default. */
  clock?(): number;
}

/** What the session does for its NOTIFYs. */
export interface InFlightHost {
  /**
   * A NOTIFY is done: write its ACK (`reply` undefined for one without
   * actions) and take it off the in-flight count.
   */
  acked(streamId: number | bigint, frameId: number | bigint, reply: ReplySlot | undefined): void;
  /** A NOTIFY was dropped without an ACK: take it off the in-flight count. */
  settled(): void;
  /** The number of late handlers changed across the bound (reading may pause or resume). */
  lateChanged(): void;
  /** Whether NOTIFYs can still be answered (false once closing). */
  readonly open: boolean;
}

/** How NOTIFYs are handled. */
export interface InFlightOptions {
  /** Milliseconds before a NOTIFY is acknowledged without its handlers; 0 never. */
  handlerTimeout: number;
  /** Milliseconds to hold each ACK back (`-t`). */
  replyDelay: number;
  /** Late handlers (still running after their NOTIFY) at which reading pauses. */
  maxLateHandlers: number;
}

/** Plain calls on this thread so far, every connection's, for sampling their durations. */
let plainCalls = 0;

/**
 * Pendings not in use, shared by this thread's connections: an idle
 * connection holds none. A NOTIFY handled at once takes `spare` and gives it
 * back before the next one arrives, without touching `pool`.
 */
let spare: Pending | undefined;
const pool: Pending[] = [];
/** Pendings kept in `pool` at most (more are in use only when as many NOTIFYs wait). */
const MAX_POOLED = 1024;

/**
 * What every connection of this thread shares while it reads a NOTIFY: the
 * message reader, and the handles of plain-function calls, armed during a
 * call only. A NOTIFY is read and its plain handlers called within one
 * `onData`, which no other connection's code can interrupt.
 */
const reader = new MessageReader();
const plainMessage = new Message();
const plainReply = new Reply();
const plainContext = new Context();
/** Whether the plain-call handles may be armed (see {@linkcode InFlight.sealPlain}). */
let plainArmed = false;

/** One NOTIFY waiting for its handlers; reused once done. */
class Pending implements ContextSlot {
  streamId: number | bigint = 0;
  frameId: number | bigint = 0;
  /** Bumped each time the NOTIFY is done: a handler settling later sees another number. */
  gen = 0;
  /** Handlers that have not finished. */
  waiting = 0;
  /** The handler deadline's timer. */
  deadline: unknown = undefined;
  /** The `-t` delay's timer. */
  delay: unknown = undefined;
  /** Where it is in the active list, or -1. */
  index = -1;
  /** In the thread's pool: a second recycle must not list it twice. */
  pooled = false;
  controller: AbortController | undefined = undefined;
  connection!: ConnectionInfo;
  readonly reply = new ReplySlot();
  /** One slot per handled message of the NOTIFY; `used` of them are in use. */
  readonly messages: MessageSlot[] = [];
  used = 0;
  /** Handles given to `async` handlers (messages, replies, contexts): sealed when the NOTIFY is done. */
  readonly issued: (Message | Reply | Context)[] = [];
  /** The handlers still running, for the deadline's count by message. */
  readonly running: HandlerEntry[] = [];

  signal(): AbortSignal {
    this.controller ??= new AbortController();
    return this.controller.signal;
  }

  nextSlot(): MessageSlot {
    if (this.used === this.messages.length) this.messages.push(new MessageSlot());
    return this.messages[this.used++]!;
  }
}

/** The NOTIFYs of one connection. */
export class InFlight {
  readonly #agent: Agent;
  readonly #host: InFlightHost;
  readonly #opts: InFlightOptions;
  readonly #log: Logger;
  readonly #timers: Timers;
  readonly #metrics: AgentMetrics;
  readonly #values: Float64Array;
  readonly #active: Pending[] = [];
  #connection: ConnectionInfo | undefined;
  /** The NOTIFY answered at once, until its ACK is written. */
  #answering: Pending | undefined;
  /** Handlers still running after their NOTIFY was done (deadline or close). */
  #late = 0;

  constructor(
    agent: Agent,
    host: InFlightHost,
    options: InFlightOptions,
    log: Logger,
    timers: Timers,
    metrics: AgentMetrics,
  ) {
    this.#agent = agent;
    this.#host = host;
    this.#opts = options;
    this.#log = log;
    this.#timers = timers;
    this.#metrics = metrics;
    this.#values = metrics.values;
  }

  /** Handlers still running after their NOTIFY was acknowledged at the deadline, or abandoned. */
  get late(): number {
    return this.#late;
  }

  /** Bytes held by the replies and message copies of NOTIFYs in flight. */
  get bufferBytes(): number {
    return bytesOf(this.#active);
  }

  /** Timers armed for NOTIFYs (deadlines and `-t` delays). */
  get armedTimers(): number {
    let n = 0;
    for (const p of this.#active) {
      n += (p.deadline !== undefined ? 1 : 0) + (p.delay !== undefined ? 1 : 0);
    }
    return n;
  }

  /**
   * What handlers' contexts tell about the connection (set after the HELLO).
   *
   * @param info The connection's details.
   */
  set connection(info: ConnectionInfo) {
    this.#connection = info;
  }

  /**
   * Runs the handlers of one NOTIFY's messages.
   *
   * @param buf The bytes holding the payload.
   * @param start Where the LIST-OF-MESSAGES starts.
   * @param end Where it ends.
   * @param streamId The NOTIFY's stream-id.
   * @param frameId The NOTIFY's frame-id.
   * @returns The reply when the handlers finished during the call (the common
   * case): the caller writes the ACK, then calls
   * {@linkcode InFlight.answered}. `null` when the NOTIFY stays in flight:
   * `acked()` of the host follows.
   * @throws {SpopError} For a malformed message: the NOTIFY is abandoned.
   */
  notify(
    buf: Uint8Array,
    start: number,
    end: number,
    streamId: number | bigint,
    frameId: number | bigint,
  ): ReplySlot | null {
    const pending = this.#acquire(streamId, frameId);
    reader.reset(buf, start, end);
    for (;;) {
      try {
        if (!reader.next()) break;
      } catch (err) {
        this.#abandon(pending, undefined);
        throw err;
      }
      const entry = findHandler(this.#agent, reader, buf);
      if (entry === undefined) {
        this.#values[this.#metrics.message(NO_HANDLER).count]!++;
        if (this.#log.debugEnabled) this.#log.debug(`no handler for message "${reader.name()}"`);
        continue;
      }
      this.#values[slotsOf(entry, this.#metrics).count]!++;
      const slot = pending.nextSlot();
      slot.load(reader, buf);
      if (entry.async) this.#callAsync(pending, entry, slot);
      else this.#callPlain(pending, entry, slot);
    }
    if (pending.waiting > 0) {
      if (this.#opts.handlerTimeout > 0) this.#armDeadline(pending);
    } else if (pending.issued.length > 0 || this.#opts.replyDelay > 0) this.#complete(pending);
    else {
      // Handled at once: no handle to seal, no timer, not listed.
      this.#answering = pending;
      return pending.reply;
    }
    return null;
  }

  /** The ACK of the NOTIFY that {@linkcode InFlight.notify} answered at once was written. */
  answered(): void {
    const pending = this.#answering!;
    this.#answering = undefined;
    this.#reuse(pending);
  }

  /**
   * Aborts the signals of every NOTIFY in flight (the agent is stopping);
   * their handlers may still finish and be acknowledged.
   */
  abortSignals(): void {
    for (const p of this.#active) {
      p.controller?.abort(new DOMException("the agent is stopping", "AbortError"));
    }
  }

  /**
   * The connection closed: every NOTIFY in flight is abandoned quietly (no
   * ACK, no log), its timers cleared, its signal aborted and its handles
   * sealed. Handlers still running are counted as late until they settle.
   */
  closeAll(): void {
    if (this.#active.length === 0) return; // The usual close: no error object to make.
    const reason = new DOMException("the connection closed", "AbortError");
    while (this.#active.length > 0) this.#abandon(this.#active[this.#active.length - 1]!, reason);
  }

  #callPlain(pending: Pending, entry: HandlerEntry, slot: MessageSlot): void {
    const message = plainMessage;
    message[INTERNAL](slot);
    plainReply[INTERNAL](pending.reply);
    if (entry.wantsContext) plainContext[INTERNAL](pending);
    plainArmed = true;
    let result: void | PromiseLike<void>;
    // One plain call in PLAIN_SAMPLE is timed, and stands for the others.
    const start = this.#metrics.timing && ++plainCalls % PLAIN_SAMPLE === 0 ? performance.now() : 0;
    try {
      result = entry.fn(message, plainReply, plainContext);
    } catch (err) {
      this.#failed(entry, err);
      return;
    } finally {
      if (start !== 0) this.#observe(entry, start, PLAIN_SAMPLE);
    }
    // `!= null`: a handler typed `void` may return anything, null included.
    if (result != null && typeof result.then === "function") this.#refuse(entry, result);
  }

  /**
   * Seals the handles of plain-function calls. They stay armed from one call
   * to the next within one read (no other code runs in between: timers and
   * promise callbacks wait for the read to return), and the session calls
   * this before it returns, so that nothing a handler kept works later.
   */
  sealPlain(): void {
    if (!plainArmed) return;
    plainArmed = false;
    plainMessage[INTERNAL](null);
    plainReply[INTERNAL](null);
    plainContext[INTERNAL](null);
  }

  /** A plain function returned a promise: its handles are sealed already, so it cannot answer. */
  #refuse(entry: HandlerEntry, result: PromiseLike<void>): void {
    Promise.resolve(result).then(undefined, () => {});
    if (entry.refused) return;
    entry.refused = true;
    this.#log.error(
      `handler for message "${entry.name}" returned a promise but is not an async function: ` +
        `its message, reply and context are valid during the call only, so what it does ` +
        `later is lost; declare it async`,
      { message_name: entry.name, event: "handler-refused" },
    );
  }

  #callAsync(pending: Pending, entry: HandlerEntry, slot: MessageSlot): void {
    const message = new Message();
    const reply = new Reply();
    bindMessage(message, slot);
    bindReply(reply, pending.reply);
    pending.issued.push(message, reply);
    let context: Context | undefined;
    if (entry.wantsContext) {
      context = new Context();
      bindContext(context, pending);
      pending.issued.push(context);
    }
    let result: void | PromiseLike<void>;
    const start = this.#metrics.timing ? performance.now() : 0;
    try {
      result = entry.fn(message, reply, context as Context);
    } catch (err) {
      if (start !== 0) this.#observe(entry, start);
      this.#failed(entry, err);
      return;
    }
    if (result == null || typeof result.then !== "function") {
      if (start !== 0) this.#observe(entry, start);
      return;
    }
    pending.running.push(entry);
    // The handler's synchronous part read the read buffer; the rest reads a copy.
    slot.detach();
    pending.waiting++;
    this.#track(pending);
    const gen = pending.gen;
    // Promise.resolve() settles once even for a thenable that calls back twice.
    Promise.resolve(result).then(
      () => this.#handlerDone(pending, gen, entry, false, undefined, start),
      (err: unknown) => this.#handlerDone(pending, gen, entry, true, err, start),
    );
  }

  #handlerDone(
    pending: Pending,
    gen: number,
    entry: HandlerEntry,
    failed: boolean,
    err: unknown,
    start: number,
  ): void {
    if (start !== 0) this.#observe(entry, start);
    if (pending.gen !== gen) {
      // Its NOTIFY is gone: acknowledged at the deadline, or the connection closed.
      const atBound = this.#late-- === this.#opts.maxLateHandlers;
      if (failed && this.#host.open && this.#log.debugEnabled) {
        this.#log.debug(`late handler for message "${entry.name}" failed: ${errorDetail(err)}`);
      }
      if (atBound) this.#host.lateChanged();
      return;
    }
    if (failed) this.#failed(entry, err);
    const running = pending.running;
    running.splice(running.indexOf(entry), 1);
    if (--pending.waiting > 0) return;
    if (pending.deadline !== undefined) {
      this.#timers.clearTimeout(pending.deadline);
      pending.deadline = undefined;
    }
    this.#complete(pending);
  }

  /** Counts a handler's duration (metrics with timing only), for `count` calls. */
  #observe(entry: HandlerEntry, start: number, count = 1): void {
    slotsOf(entry, this.#metrics).duration.observeMany((performance.now() - start) / 1000, count);
  }

  #failed(entry: HandlerEntry, err: unknown): void {
    slotsOf(entry, this.#metrics).errors.inc();
    this.#log.error(`handler for message "${entry.name}" failed: ${errorDetail(err)}`, {
      message_name: entry.name,
      event: "handler-error",
    });
  }

  #armDeadline(pending: Pending): void {
    pending.deadline = this.#timers.setTimeout(
      () => this.#deadline(pending),
      this.#opts.handlerTimeout,
    );
  }

  /**
   * Handlers outlived `handlerTimeout`: acknowledge now, without actions, so
   * HAProxy is not left waiting; the handlers' signal aborts and their
   * handles are sealed.
   */
  #deadline(pending: Pending): void {
    pending.deadline = undefined;
    for (const entry of pending.running) slotsOf(entry, this.#metrics).timeouts.inc();
    const ms = this.#opts.handlerTimeout;
    if (this.#host.open) {
      this.#log.warn(
        `handlers for NOTIFY ${pending.streamId}/${pending.frameId} did not finish within ${ms} ms; acknowledged without actions`,
        { stream_id: pending.streamId, frame_id: pending.frameId, event: "handler-timeout" },
      );
    }
    pending.controller?.abort(
      new DOMException(`handlers did not finish within ${ms} ms`, "TimeoutError"),
    );
    this.#addLate(pending.waiting);
    const { streamId, frameId } = pending;
    this.#recycle(pending);
    this.#host.acked(streamId, frameId, undefined);
  }

  #complete(pending: Pending): void {
    if (pending.issued.length > 0) this.#seal(pending);
    const delay = this.#opts.replyDelay;
    if (delay > 0) {
      this.#track(pending);
      pending.delay = this.#timers.setTimeout(() => {
        pending.delay = undefined;
        this.#ack(pending);
      }, delay);
    } else this.#ack(pending);
  }

  #ack(pending: Pending): void {
    const reply = pending.reply;
    const gen = pending.gen;
    // The ACK is written before the Pending is recycled: it reads the reply.
    this.#host.acked(pending.streamId, pending.frameId, reply.count > 0 ? reply : undefined);
    // Writing the ACK may have closed the connection (the last ACK of a
    // drain), which abandoned every NOTIFY in flight, this one included.
    if (pending.gen === gen) this.#recycle(pending);
  }

  /** Drops a NOTIFY without an ACK (malformed, or its connection closed). */
  #abandon(pending: Pending, reason: DOMException | undefined): void {
    if (pending.deadline !== undefined) this.#timers.clearTimeout(pending.deadline);
    if (pending.delay !== undefined) this.#timers.clearTimeout(pending.delay);
    pending.deadline = pending.delay = undefined;
    if (reason !== undefined) pending.controller?.abort(reason);
    this.#addLate(pending.waiting);
    this.#recycle(pending);
    this.#host.settled();
  }

  #addLate(n: number): void {
    if (n === 0) return;
    const bound = this.#opts.maxLateHandlers;
    const below = this.#late < bound;
    this.#late += n;
    if (below && this.#late >= bound) this.#host.lateChanged();
  }

  /**
   * Seals every handle given out for the NOTIFY. Only `async` handlers get
   * any; callers test `issued.length` first, since `length = 0` is a runtime
   * call even on an empty array.
   */
  #seal(pending: Pending): void {
    const issued = pending.issued;
    for (let i = 0; i < issued.length; i++) issued[i]![INTERNAL](null);
    issued.length = 0;
  }

  #acquire(streamId: number | bigint, frameId: number | bigint): Pending {
    // The spare is the Pending of the NOTIFY before, when it was handled at once.
    let pending = spare;
    if (pending !== undefined) spare = undefined;
    else pending = pool.pop() ?? new Pending();
    pending.pooled = false;
    pending.connection = this.#connection!;
    pending.streamId = streamId;
    pending.frameId = frameId;
    return pending;
  }

  /**
   * Lists a NOTIFY that outlives the read it came in (its handlers went
   * asynchronous, or its ACK is delayed), so that a close or a shutdown
   * reaches it. One handled synchronously never needs to be listed.
   */
  #track(pending: Pending): void {
    if (pending.index >= 0) return;
    pending.index = this.#active.length;
    this.#active.push(pending);
  }

  /** Ends a NOTIFY's use of its Pending and pools it. */
  #recycle(pending: Pending): void {
    if (pending.issued.length > 0) this.#seal(pending);
    if (pending.waiting > 0) pending.running.length = 0;
    pending.waiting = 0;
    if (pending.index >= 0) {
      const last = this.#active.pop()!;
      if (last !== pending) {
        this.#active[pending.index] = last;
        last.index = pending.index;
      }
      pending.index = -1;
    }
    this.#reuse(pending);
  }

  /** Pools a Pending that holds no handle, no timer and no handler (all of them done). */
  #reuse(pending: Pending): void {
    // Pooled twice, it would serve two NOTIFYs at once, of any connection.
    if (pending.pooled) return;
    pending.pooled = true;
    pending.gen++;
    if (pending.controller !== undefined) pending.controller = undefined;
    pending.reply.clear();
    const used = pending.used;
    if (used > 0) {
      const messages = pending.messages;
      for (let i = 0; i < used; i++) messages[i]!.release();
      pending.used = 0;
    }
    if (spare === undefined) spare = pending;
    else if (pool.length < MAX_POOLED) pool.push(pending);
  }
}

/** Bytes held by the replies and message copies of some Pendings. */
function bytesOf(pendings: readonly Pending[]): number {
  let n = 0;
  for (const p of pendings) {
    n += p.reply.writer.capacity;
    for (const m of p.messages) n += m.copyCapacity;
  }
  return n;
}

/**
 * Bytes held by this thread's pooled replies and message copies (to check
 * that they shrink back after a large frame).
 *
 * @returns The bytes.
 */
export function pooledBytes(): number {
  return bytesOf(spare === undefined ? pool : [...pool, spare]);
}
