/**
 * A socket-free harness for `lib/agent/session.ts`: a recording {@linkcode FakeConn},
 * a manual clock ({@linkcode FakeTimers}), builders for the frames HAProxy
 * sends and a decoder for everything the agent wrote.
 *
 * @module
 */

import type { Conn, ConnHandler } from "../lib/agent/conn.ts";
import { createLogger, Level, type Logger } from "../lib/agent/log.ts";
import type { Agent } from "../lib/agent/handler.ts";
import {
  DEFAULT_REFERENCE_KNOBS,
  DEFAULT_SESSION_OPTIONS,
  Session,
  type SessionConfig,
  type Timers,
} from "../lib/agent/session.ts";
import {
  ActionReader,
  ActionType,
  type AgentHello,
  DataType,
  decodeAgentHello,
  decodeDisconnect,
  type Disconnect,
  Flag,
  FrameScanner,
  FrameType,
  FrameWriter,
  type Value,
  writeDisconnect,
  writeHaproxyHello,
} from "../lib/spop.ts";

// ---------------------------------------------------------------------------
// The connection

/** Size of the fake's reused read buffer (like a runtime adapter's). */
const READ_BUFFER_SIZE = 64 * 1024;
/** What the read buffer is overwritten with after each `onData` call. */
const SCRIBBLE = 0xee;

/**
 * A {@linkcode Conn} that records what the session does. Data is delivered
 * like a runtime adapter does: copied into one reused read buffer, handed to
 * `onData`, then overwritten, so a session that keeps a reference to the
 * bytes of a read sees garbage.
 */
export class FakeConn implements Conn {
  readonly remote = "192.0.2.7:40000";
  /** What `queued` reports; set it to simulate a slow peer. */
  queued = 0;
  /** Every `write()` call, each copied. */
  readonly writes: Uint8Array[] = [];
  /** Every call in order: "write", "pause", "resume", "close", "destroy". */
  readonly events: string[] = [];
  /** Writes made after `close()` or `destroy()`. */
  writesAfterClose = 0;
  /** `onData` calls made through this fake. */
  reads = 0;
  /** Whether `close()`/`destroy()` report `onClose()` (in a microtask), as adapters do. */
  autoClose = true;
  /** Who receives the events. */
  handler: ConnHandler | undefined;

  #readBuf = new Uint8Array(READ_BUFFER_SIZE);
  #closeDelivered = false;
  #ended = false;

  /** How many times each method was called. */
  count(event: "write" | "pause" | "resume" | "close" | "destroy"): number {
    return this.events.filter((e) => e === event).length;
  }

  /** Whether `close()` or `destroy()` was called. */
  get ended(): boolean {
    return this.#ended;
  }

  write(bytes: Uint8Array, length: number): void {
    if (this.#ended) this.writesAfterClose++;
    this.writes.push(bytes.slice(0, length));
    this.events.push("write");
  }

  pause(): void {
    this.events.push("pause");
  }

  resume(): void {
    this.events.push("resume");
  }

  close(): void {
    this.events.push("close");
    this.#end();
  }

  destroy(): void {
    this.events.push("destroy");
    this.#end();
  }

  /** Reports the end of the connection to the handler, once. */
  deliverClose(): void {
    if (this.#closeDelivered) return;
    this.#closeDelivered = true;
    this.handler?.onClose();
  }

  /** Delivers one read. */
  feed(bytes: Uint8Array): void {
    if (bytes.length > this.#readBuf.length) this.#readBuf = new Uint8Array(bytes.length);
    const buf = this.#readBuf;
    buf.set(bytes);
    this.reads++;
    this.handler!.onData(buf, bytes.length);
    buf.fill(SCRIBBLE);
  }

  /** Delivers `bytes` one byte per read. */
  feedBytewise(bytes: Uint8Array): void {
    for (let i = 0; i < bytes.length; i++) this.feed(bytes.subarray(i, i + 1));
  }

  /** Delivers `bytes` in two reads, split at `at`. */
  feedSplit(bytes: Uint8Array, at: number): void {
    this.feed(bytes.subarray(0, at));
    this.feed(bytes.subarray(at));
  }

  /** Everything written, concatenated. */
  output(): Uint8Array {
    return concat(...this.writes);
  }

  /** Everything written, as frames. */
  frames(): AgentFrame[] {
    return decodeAgentFrames(this.output());
  }

  #end(): void {
    this.#ended = true;
    if (this.autoClose) queueMicrotask(() => this.deliverClose());
  }
}

// ---------------------------------------------------------------------------
// The clock

/** A manual clock: callbacks run only from {@linkcode FakeTimers.advance}. */
export class FakeTimers implements Timers {
  /** The current time in ms. */
  now = 0;

  /** The fake time, for the session's frame timeout. */
  clock(): number {
    return this.now;
  }
  #nextId = 1;
  readonly #timers = new Map<number, { at: number; fn: () => void }>();

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#nextId++;
    this.#timers.set(id, { at: this.now + ms, fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** Timers set and neither run nor cleared. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Moves the clock on, running due callbacks in time order (then set order). */
  advance(ms: number): void {
    const target = this.now + ms;
    for (;;) {
      let due: number | undefined;
      let dueAt = Infinity;
      for (const [id, t] of this.#timers) {
        if (t.at <= target && t.at < dueAt) {
          due = id;
          dueAt = t.at;
        }
      }
      if (due === undefined) break;
      const timer = this.#timers.get(due)!;
      this.#timers.delete(due);
      this.now = timer.at;
      timer.fn();
    }
    this.now = target;
  }
}

// ---------------------------------------------------------------------------
// A session on the fakes

/** A session wired to a fake connection, clock and logger. */
export interface Harness {
  conn: FakeConn;
  session: Session;
  timers: FakeTimers;
  /** Every log line (debug included). */
  lines: string[];
  log: Logger;
  options: SessionConfig;
}

/**
 * Starts a session on a {@linkcode FakeConn}, logging at debug level so the
 * debug paths run too.
 *
 * @param agent The handlers.
 * @param options Overrides of {@linkcode DEFAULT_SESSION_OPTIONS}.
 * @param level The log level; debug by default.
 */
export function startSession(
  agent: Agent,
  options: Partial<SessionConfig> = {},
  level: Level = Level.DEBUG,
): Harness {
  const conn = new FakeConn();
  const timers = new FakeTimers();
  const lines: string[] = [];
  const log = createLogger({ level, sink: (line) => lines.push(line), now: () => new Date(0) });
  const full: SessionConfig = {
    ...DEFAULT_SESSION_OPTIONS,
    ...DEFAULT_REFERENCE_KNOBS,
    ...options,
  };
  const session = new Session(conn, agent, full, log, timers);
  conn.handler = session;
  return { conn, session, timers, lines, log, options: full };
}

/** Log lines at one level. */
export function linesAt(lines: readonly string[], level: "error" | "warn" | "info" | "debug") {
  return lines.filter((line) => line.split(" ")[1] === level);
}

/** Lets queued microtasks (promise reactions, the session's flush) run. */
export async function settle(ticks = 20): Promise<void> {
  for (let i = 0; i < ticks; i++) await Promise.resolve();
}

/** A promise with its resolve/reject functions. */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (reason: unknown) => void;
}

/** Makes a {@linkcode Deferred}. */
export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

// ---------------------------------------------------------------------------
// Frames HAProxy sends

/** An engine-id as HAProxy sends it. */
export const ENGINE_ID = "3f2e4d5c-6b7a-4980-8b1c-2d3e4f506172";

/** Items of a HAPROXY-HELLO; `null` leaves the engine-id out. */
export interface HelloOptions {
  supportedVersions?: string;
  maxFrameSize?: number;
  capabilities?: string;
  healthcheck?: boolean;
  engineId?: string | null;
}

/**
 * A HAPROXY-HELLO as HAProxy writes it: "2.0", 16380, "pipelining" and an
 * engine-id by default (no engine-id on a health check).
 */
export function haproxyHello(options: HelloOptions = {}): Uint8Array {
  const w = new FrameWriter();
  const healthcheck = options.healthcheck ?? false;
  const engineId = options.engineId === undefined
    ? (healthcheck ? null : ENGINE_ID)
    : options.engineId;
  writeHaproxyHello(w, {
    supportedVersions: options.supportedVersions ?? "2.0",
    maxFrameSize: options.maxFrameSize ?? 16380,
    capabilities: options.capabilities ?? "pipelining",
    healthcheck,
    ...(engineId === null ? {} : { engineId }),
  });
  return w.bytes().slice();
}

/** A KV item (HELLO, DISCONNECT) or a message argument: name, type, value. */
export type Item = readonly [name: string, type: DataType, value: Value];

/** Header fields of a hand-made frame. */
export interface Header {
  flags?: number;
  streamId?: number | bigint;
  frameId?: number | bigint;
}

/** A HAPROXY-HELLO with exactly these items (FIN and ids 0/0 unless told). */
export function helloWith(items: readonly Item[], header: Header = {}): Uint8Array {
  const w = new FrameWriter();
  w.begin(
    FrameType.HAPROXY_HELLO,
    header.streamId ?? 0,
    header.frameId ?? 0,
    header.flags ?? Flag.FIN,
  );
  for (const [name, type, value] of items) w.kv(name, type, value);
  w.end();
  return w.bytes().slice();
}

/** One message of a NOTIFY. */
export interface MessageSpec {
  name: string;
  args?: readonly Item[];
}

/** The LIST-OF-MESSAGES of a NOTIFY (no frame header). */
export function messagesPayload(messages: readonly MessageSpec[]): Uint8Array {
  const w = new FrameWriter(64);
  for (const m of messages) {
    const args = m.args ?? [];
    w.message(m.name, args.length);
    for (const [name, type, value] of args) w.arg(name, type, value);
  }
  return w.bytes().slice();
}

/** A NOTIFY frame (FIN by default). */
export function notify(
  streamId: number | bigint,
  frameId: number | bigint,
  messages: readonly MessageSpec[],
  flags: number = Flag.FIN,
): Uint8Array {
  return rawFrame(FrameType.NOTIFY, messagesPayload(messages), { streamId, frameId, flags });
}

/** A frame of any type with a raw payload (FIN and ids 0/0 unless told). */
export function rawFrame(type: number, payload: Uint8Array, header: Header = {}): Uint8Array {
  const w = new FrameWriter(64);
  w.begin(type, header.streamId ?? 0, header.frameId ?? 0, header.flags ?? Flag.FIN);
  w.append(payload);
  w.end();
  return w.bytes().slice();
}

/** An UNSET frame: a continuation fragment of a NOTIFY (FIN by default). */
export function unset(
  streamId: number | bigint,
  frameId: number | bigint,
  payload: Uint8Array,
  flags: number = Flag.FIN,
): Uint8Array {
  return rawFrame(FrameType.UNSET, payload, { streamId, frameId, flags });
}

/** A HAPROXY-DISCONNECT (message: HAProxy's text for the code by default). */
export function haproxyDisconnect(status: number, message?: string): Uint8Array {
  const w = new FrameWriter(64);
  if (message === undefined) writeDisconnect(w, FrameType.HAPROXY_DISCONNECT, status);
  else writeDisconnect(w, FrameType.HAPROXY_DISCONNECT, status, message);
  return w.bytes().slice();
}

/** Joins byte arrays. */
export function concat(...parts: readonly Uint8Array[]): Uint8Array {
  let size = 0;
  for (const p of parts) size += p.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Frames the agent sends

/** One decoded ACK action. */
export interface Action {
  action: "set-var" | "unset-var";
  scope: number;
  name: string;
  /** The value's type (set-var only). */
  type?: DataType;
  /** The value (set-var only). */
  value?: Value;
}

/** One frame the agent wrote. */
export interface AgentFrame {
  type: number;
  flags: number;
  streamId: number | bigint;
  frameId: number | bigint;
  /** LENGTH. */
  length: number;
  /** The whole frame, prefix included. */
  bytes: Uint8Array;
  /** ACK: its actions. */
  actions?: Action[];
  /** AGENT-HELLO: its items. */
  hello?: AgentHello;
  /** AGENT-DISCONNECT: status and message. */
  disconnect?: Disconnect;
}

/**
 * Decodes agent output into frames.
 *
 * @throws {Error} When the bytes end inside a frame, or a frame is malformed.
 */
export function decodeAgentFrames(bytes: Uint8Array): AgentFrame[] {
  const scanner = new FrameScanner(1 << 30);
  scanner.push(bytes);
  const out: AgentFrame[] = [];
  for (let f = scanner.next(); f !== null; f = scanner.next()) {
    const frame: AgentFrame = {
      type: f.type,
      flags: f.flags,
      streamId: f.streamId,
      frameId: f.frameId,
      length: f.length,
      bytes: f.buf.slice(f.start, f.end),
    };
    if (f.type === FrameType.ACK) {
      const actions: Action[] = [];
      const reader = new ActionReader().reset(f.buf, f.payloadStart, f.end);
      while (reader.next()) {
        if (reader.type === ActionType.SET_VAR) {
          actions.push({
            action: "set-var",
            scope: reader.scope,
            name: reader.name(),
            type: reader.value.type,
            value: reader.value.value(),
          });
        } else {
          actions.push({ action: "unset-var", scope: reader.scope, name: reader.name() });
        }
      }
      frame.actions = actions;
    } else if (f.type === FrameType.AGENT_HELLO) {
      frame.hello = decodeAgentHello(f);
    } else if (f.type === FrameType.AGENT_DISCONNECT) {
      frame.disconnect = decodeDisconnect(f);
    } else {
      throw new Error(`The agent wrote a frame of type ${f.type}`);
    }
    out.push(frame);
  }
  if (scanner.buffered !== 0) throw new Error(`${scanner.buffered} bytes of a partial frame`);
  return out;
}

/** The padding action of an ACK without actions (§7.3): unset-var txn "_". */
export const PAD: Action = { action: "unset-var", scope: 2, name: "_" };

/** A short, comparable form of frames: "HELLO", "ACK 1/1", "DISCONNECT 0". */
export function summary(frames: readonly AgentFrame[]): string[] {
  return frames.map((f) => {
    switch (f.type) {
      case FrameType.AGENT_HELLO:
        return "HELLO";
      case FrameType.AGENT_DISCONNECT:
        return `DISCONNECT ${f.disconnect!.status}`;
      default:
        return `ACK ${f.streamId}/${f.frameId}`;
    }
  });
}
