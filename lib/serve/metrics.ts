/**
 * The operator's HTTP endpoint (`spoa --metrics ADDR:PORT`): `GET /metrics`
 * in the Prometheus text format, every worker summed, and `GET /health`.
 * The main thread serves it; workers only write their counters into shared
 * memory, which this reads at each scrape.
 *
 * @module
 */

import process from "node:process";
import type { Logger } from "../agent/log.ts";
import { errorText } from "../agent/log.ts";
import {
  type MetricsLayout,
  MetricsRegistry,
  onLayoutChange,
  slotOf,
} from "../metrics/registry.ts";
import {
  type MetricsSource,
  PROMETHEUS_CONTENT_TYPE,
  renderPrometheus,
} from "../metrics/render.ts";
import { type HttpRoute, type HttpServer, serveHttp } from "../runtime/http.ts";
import type { ModuleSetup, Routes } from "./setup.ts";
import { readProcSelf } from "../runtime/mod.ts";
import { VERSION } from "../version.ts";

/** What the endpoint reports on. */
export interface MetricsTarget {
  /** When the process started, in milliseconds since the epoch (`performance.timeOrigin` of the main thread). */
  readonly startTime?: number;
  /** Every registry to sum: workers', and the main thread's own (added by the endpoint). */
  sources(): MetricsSource[];
  /** Workers serving now (1 for the single-thread agent while it serves). */
  workersUp(): number;
  /** Workers the agent runs (0: the single-thread agent). */
  readonly workers: number;
  /** Workers started so far, replacements included. */
  started(): number;
  /** Whether the agent is stopping (`/health` then answers 503). */
  draining(): boolean;
  /** Connections open now, if known on this thread. */
  connections(): number | undefined;
  /** The agent module's own routes, served beside `/metrics` and `/health`. */
  readonly routes?: Routes;
  /** The latest value the module's setup shared, given to its routes. */
  shared?(): unknown;
}

/** The running endpoint. */
export interface MetricsEndpoint {
  /** The bound address. */
  readonly hostname: string;
  /** The bound port. */
  readonly port: number;
  /** Stops it. */
  close(): Promise<void>;
}

/** Which runtime runs us, with its version, e.g. `deno 2.9.6`. */
function runtimeName(): string {
  const v = process.versions as Record<string, string | undefined>;
  if (v.bun !== undefined) return `bun ${v.bun}`;
  if (v.deno !== undefined) return `deno ${v.deno}`;
  return `node ${process.versions.node}`;
}

/**
 * The main thread's own metrics: build, process and workers, read at each
 * scrape.
 */
function processMetrics(target: MetricsTarget, startTime: number) {
  const registry = new MetricsRegistry({ capacity: 64 });
  registry.gauge({
    name: "spoa_build_info",
    help: "Always 1; the labels tell the version of spoa and the runtime running it.",
    labelNames: ["version", "runtime"],
  }).with({ version: VERSION, runtime: runtimeName() }).set(1);
  const up = registry.gauge({ name: "spoa_workers_up", help: "Worker threads serving now." });
  const restarts = slotOf(registry.counter({
    name: "spoa_worker_restarts_total",
    help: "Worker threads started again after one ended unexpectedly.",
  }));
  const rss = registry.gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes.",
  });
  // Counters whose totals are read elsewhere: stored into their slots.
  const cpu = slotOf(registry.counter({
    name: "process_cpu_seconds_total",
    help: "Total user and system CPU time spent in seconds.",
  }));
  registry.gauge({
    name: "process_start_time_seconds",
    help: "Start time of the process since unix epoch in seconds.",
  }).set(Math.round(startTime) / 1000);
  // Only where /proc/self can be read: Linux (under Deno, with --allow-all only).
  const fds = openFiles() === undefined
    ? undefined
    : registry.gauge({ name: "process_open_fds", help: "Number of open file descriptors." });
  const limit = maxOpenFiles();
  if (limit !== undefined) {
    registry.gauge({
      name: "process_max_fds",
      help: "Maximum number of open file descriptors.",
    }).set(limit);
  }
  return {
    registry,
    /** Reads the process's state into the gauges. */
    update() {
      up.set(target.workersUp());
      registry.values[restarts] = Math.max(0, target.started() - target.workers);
      rss.set(process.memoryUsage.rss());
      const usage = process.cpuUsage();
      registry.values[cpu] = (usage.user + usage.system) / 1e6;
      const open = fds === undefined ? undefined : openFiles();
      if (open !== undefined) fds!.set(open);
    },
  };
}

/** Open descriptors, from /proc (Linux; Deno lets only --allow-all read /proc/self). */
function openFiles(): number | undefined {
  return readProcSelf("fd/")?.split("\n").length;
}

/** The soft limit on open files, from /proc (Linux); `undefined` elsewhere. */
function maxOpenFiles(): number | undefined {
  const line = readProcSelf("limits")?.split("\n").find((l) => l.startsWith("Max open files"));
  const soft = line?.slice("Max open files".length).trim().split(/\s+/)[0];
  return soft === undefined || soft === "unlimited" ? undefined : Number(soft);
}

/**
 * Serves `/metrics` and `/health`.
 *
 * @param hostname The address to bind.
 * @param port The port (0 for any free one).
 * @param target What to report on.
 * @param log Where to log the address and route errors; `undefined` to report them to `onError`.
 * @param onError Hears of route errors when there is no `log`.
 * @returns The endpoint, once it listens.
 */
export async function startMetricsEndpoint(
  hostname: string,
  port: number,
  target: MetricsTarget,
  log: Logger | undefined,
  onError: (text: string) => void = () => {},
): Promise<MetricsEndpoint> {
  const own = processMetrics(target, target.startTime ?? performance.timeOrigin);
  let server: HttpServer;
  try {
    server = await serveHttp(hostname, port, {
      ...moduleRoutes(target),
      "/metrics": () => {
        own.update();
        return {
          status: 200,
          type: PROMETHEUS_CONTENT_TYPE,
          body: renderPrometheus([
            { layout: own.registry.layout(), values: own.registry.values },
            ...target.sources(),
          ]),
        };
      },
      "/health": () => {
        const workers = target.workersUp();
        const draining = target.draining();
        const status = draining ? "draining" : workers === 0 ? "no worker up" : "serving";
        const connections = target.connections();
        const body = {
          status,
          version: VERSION,
          workers_up: workers,
          ...(connections === undefined ? {} : { connections }),
        };
        return {
          status: status === "serving" ? 200 : 503,
          type: "application/json",
          body: JSON.stringify(body) + "\n",
        };
      },
    }, (err) => {
      if (log !== undefined) log.error(`metrics endpoint: ${errorText(err)}`);
      else onError(errorText(err));
    });
  } catch (err) {
    throw new Error(`Cannot listen on ${hostname}:${port} for --metrics: ${errorText(err)}`);
  }
  if (log !== undefined) logListening(log, server);
  return server;
}

/** The agent module's routes, as the HTTP server calls them. */
function moduleRoutes(target: MetricsTarget): Record<string, HttpRoute> {
  const routes: Record<string, HttpRoute> = {};
  for (const [path, route] of Object.entries(target.routes ?? {})) {
    routes[path] = async (url) => {
      const response = await route(new Request(url), target.shared?.());
      if (!(response instanceof Response)) {
        throw new TypeError(`the agent module's route ${path} did not return a Response`);
      }
      return {
        status: response.status,
        type: response.headers.get("content-type") ?? "text/plain; charset=utf-8",
        body: await response.text(),
      };
    };
  }
  return routes;
}

/** The line saying where the endpoint listens. */
function logListening(log: Logger, where: { hostname: string; port: number }): void {
  const shown = where.hostname.includes(":") ? `[${where.hostname}]` : where.hostname;
  log.info(`metrics on http://${shown}:${where.port}/metrics`, {
    address: where.hostname,
    port: where.port,
  });
}

/** Main thread → metrics thread. */
export type ToMetricsThread =
  | {
    type: "start";
    hostname: string;
    port: number;
    /** The serving thread's registry: its memory and layout. */
    buffer: SharedArrayBuffer;
    layout: MetricsLayout;
    /** The slot of `spoa_connections_open` in it. */
    openSlot: number;
    /** Index 0: 1 once the agent drains. */
    state: SharedArrayBuffer;
    startTime: number;
    /** The agent module whose routes to serve, with its latest shared value. */
    module?: { url: string; label: string; shared: unknown };
  }
  | { type: "layout"; layout: MetricsLayout }
  /** The module's setup published a new value. */
  | { type: "shared"; value: unknown }
  | { type: "stop" };

/** Metrics thread → main thread. */
export type FromMetricsThread =
  | { type: "listening"; hostname: string; port: number }
  | { type: "failed"; message: string }
  | { type: "error"; message: string }
  | { type: "stopped" };

/** Options of {@linkcode startMetricsThread}. */
export interface MetricsThreadOptions {
  /** The metrics thread's module; `./metrics_worker.ts` by default. */
  workerUrl?: URL;
  /** An agent module with routes: its URL, its name for errors, and its running setup. */
  module?: { url: string; label: string; setup: ModuleSetup };
}

/** An endpoint on a thread of its own, and how to tell it the agent drains. */
export interface MetricsThread extends MetricsEndpoint {
  /** `/health` answers 503 from now on. */
  draining(): void;
}

/**
 * Serves the endpoint of an agent that runs on this thread (`-n 0` or `-n
 * 1`, `serve()` of an `Agent`) from a Worker of its own, which reads the
 * registry's shared memory: scrapes never wait for or delay SPOP, and on
 * Deno the HTTP listener does not share the SPOP thread's event loop (it
 * cost that loop 3 % of its messages per second; bench/RESULTS.md §12).
 *
 * @param hostname The address to bind.
 * @param port The port (0 for any free one).
 * @param registry The serving thread's registry.
 * @param openSlot The slot of `spoa_connections_open`.
 * @param log Where to log the address and route errors.
 * @param options The worker's module (`main.ts` gives it, for compiled
 * binaries), and the agent module whose routes to serve with its setup.
 * @returns The endpoint, once it listens.
 */
export function startMetricsThread(
  hostname: string,
  port: number,
  registry: MetricsRegistry,
  openSlot: number,
  log: Logger,
  options: MetricsThreadOptions = {},
): Promise<MetricsThread> {
  const workerUrl = options.workerUrl ?? new URL("./metrics_worker.ts", import.meta.url);
  const module = options.module;
  const worker = new Worker(workerUrl.href, { type: "module" });
  const state = new Int32Array(new SharedArrayBuffer(4));
  const post = (message: ToMetricsThread) => worker.postMessage(message);
  onLayoutChange(registry, (layout) => post({ type: "layout", layout }));
  let stopped: (() => void) | undefined;
  return new Promise((resolve, reject) => {
    worker.onmessage = (event: MessageEvent<FromMetricsThread>) => {
      const message = event.data;
      switch (message.type) {
        case "listening": {
          logListening(log, message);
          let closing: Promise<void> | undefined;
          resolve({
            hostname: message.hostname,
            port: message.port,
            draining: () => Atomics.store(state, 0, 1),
            close() {
              closing ??= new Promise<void>((done) => {
                const timer = setTimeout(done, 2000);
                stopped = () => {
                  clearTimeout(timer);
                  done();
                };
                post({ type: "stop" });
              }).then(() => {
                registry.onChange = undefined;
                worker.terminate();
              });
              return closing;
            },
          });
          break;
        }
        case "failed":
          worker.terminate();
          registry.onChange = undefined;
          reject(new Error(message.message));
          break;
        case "error":
          log.error(`metrics endpoint: ${message.message}`);
          break;
        case "stopped":
          stopped?.();
          break;
      }
    };
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      worker.terminate();
      reject(new Error(`Cannot start the metrics thread: ${event.message}`));
    };
    post({
      type: "start",
      hostname,
      port,
      buffer: registry.buffer,
      layout: registry.layout(),
      openSlot,
      state: state.buffer as SharedArrayBuffer,
      startTime: performance.timeOrigin,
      ...(module === undefined
        ? {}
        : { module: { url: module.url, label: module.label, shared: module.setup.shared } }),
    });
    module?.setup.onPublish((value) => post({ type: "shared", value }));
  });
}
