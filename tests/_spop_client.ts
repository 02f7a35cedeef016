/**
 * A small SPOP client for loopback tests: it plays HAProxy over `node:net`
 * (so it runs under Deno and Bun alike), writes bytes as given and parses
 * what the agent sends into frames with the codec. Timeouts only guard
 * against hangs; tests never assert on speed.
 *
 * @module
 */

import net from "node:net";
import {
  ActionReader,
  type AgentHello,
  DataType,
  decodeAgentHello,
  decodeDisconnect,
  type Disconnect,
  FrameScanner,
  FrameType,
  FrameWriter,
  type Value,
  writeHaproxyHello,
} from "../lib/spop.ts";

/** How long a helper waits before it gives up (a hang guard, not a speed check). */
export const WAIT_MS = 5000;

/** One action of an ACK. */
export interface Action {
  /** `ActionType`: 1 set-var, 2 unset-var. */
  type: number;
  /** `VarScope`. */
  scope: number;
  /** The variable name. */
  name: string;
  /** The value's `DataType` (set-var only). */
  dataType?: number;
  /** The value (set-var only). */
  value?: Value;
}

/** A frame the agent sent, copied out of the read buffer and decoded by type. */
export interface ReceivedFrame {
  /** The frame type. */
  type: number;
  /** The flag bits. */
  flags: number;
  /** The stream-id. */
  streamId: number | bigint;
  /** The frame-id. */
  frameId: number | bigint;
  /** The whole frame, LENGTH prefix included. */
  bytes: Uint8Array;
  /** An AGENT-HELLO's items. */
  hello?: AgentHello;
  /** An AGENT-DISCONNECT's status and message. */
  disconnect?: Disconnect;
  /** An ACK's actions. */
  actions?: Action[];
}

/** One message argument of a NOTIFY. */
export interface ArgSpec {
  /** The argument name; `""` for an unnamed one. */
  name?: string;
  /** Its type. */
  type: DataType;
  /** Its value. */
  value: Value;
}

/** One message of a NOTIFY. */
export interface MessageSpec {
  /** The message name. */
  name: string;
  /** Its arguments. */
  args: ArgSpec[];
}

/** Options of a HAPROXY-HELLO. */
export interface HelloOptions {
  /** HAProxy's max-frame-size; 16380 by default. */
  maxFrameSize?: number;
  /** HAProxy's capabilities; `"pipelining"` by default. */
  capabilities?: string;
  /** A health-check HELLO. */
  healthcheck?: boolean;
  /** The engine id. */
  engineId?: string;
}

/**
 * The `check-client-ip` message with one unnamed IPv4 or IPv6 argument.
 *
 * @param ip The address in text form.
 * @returns The message.
 */
export function checkClientIp(ip = "127.0.0.1"): MessageSpec {
  return {
    name: "check-client-ip",
    args: [{ type: ip.includes(":") ? DataType.IPV6 : DataType.IPV4, value: ip }],
  };
}

/**
 * Encodes a HAPROXY-HELLO.
 *
 * @param options The items.
 * @returns The frame's bytes.
 */
export function helloBytes(options: HelloOptions = {}): Uint8Array {
  const w = new FrameWriter(256);
  writeHaproxyHello(w, {
    maxFrameSize: options.maxFrameSize ?? 16380,
    capabilities: options.capabilities ?? "pipelining",
    ...(options.healthcheck ? { healthcheck: true } : {}),
    ...(options.engineId === undefined ? {} : { engineId: options.engineId }),
  });
  return w.take();
}

/**
 * Encodes a NOTIFY.
 *
 * @param streamId The stream-id.
 * @param frameId The frame-id.
 * @param messages The messages; one `check-client-ip` for 127.0.0.1 by default.
 * @returns The frame's bytes.
 */
export function notifyBytes(
  streamId: number | bigint,
  frameId: number | bigint,
  messages: MessageSpec[] = [checkClientIp()],
): Uint8Array {
  const w = new FrameWriter(256);
  w.begin(FrameType.NOTIFY, streamId, frameId);
  for (const m of messages) {
    w.message(m.name, m.args.length);
    for (const a of m.args) w.arg(a.name ?? "", a.type, a.value);
  }
  w.end();
  return w.take();
}

/**
 * Joins byte arrays.
 *
 * @param parts The arrays.
 * @returns One array.
 */
export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Polls `condition` until it holds (a hang guard, not a speed check).
 *
 * @param condition What to wait for.
 * @param what Named in the error on timeout.
 * @param timeoutMs How long to wait.
 */
export async function waitFor(
  condition: () => boolean,
  what: string,
  timeoutMs = WAIT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A connection to an agent. */
export class SpopClient {
  readonly #socket: net.Socket;
  readonly #scanner = new FrameScanner(16 * 1024 * 1024);
  #frames: ReceivedFrame[] = [];
  /** Index of the next frame in `#frames` (shift() is O(n) on V8 for long arrays). */
  #head = 0;
  readonly #chunks: Uint8Array[] = [];
  #waiter: (() => void) | undefined;
  #parseError: Error | undefined;
  #isClosed = false;
  readonly #closed: Promise<void>;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    this.#closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("data", (chunk: Uint8Array) => this.#onData(chunk));
    // A reset by the agent is a close like any other; "close" follows.
    socket.on("error", () => {});
    socket.once("close", () => {
      this.#isClosed = true;
      this.#wake();
    });
  }

  /**
   * Connects to an agent.
   *
   * @param port The agent's port.
   * @param host The agent's address.
   * @returns The connected client.
   */
  static connect(port: number | string, host = "127.0.0.1"): Promise<SpopClient> {
    return new Promise((resolve, reject) => {
      // A string is a Unix socket's path.
      const socket = typeof port === "string"
        ? net.connect({ path: port })
        : net.connect({ port, host });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`Timed out connecting to ${host}:${port}`));
      }, WAIT_MS);
      socket.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.removeAllListeners("error");
        socket.setNoDelay(true);
        resolve(new SpopClient(socket));
      });
    });
  }

  /** Whether the socket is closed. */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Frames received and not yet taken with `nextFrame()`. */
  get pending(): number {
    return this.#frames.length - this.#head;
  }

  /** Every byte received so far. */
  get received(): Uint8Array {
    return concat(this.#chunks);
  }

  /**
   * Sends bytes in one write.
   *
   * @param bytes The bytes.
   * @returns When the socket has taken them.
   */
  send(bytes: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#socket.write(bytes, (err) => err ? reject(err) : resolve());
    });
  }

  /**
   * Sends a HAPROXY-HELLO and returns the agent's AGENT-HELLO.
   *
   * @param options The HELLO's items.
   * @returns The AGENT-HELLO frame.
   * @throws {Error} When the answer is not an AGENT-HELLO.
   */
  async hello(options: HelloOptions = {}): Promise<ReceivedFrame> {
    await this.send(helloBytes(options));
    const frame = await this.nextFrame();
    if (frame.type !== FrameType.AGENT_HELLO) {
      throw new Error(`Expected AGENT-HELLO, got frame type ${frame.type}`);
    }
    return frame;
  }

  /**
   * Sends a NOTIFY and returns the next frame (its ACK, normally).
   *
   * @param streamId The stream-id.
   * @param frameId The frame-id.
   * @param messages The messages; one `check-client-ip` for 127.0.0.1 by default.
   * @returns The next frame.
   */
  async notify(
    streamId: number | bigint,
    frameId: number | bigint,
    messages?: MessageSpec[],
  ): Promise<ReceivedFrame> {
    await this.send(notifyBytes(streamId, frameId, messages));
    return await this.nextFrame();
  }

  /**
   * The next frame from the agent.
   *
   * @param timeoutMs Hang guard.
   * @returns The frame.
   * @throws {Error} When the socket closes first, the bytes do not parse, or on timeout.
   */
  async nextFrame(timeoutMs = WAIT_MS): Promise<ReceivedFrame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#head < this.#frames.length) {
        const frame = this.#frames[this.#head++]!;
        if (this.#head === this.#frames.length) {
          this.#frames = [];
          this.#head = 0;
        }
        return frame;
      }
      if (this.#parseError) throw this.#parseError;
      if (this.#isClosed) {
        throw new Error(
          `Connection closed before the next frame${
            this.#scanner.buffered > 0 ? ` (${this.#scanner.buffered} bytes left over)` : ""
          }`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`Timed out waiting for a frame`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
      this.#waiter = undefined;
    }
  }

  /**
   * Waits until the agent has closed the connection.
   *
   * @param timeoutMs Hang guard.
   */
  async closed(timeoutMs = WAIT_MS): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error("Timed out waiting for the agent to close")),
        timeoutMs,
      );
    });
    try {
      await Promise.race([this.#closed, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops reading from the socket (the agent's writes back up). */
  pause(): void {
    this.#socket.pause();
  }

  /** Reads again after `pause()`. */
  resume(): void {
    this.#socket.resume();
  }

  /** Half-closes: sends FIN, keeps reading. */
  end(): void {
    this.#socket.end();
  }

  /** Closes at once (with a TCP RST where the runtime supports it). */
  reset(): void {
    const socket = this.#socket as net.Socket & { resetAndDestroy?: () => void };
    if (typeof socket.resetAndDestroy === "function") socket.resetAndDestroy();
    else socket.destroy();
  }

  /**
   * Closes the socket and waits for it to be gone. Safe to call more than once.
   *
   * @returns When the socket is closed.
   */
  async close(): Promise<void> {
    this.#socket.destroy();
    await this.closed();
  }

  #onData(chunk: Uint8Array): void {
    this.#chunks.push(chunk.slice());
    try {
      this.#scanner.push(chunk);
      for (let f = this.#scanner.next(); f !== null; f = this.#scanner.next()) {
        const frame: ReceivedFrame = {
          type: f.type,
          flags: f.flags,
          streamId: f.streamId,
          frameId: f.frameId,
          bytes: f.buf.slice(f.start, f.end),
        };
        if (f.type === FrameType.AGENT_HELLO) frame.hello = decodeAgentHello(f);
        else if (f.type === FrameType.AGENT_DISCONNECT) frame.disconnect = decodeDisconnect(f);
        else if (f.type === FrameType.ACK) {
          const actions: Action[] = [];
          const reader = new ActionReader().reset(f.buf, f.payloadStart, f.end);
          while (reader.next()) {
            const action: Action = { type: reader.type, scope: reader.scope, name: reader.name() };
            if (reader.type === 1) {
              action.dataType = reader.value.type;
              action.value = reader.value.value();
            }
            actions.push(action);
          }
          frame.actions = actions;
        }
        this.#frames.push(frame);
      }
    } catch (err) {
      // Bytes that do not parse fail the test through nextFrame().
      this.#parseError = err instanceof Error ? err : new Error(String(err));
      this.#socket.destroy();
    } finally {
      this.#wake();
    }
  }

  #wake(): void {
    const wake = this.#waiter;
    this.#waiter = undefined;
    wake?.();
  }
}
