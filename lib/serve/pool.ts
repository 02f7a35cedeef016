/**
 * The worker pool behind `-n N`: N Workers each run the agent on their own
 * thread. Two dispatch modes:
 *
 * - `reuseport`: each worker listens on the shared port (SO_REUSEPORT) and
 *   the kernel spreads connections; no frame crosses threads.
 * - `streams`: the main thread accepts and hands connections to workers in
 *   turn — on Deno as transferred `readable`/`writable` streams (the design
 *   card's dispatch), on Bun, which cannot transfer streams, by relaying each
 *   chunk as a transferred buffer. The fallback where SO_REUSEPORT is missing.
 *
 * A worker that dies is logged and replaced after a delay that doubles with
 * each quick crash (100 ms up to 10 s); the other workers are untouched.
 *
 * @module
 */

import { type MetricsSource, retire } from "../metrics/render.ts";
import {
  type Conn,
  type ConnHandler,
  IGNORED,
  type Listener,
  type StreamPair,
} from "../agent/conn.ts";
import type { Logger } from "../agent/log.ts";
import type { Dispatch, FromWorker, ToWorker, WorkerConfig } from "./pool_protocol.ts";
import { reusePortCaveat, runtimeListen, runtimeListenStreams } from "../runtime/mod.ts";

/** Options of {@linkcode startPool}. */
export interface PoolOptions {
  /** How many workers (at least 2; fewer is better served without a pool). */
  workers: number;
  /** How connections reach the workers. */
  dispatch: Dispatch;
  /** Address to listen on. */
  hostname: string;
  /** Port to listen on; 0 picks one. */
  port: number;
  /**
   * A Unix socket to listen on instead. One process cannot bind it more than
   * once, so the main thread accepts and hands connections over (`streams`).
   */
  path?: string;
  /** The socket file's mode. */
  socketMode?: number;
  /** What each worker runs. */
  config: WorkerConfig;
  /** Where the pool logs (workers log under their own names). */
  log: Logger;
  /** The worker module; `./worker.ts` by default (tests pass their own). */
  workerUrl?: URL;
  /** What the agent module's setup shares (see `setup.ts`). */
  shared?: unknown;
}

/** A running pool. */
export interface Pool {
  /** The port it listens on. */
  readonly port: number;
  /** Workers running now. */
  readonly running: number;
  /** Workers started so far, replacements included. */
  readonly started: number;
  /** Workers serving now (loaded, and listening with `reuseport`). */
  readonly ready: number;
  /**
   * Every worker's metrics (with `config.metrics`), and what workers that
   * ended left of their counters and histograms.
   */
  metricsSources(): MetricsSource[];
  /**
   * Gives every worker, and every worker started later, a new shared value.
   *
   * @param value What the agent module's setup published.
   */
  publish(value: unknown): void;
  /**
   * Stops accepting and lets every worker drain its connections.
   *
   * @param graceMs How long sessions may take to drain.
   * @returns When every worker has stopped.
   */
  shutdown(graceMs: number): Promise<void>;
}

const FIRST_RESTART_MS = 100;
/** At shutdown, how long sockets handed over as streams may take to send what workers wrote last. */
const FLUSH_MS = 1000;
const MAX_RESTART_MS = 10_000;
/** A worker that ran this long is healthy again: its next crash restarts quickly. */
const STABLE_MS = 30_000;

/**
 * A worker's uncaught error for a one-line log entry: Deno's message is
 * `Uncaught Error: ...`; Bun's adds a source excerpt and a stack around its
 * `error: ...` line.
 */
function oneLine(message: string): string {
  const lines = message.split("\n").map((line) => line.trim()).filter((line) => line !== "");
  return lines.find((line) => line.startsWith("error: ")) ?? lines[0] ?? "";
}

interface Slot {
  id: number;
  worker: Worker | undefined;
  ready: boolean;
  startedAt: number;
  crashes: number;
  /**
   * Whether its worker is a replacement. A replacement is restarted however
   * it dies, even while the pool starts: its slot served once, and nothing
   * waits on its start phases.
   */
  replacement: boolean;
  /** Why its last worker died, until a new one starts. */
  death: string | undefined;
  /** Connections handed to this worker through the main thread, by id. */
  conns: Map<number, { close(): void }>;
  stopped: (() => void) | undefined;
  /** A pending replacement of a dead worker. */
  restart: ReturnType<typeof setTimeout> | undefined;
  /** The start phase (loading, listening) being waited for. */
  phase: Phase | undefined;
  /** The worker's metrics, once it sent them. */
  metrics: MetricsSource | undefined;
}

/** A start phase of a worker, and how to settle it. */
interface Phase {
  stage: "load" | "listen";
  resolve(): void;
  reject(err: Error): void;
}

/** A worker could not load the agent module, or could not listen. */
export class PoolStartError extends Error {
  /**
   * @param stage What failed.
   * @param message The worker's error message.
   */
  constructor(readonly stage: "load" | "listen", message: string) {
    super(message);
    this.name = "PoolStartError";
  }
}

/**
 * Starts the pool and waits until every worker is ready.
 *
 * @param options Size, dispatch, address and worker configuration.
 * @returns The running pool.
 * @throws {Error} When the first worker cannot start (e.g. the port is taken).
 */
export async function startPool(options: PoolOptions): Promise<Pool> {
  if (options.path !== undefined && options.dispatch === "reuseport") {
    throw new TypeError("Cannot share a Unix socket between workers with reuseport: use streams");
  }
  const log = options.log;
  const url = options.workerUrl ?? new URL("./worker.ts", import.meta.url);
  const slots: Slot[] = Array.from({ length: options.workers }, (_, i) => ({
    id: i + 1,
    worker: undefined,
    ready: false,
    startedAt: 0,
    crashes: 0,
    replacement: false,
    death: undefined,
    conns: new Map(),
    stopped: undefined,
    restart: undefined,
    phase: undefined,
    metrics: undefined,
  }));
  /** What workers that ended left of their counters, summed into one source. */
  let retired: MetricsSource | undefined;
  let port = options.port;
  let stopping = false;
  /**
   * Whether every worker started once; before that, a first worker's failure
   * to start is not retried (see `died`).
   */
  let up = false;
  let started = 0;
  let next = 0;
  let shared = options.shared;
  /** Connections handed over as streams (Deno's `streams`), until their socket closed here. */
  const handedOver = new Set<Promise<void>>();
  /** Relayed connections (Bun's `streams`): the socket, and what it queues in shared memory. */
  const relays = new Map<number, { conn: Conn; queued: Int32Array }>();

  function send(slot: Slot, message: ToWorker, transfer: Transferable[] = []): void {
    slot.worker?.postMessage(message, transfer);
  }

  /**
   * Starts a worker in a slot and has it load the agent; resolves once it is
   * loaded (with `streams`, ready for connections), rejects if it fails.
   */
  function spawn(slot: Slot): Promise<void> {
    started++;
    const worker = new Worker(url.href, { type: "module" });
    slot.worker = worker;
    slot.ready = false;
    slot.death = undefined;
    slot.startedAt = Date.now();
    return new Promise((resolve, reject) => {
      slot.phase = { stage: "load", resolve, reject };
      worker.onmessage = (event: MessageEvent<FromWorker>) => {
        const message = event.data;
        switch (message.type) {
          case "loaded":
            if (options.dispatch === "streams") slot.ready = true;
            settle(slot)?.resolve();
            break;
          case "ready":
            slot.ready = true;
            port = message.port;
            settle(slot)?.resolve();
            break;
          case "failed":
            settle(slot)?.reject(new PoolStartError(message.stage, message.message));
            died(slot, worker, `failed to start: ${message.message}`);
            break;
          case "stopped":
            slot.stopped?.();
            break;
          case "write": {
            const relay = relays.get(message.cid);
            if (relay === undefined) break;
            const bytes = new Uint8Array(message.bytes);
            relay.conn.write(bytes, bytes.length);
            Atomics.store(relay.queued, 0, relay.conn.queued);
            break;
          }
          case "pause":
            relays.get(message.cid)?.conn.pause();
            break;
          case "resume":
            relays.get(message.cid)?.conn.resume();
            break;
          case "end":
            relays.get(message.cid)?.conn.close();
            break;
          case "destroy":
            relays.get(message.cid)?.conn.destroy();
            break;
          case "gone":
            slot.conns.delete(message.cid);
            break;
          case "metrics":
            if (message.buffer !== undefined) {
              slot.metrics = { layout: message.layout, values: new Float64Array(message.buffer) };
            } else if (slot.metrics !== undefined) slot.metrics.layout = message.layout;
            break;
        }
      };
      worker.onerror = (event: ErrorEvent) => {
        event.preventDefault();
        const why = oneLine(event.message) || "uncaught error";
        const phase = settle(slot);
        phase?.reject(new PoolStartError(phase.stage, why));
        died(slot, worker, why);
      };
      worker.onmessageerror = () => died(slot, worker, "a message could not be read");
      send(slot, {
        type: "start",
        id: slot.id,
        workers: options.workers,
        config: options.config,
        dispatch: options.dispatch,
        shared,
      });
    });
  }

  /**
   * `reuseport`: has a loaded worker listen on the port; resolves once it
   * does, rejects if it fails or died after loading (no message would reach
   * it, and nothing would ever settle the phase).
   */
  function listenIn(slot: Slot): Promise<void> {
    return new Promise((resolve, reject) => {
      if (slot.worker === undefined) {
        const why = slot.death ?? "stopped";
        return reject(
          new PoolStartError("listen", `worker ${slot.id} died after loading (${why})`),
        );
      }
      slot.phase = { stage: "listen", resolve, reject };
      send(slot, { type: "listen", hostname: options.hostname, port });
    });
  }

  /** Starts a worker all the way: loaded, and listening with `reuseport`. */
  async function start(slot: Slot): Promise<void> {
    await spawn(slot);
    if (options.dispatch === "reuseport") await listenIn(slot);
  }

  /** The phase a slot's worker is in, taken so that it settles once. */
  function settle(slot: Slot): Phase | undefined {
    const phase = slot.phase;
    slot.phase = undefined;
    return phase;
  }

  /**
   * Cleans up after a dead worker and schedules its replacement. While the
   * pool starts, a first worker that fails to start is not retried: it fails
   * the start instead, through the phase it was in or, dead between two
   * phases, the next one (`startPool` waits on both). One that was ready and
   * then died is replaced as usual, and so is a replacement however it dies:
   * `startPool` waits on no phase of it, so skipping it would leave its slot
   * empty for good.
   */
  function died(slot: Slot, worker: Worker, why: string): void {
    if (slot.worker !== worker) return; // Already handled.
    const wasReady = slot.ready;
    worker.terminate();
    slot.worker = undefined;
    slot.ready = false;
    slot.death = why;
    retireMetrics(slot);
    for (const conn of slot.conns.values()) conn.close();
    slot.conns.clear();
    slot.stopped?.();
    if (stopping || (!up && !wasReady && !slot.replacement)) return;
    if (Date.now() - slot.startedAt > STABLE_MS) slot.crashes = 0;
    const delay = Math.min(MAX_RESTART_MS, FIRST_RESTART_MS * 2 ** slot.crashes);
    slot.crashes++;
    log.error(`worker ${slot.id} died (${why}); starting a new one in ${delay} ms`, {
      worker: slot.id,
      event: "worker-died",
    });
    slot.restart = setTimeout(() => {
      slot.restart = undefined;
      if (stopping || slot.worker !== undefined) return;
      slot.replacement = true;
      start(slot).catch(() => {
        // died() already logged it and scheduled the next attempt.
      });
    }, delay);
  }

  /** Keeps what an ended worker counted, so that no counter goes down. */
  function retireMetrics(slot: Slot): void {
    if (slot.metrics === undefined) return;
    retired = retire(retired, slot.metrics);
    slot.metrics = undefined;
  }

  /** The next ready worker, in turn. */
  function pick(): Slot | undefined {
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[(next + i) % slots.length]!;
      if (slot.ready && slot.worker) {
        next = (next + i + 1) % slots.length;
        return slot;
      }
    }
    return undefined;
  }

  let listener: Listener | undefined;
  const caveat = options.dispatch === "reuseport" ? reusePortCaveat() : undefined;
  if (caveat) log.warn(caveat);
  try {
    // Every worker loads the agent before anything listens.
    await Promise.all(slots.map(spawn));
    if (options.dispatch === "reuseport") {
      // The first worker binds (port 0 becomes a real port), the others share it.
      await listenIn(slots[0]!);
      await Promise.all(slots.slice(1).map(listenIn));
    } else {
      listener = await listenForWorkers();
      port = listener.port;
    }
  } catch (err) {
    stopping = true;
    for (const slot of slots) {
      clearTimeout(slot.restart);
      slot.worker?.terminate();
    }
    throw err;
  }
  up = true;
  log.info(
    `listening on ${
      options.path === undefined ? `${options.hostname}:${port}` : `unix:${options.path}`
    } with ${options.workers} workers (${options.dispatch})`,
  );

  async function listenForWorkers(): Promise<Listener> {
    const listenOptions = {
      hostname: options.hostname,
      port: options.port,
      ...(options.path === undefined ? {} : { path: options.path }),
      ...(options.socketMode === undefined ? {} : { mode: options.socketMode }),
      ...(options.config.tls === undefined ? {} : { tls: options.config.tls }),
    };
    let nextCid = 1;
    const listenStreams = await runtimeListenStreams();
    if (listenStreams) {
      return await listenStreams(listenOptions, (pair: StreamPair) => {
        const slot = pick();
        if (slot === undefined) return pair.close();
        const cid = nextCid++;
        slot.conns.set(cid, pair); // Until the worker reports it "gone".
        const closed = pair.closed.then(() => void handedOver.delete(closed));
        handedOver.add(closed);
        send(slot, {
          type: "conn",
          cid,
          remote: pair.remote,
          readable: pair.readable,
          writable: pair.writable,
        }, [pair.readable, pair.writable]);
      });
    }
    const listen = await runtimeListen({ reusePort: false });
    return await listen(listenOptions, (conn: Conn): ConnHandler => {
      const slot = pick();
      const cid = nextCid++;
      if (slot === undefined) {
        conn.destroy();
        return IGNORED;
      }
      // What the socket still queues, for the worker's session to see
      // (output backpressure): plain shared memory, not a message per write.
      const queued = new SharedArrayBuffer(4);
      const queuedView = new Int32Array(queued);
      relays.set(cid, { conn, queued: queuedView });
      slot.conns.set(cid, { close: () => conn.destroy() });
      send(slot, { type: "open", cid, remote: conn.remote, queued });
      return {
        onData(bytes, length) {
          const buffer = new ArrayBuffer(length);
          new Uint8Array(buffer).set(bytes.subarray(0, length));
          send(slot, { type: "data", cid, bytes: buffer }, [buffer]);
        },
        onDrain() {
          Atomics.store(queuedView, 0, 0);
          send(slot, { type: "drain", cid });
        },
        onEnd() {
          send(slot, { type: "ended", cid });
        },
        onClose() {
          relays.delete(cid);
          slot.conns.delete(cid);
          send(slot, { type: "closed", cid });
        },
      };
    });
  }

  return {
    get port() {
      return port;
    },
    get running() {
      return slots.filter((s) => s.worker !== undefined).length;
    },
    get started() {
      return started;
    },
    get ready() {
      return slots.filter((s) => s.ready && s.worker !== undefined).length;
    },
    publish(value) {
      shared = value;
      for (const slot of slots) send(slot, { type: "shared", value });
    },
    metricsSources() {
      const live = slots.flatMap((s) => s.metrics === undefined ? [] : [s.metrics]);
      return retired === undefined ? live : [...live, retired];
    },
    async shutdown(graceMs) {
      stopping = true;
      listener?.close();
      for (const slot of slots) clearTimeout(slot.restart);
      await Promise.all(slots.map((slot) => {
        if (slot.worker === undefined) return Promise.resolve();
        const done = new Promise<void>((resolve) => slot.stopped = resolve);
        send(slot, { type: "shutdown", graceMs });
        let timer: ReturnType<typeof setTimeout> | undefined;
        const late = new Promise<void>((resolve) => timer = setTimeout(resolve, graceMs + 1000));
        return Promise.race([done, late]).then(() => clearTimeout(timer));
      }));
      // With streams on Deno the sockets are here: what workers wrote last
      // (their AGENT-DISCONNECTs) still passes through this thread.
      if (handedOver.size > 0) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          Promise.all(handedOver),
          new Promise<void>((resolve) => timer = setTimeout(resolve, FLUSH_MS)),
        ]);
        clearTimeout(timer);
      }
      for (const slot of slots) {
        slot.worker?.terminate();
        slot.worker = undefined;
      }
    },
  };
}
