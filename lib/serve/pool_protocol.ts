/**
 * The messages between the worker pool (`pool.ts`, main thread) and its
 * workers (`worker.ts`). Types only.
 *
 * @module
 */

import type { LogFormat } from "../agent/log.ts";
import type { SessionOptions } from "../agent/session.ts";
import type { MetricsLayout } from "../metrics/registry.ts";

/** How connections reach workers. */
export type Dispatch = "reuseport" | "streams";

/** What a worker needs to build and run the agent. */
export interface WorkerConfig {
  /** Debug logging. */
  debug: boolean;
  /** How workers write log lines; text by default. */
  logFormat?: LogFormat;
  /** The agent module's URL, and the arguments its default-export function gets. */
  agent: { module: string; label: string; args: string[] };
  /** Session options (`-m`, `-c`, `--handler-timeout`, ...). */
  session: Partial<SessionOptions>;
  /** The reference agent's test knobs (`-t`, `-f`). */
  reference?: { replyDelay: number; closeAfterFrames: number };
  /** TLS certificate and key (PEM), for workers that listen themselves (`reuseport`). */
  tls?: { cert: string; key: string };
  /** This worker's share of `--max-connections`. */
  maxConnections?: number;
  /** `--metrics`: time handlers and send the metrics' memory and layout to the main thread. */
  metrics?: boolean;
}

/** Main thread → worker. */
export type ToWorker =
  /** Load the agent module (and, with `streams`, get ready for connections); report `loaded`. */
  | {
    type: "start";
    id: number;
    /** How many workers the pool runs. */
    workers: number;
    config: WorkerConfig;
    dispatch: Dispatch;
    /** What the agent module's setup shares now. */
    shared: unknown;
  }
  /** The agent module's setup published a new value. */
  | { type: "shared"; value: unknown }
  /** `reuseport`, once every worker loaded the agent: listen on the shared port; report `ready`. */
  | { type: "listen"; hostname: string; port: number }
  /** `streams` on Deno: a connection's transferred streams. */
  | {
    type: "conn";
    cid: number;
    remote: string;
    readable: ReadableStream<Uint8Array>;
    writable: WritableStream<Uint8Array>;
  }
  /**
   * `streams` on Bun (which cannot transfer streams): a relayed connection
   * opened. `queued` is shared memory holding, at index 0, the bytes the main
   * thread still queues for the socket (written by the main thread only).
   */
  | { type: "open"; cid: number; remote: string; queued: SharedArrayBuffer }
  /** The relayed socket's peer finished sending (FIN). */
  | { type: "ended"; cid: number }
  /** Relayed bytes from the socket (a transferred buffer). */
  | { type: "data"; cid: number; bytes: ArrayBuffer }
  /** The relayed socket drained its output. */
  | { type: "drain"; cid: number }
  /** The relayed socket closed. */
  | { type: "closed"; cid: number }
  /** Drain every connection, then report `stopped`. */
  | { type: "shutdown"; graceMs: number };

/** Worker → main thread. */
export type FromWorker =
  /** The agent module is loaded (with `streams`: ready for connections). */
  | { type: "loaded" }
  /** `reuseport`: listening, on this port. */
  | { type: "ready"; port: number }
  /** Could not load the agent module, or could not listen (e.g. the port is taken). */
  | { type: "failed"; stage: "load" | "listen"; message: string }
  /** Relayed output for a socket (a transferred buffer). */
  | { type: "write"; cid: number; bytes: ArrayBuffer }
  /** Relayed socket control. */
  | { type: "pause" | "resume" | "end" | "destroy"; cid: number }
  /** A connection handed over as streams is closed: forget it. */
  | { type: "gone"; cid: number }
  /** Every connection is closed after `shutdown`. */
  | { type: "stopped" }
  /**
   * The worker's metrics: their memory (first time only; the worker writes,
   * the main thread reads at each scrape) and their layout (when it changed).
   */
  | { type: "metrics"; buffer?: SharedArrayBuffer; layout: MetricsLayout };
