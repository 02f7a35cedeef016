/**
 * A worker of the pool (`pool.ts`): loads the agent module and runs it on
 * its own thread. With `reuseport` it listens on the shared port itself (no frame
 * crosses threads); with `streams` the main thread accepts and hands over
 * each connection: as transferred streams on Deno (the design card's
 * dispatch), as relayed, transferred buffers on Bun (which cannot transfer
 * streams).
 *
 * @module
 */

import type { Conn, ConnHandler } from "../agent/conn.ts";
import type { Agent } from "../agent/handler.ts";
import { createLogger, errorText, Level } from "../agent/log.ts";
import { loadAgentModule, logUncaught } from "./module.ts";
import { SharedView } from "./setup.ts";
import { AgentMetrics } from "../metrics/agent.ts";
import { MetricsRegistry, onLayoutChange } from "../metrics/registry.ts";
import type { FromWorker, ToWorker } from "./pool_protocol.ts";
import {
  type Acceptor,
  type AcceptorOptions,
  createAcceptor,
  type Server,
  serveWith,
} from "./server.ts";

interface WorkerScope {
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
  postMessage(message: FromWorker, transfer?: Transferable[]): void;
  close(): void;
}

const scope = globalThis as unknown as WorkerScope;

function post(message: FromWorker, transfer: Transferable[] = []): void {
  scope.postMessage(message, transfer);
}

/** A copy of `bytes` in a buffer of its own, ready to be transferred. */
function ownBuffer(bytes: Uint8Array, length: number): ArrayBuffer {
  const buffer = new ArrayBuffer(length);
  new Uint8Array(buffer).set(length === bytes.length ? bytes : bytes.subarray(0, length));
  return buffer;
}

/** A connection whose socket lives on the main thread: transferred streams (Deno). */
class StreamConn implements Conn {
  readonly remote: string;
  handler: ConnHandler | undefined;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  #queued = 0;
  #paused = false;
  #wake: (() => void) | undefined;
  #closing = false;
  #closed = false;

  readonly #gone: () => void;

  constructor(
    remote: string,
    readable: ReadableStream<Uint8Array>,
    writable: WritableStream<Uint8Array>,
    gone: () => void,
  ) {
    this.remote = remote;
    this.#gone = gone;
    this.#reader = readable.getReader();
    this.#writer = writable.getWriter();
  }

  get queued(): number {
    return this.#queued;
  }

  start(handler: ConnHandler): void {
    this.handler = handler;
    void this.#readLoop();
  }

  write(bytes: Uint8Array, length: number): void {
    if (this.#closed || this.#closing) return;
    const copy = bytes.slice(0, length); // The stream keeps what it is given.
    this.#queued += copy.length;
    this.#writer.write(copy).then(
      () => {
        this.#queued -= copy.length;
        if (this.#queued === 0 && !this.#closed) this.handler?.onDrain();
      },
      () => this.destroy(),
    );
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  close(): void {
    if (this.#closing || this.#closed) return;
    this.#closing = true;
    // Queued writes go first: close() settles after them.
    this.#writer.close().then(() => this.destroy(), () => this.destroy());
  }

  destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#reader.cancel().catch(() => {});
    this.#writer.abort().catch(() => {});
    this.resume();
    this.#gone();
    this.handler?.onClose();
  }

  async #readLoop(): Promise<void> {
    try {
      while (!this.#closed) {
        if (this.#paused) {
          await new Promise<void>((resolve) => this.#wake = resolve);
          continue;
        }
        const { value, done } = await this.#reader.read();
        if (this.#closed) break;
        if (done) {
          // The peer is done sending: the handler finishes, then close() flushes and closes.
          this.handler!.onEnd();
          return;
        }
        this.handler!.onData(value, value.length);
      }
    } catch {
      // A reset: a quiet close.
    }
    this.destroy();
  }
}

/** A connection whose socket lives on the main thread: relayed buffers (Bun). */
class RelayConn implements Conn {
  readonly remote: string;
  handler: ConnHandler | undefined;
  readonly #cid: number;
  readonly #queued: Int32Array;
  #closed = false;

  constructor(cid: number, remote: string, queued: SharedArrayBuffer) {
    this.#cid = cid;
    this.remote = remote;
    this.#queued = new Int32Array(queued);
  }

  /** What the main thread still queues for the socket (shared memory it updates). */
  get queued(): number {
    return Atomics.load(this.#queued, 0);
  }

  write(bytes: Uint8Array, length: number): void {
    if (this.#closed) return;
    const buffer = ownBuffer(bytes, length);
    post({ type: "write", cid: this.#cid, bytes: buffer }, [buffer]);
  }

  pause(): void {
    if (!this.#closed) post({ type: "pause", cid: this.#cid });
  }

  resume(): void {
    if (!this.#closed) post({ type: "resume", cid: this.#cid });
  }

  close(): void {
    if (!this.#closed) post({ type: "end", cid: this.#cid });
  }

  destroy(): void {
    if (!this.#closed) post({ type: "destroy", cid: this.#cid });
  }

  /** The main thread reports the socket closed. */
  closed(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.handler?.onClose();
  }
}

let agent: Agent | undefined;
let options: AcceptorOptions = {};
let tlsConfig: { cert: string; key: string } | undefined;
let acceptor: Acceptor | undefined;
let server: Server | undefined;
/** The `start` in progress: a `shutdown` right after it must wait for the listener. */
let starting: Promise<void> | undefined;
const relayed = new Map<number, RelayConn>();
/** What the agent module's setup shares, as this worker sees it. */
let shared: SharedView | undefined;

scope.onmessage = (event) => {
  const message = event.data;
  switch (message.type) {
    case "start":
      starting = start(message);
      break;
    case "listen":
      starting = listen(message);
      break;
    case "conn": {
      const { cid } = message;
      const conn = new StreamConn(
        message.remote,
        message.readable,
        message.writable,
        () => post({ type: "gone", cid }),
      );
      if (acceptor === undefined) conn.destroy();
      else conn.start(acceptor.accept(conn));
      break;
    }
    case "open": {
      const conn = new RelayConn(message.cid, message.remote, message.queued);
      relayed.set(message.cid, conn);
      if (acceptor === undefined) conn.destroy();
      else conn.handler = acceptor.accept(conn);
      break;
    }
    case "data": {
      const bytes = new Uint8Array(message.bytes);
      relayed.get(message.cid)?.handler?.onData(bytes, bytes.length);
      break;
    }
    case "drain":
      relayed.get(message.cid)?.handler?.onDrain();
      break;
    case "ended":
      relayed.get(message.cid)?.handler?.onEnd();
      break;
    case "closed":
      relayed.get(message.cid)?.closed();
      relayed.delete(message.cid);
      break;
    case "shared":
      if (shared === undefined) shared = new SharedView(message.value);
      else shared.set(message.value);
      break;
    case "shutdown":
      void stop(message.graceMs);
      break;
  }
};

async function start(message: Extract<ToWorker, { type: "start" }>): Promise<void> {
  const { config } = message;
  const log = createLogger({
    level: config.debug ? Level.DEBUG : Level.INFO,
    name: `worker ${message.id}`,
    format: config.logFormat ?? "text",
  });
  logUncaught(log);
  const registry = new MetricsRegistry({ warn: (text) => log.warn(text) });
  const metrics = new AgentMetrics(registry, config.metrics ?? false);
  if (config.metrics) reportMetrics(registry);
  // A value published while the worker started is newer than the one it started with.
  shared ??= new SharedView(message.shared);
  try {
    agent = await loadAgentModule(config.agent.module, {
      workerId: message.id,
      workers: message.workers,
      args: config.agent.args,
      log,
      metrics: registry,
      shared,
    }, config.agent.label);
  } catch (err) {
    post({ type: "failed", stage: "load", message: errorText(err) });
    return;
  }
  options = {
    ...config.session,
    ...(config.reference === undefined ? {} : { reference: config.reference }),
    ...(config.maxConnections === undefined ? {} : { maxConnections: config.maxConnections }),
    log,
    metrics,
  };
  tlsConfig = config.tls;
  if (message.dispatch === "streams") acceptor = createAcceptor(agent, options);
  post({ type: "loaded" });
}

/**
 * Sends the registry's memory to the main thread once, then its layout each
 * time a family or series is added (coalesced: one message per task).
 */
function reportMetrics(registry: MetricsRegistry): void {
  post({ type: "metrics", buffer: registry.buffer, layout: registry.layout() });
  onLayoutChange(registry, (layout) => post({ type: "metrics", layout }));
}

/** Listens on the shared port (`reuseport`), once the agent is loaded. */
async function listen(message: Extract<ToWorker, { type: "listen" }>): Promise<void> {
  try {
    server = await serveWith(agent!, {
      ...options,
      hostname: message.hostname,
      port: message.port,
      reusePort: true,
      ...(tlsConfig === undefined ? {} : { tls: tlsConfig }),
    });
    post({ type: "ready", port: server.port });
  } catch (err) {
    post({ type: "failed", stage: "listen", message: errorText(err) });
  }
}

async function stop(graceMs: number): Promise<void> {
  await starting;
  if (server) await server.shutdown(graceMs);
  else if (acceptor) await acceptor.shutdown(graceMs);
  post({ type: "stopped" });
}
