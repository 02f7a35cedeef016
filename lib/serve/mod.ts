/**
 * `serve()`: runs an agent given as an {@linkcode Agent} on this thread, or
 * an agent module (a URL or path, see `module.ts`) on this thread or on a
 * pool of worker threads.
 *
 * @module
 */

import { Agent } from "../agent/handler.ts";
import { createLogger, Level, type LogFormat } from "../agent/log.ts";
import {
  checkAddress,
  checkKeys,
  checkMaxConnections,
  checkSocket,
  checkTls,
  SESSION_OPTION_KEYS,
  sessionConfig,
} from "../agent/options.ts";
import type { SessionOptions } from "../agent/session.ts";
import { loadAgentModule, moduleUrl, setupAgentModule } from "./module.ts";
import type { ModuleSetup } from "./setup.ts";
import { startPool } from "./pool.ts";
import type { Dispatch } from "./pool_protocol.ts";
import { SERVE_KEYS, type Server, type ServerOptions, serveWith } from "./server.ts";
import {
  type MetricsEndpoint,
  type MetricsThreadOptions,
  startMetricsEndpoint,
  startMetricsThread,
} from "./metrics.ts";
import { AgentMetrics } from "../metrics/agent.ts";
import { MetricsRegistry } from "../metrics/registry.ts";

/** Options of {@linkcode serve}. */
export interface ServeOptions extends ServerOptions {
  /**
   * For an agent module: worker threads that each run the module (with
   * SO_REUSEPORT, or `dispatch: "streams"`); 0 or 1 runs it on this thread.
   * 1 by default. An `Agent` object always runs on this thread.
   */
  workers?: number;
  /** How connections reach the workers: `"reuseport"` (default) or `"streams"`. */
  dispatch?: Dispatch;
  /** The module's arguments (`context.args` of its default-export function). */
  args?: readonly string[];
  /** Workers log at debug level (they log on stderr; `log` is this thread's). */
  debug?: boolean;
  /** How workers write their log lines: `"text"` (default) or `"json"`. */
  logFormat?: LogFormat;
  /**
   * Serve Prometheus metrics (`GET /metrics`, every worker summed) and
   * `GET /health` over HTTP on this address, as `spoa --metrics` does.
   * `hostname` is `"127.0.0.1"` by default. Off by default.
   */
  metrics?: { hostname?: string; port: number };
}

const KEYS: readonly string[] = [
  ...SERVE_KEYS,
  "workers",
  "dispatch",
  "args",
  "debug",
  "logFormat",
  "metrics",
];
const MAX_WORKERS = 1024;

/**
 * Starts an agent: an {@linkcode Agent} on this thread, or an agent module
 * (its URL or path) on this thread or on `workers` threads. A module's
 * default export is an `Agent`, an object mapping message names to
 * handlers, or a function of its context returning either.
 *
 * @param agent The agent, or the agent module's URL or path.
 * @param options Where to listen, how sessions behave, and how many workers.
 * @returns The running server.
 * @throws {RangeError} For an option out of range (e.g. `maxFrameSize` below 256).
 * @throws {TypeError} For an unknown option or a value of the wrong type.
 * @throws {AgentModuleError} For a module that cannot be used.
 *
 * @example Run an agent module on four workers
 * ```ts
 * import { serve } from "./mod.ts";
 *
 * const module = new URL("../iprep/agent.ts", import.meta.url);
 * const server = await serve(module, { workers: 4, hostname: "127.0.0.1", port: 0 });
 * console.log(`listening on port ${server.port}`);
 * await server.shutdown();
 * ```
 */
export async function serve(
  agent: Agent | URL | string,
  options: ServeOptions = {},
): Promise<Server> {
  checkKeys("serve()", options, KEYS);
  const {
    workers = 1,
    dispatch = "reuseport",
    args = [],
    debug = false,
    logFormat = "text",
    metrics: httpMetrics,
    ...rest
  } = options;
  const where = checkMetrics(httpMetrics);
  if (!Number.isInteger(workers) || workers < 0 || workers > MAX_WORKERS) {
    throw new RangeError(
      `Cannot use workers ${workers}: it must be an integer from 0 to ${MAX_WORKERS}`,
    );
  }
  if (dispatch !== "reuseport" && dispatch !== "streams") {
    throw new TypeError(
      `Cannot use dispatch ${JSON.stringify(dispatch)}: use "reuseport" or "streams"`,
    );
  }
  if (!Array.isArray(args) || args.some((a) => typeof a !== "string")) {
    throw new TypeError("Cannot use args: it must be an array of strings");
  }
  if (agent instanceof Agent) {
    if (workers > 1) {
      throw new TypeError(
        "Cannot run an Agent object on several workers: pass its module's URL instead",
      );
    }
    return await onThisThread(agent, rest, where);
  }
  if (!(agent instanceof URL) && typeof agent !== "string") {
    throw new TypeError("Cannot serve: pass an Agent, or an agent module's URL or path");
  }
  const url = moduleUrl(agent);
  const log = rest.log ??
    createLogger({ level: debug ? Level.DEBUG : Level.INFO, format: logFormat });
  const registry = new MetricsRegistry({ warn: (text) => log.warn(text) });
  const label = String(agent);
  const { setup, routes } = await setupAgentModule(
    url,
    { args, workers: workers <= 1 ? 0 : workers, log, metrics: registry },
    label,
  );
  if (workers <= 1) {
    const shared = setup.view();
    let loaded: Agent;
    try {
      loaded = await loadAgentModule(
        url,
        { workerId: 0, workers: 0, args, log, metrics: registry, shared },
        label,
      );
    } catch (err) {
      setup.close();
      throw err;
    }
    const module = Object.keys(routes).length === 0 ? undefined : { url: url.href, label, setup };
    return withSetup(await onThisThread(loaded, { ...rest, log }, where, registry, module), setup);
  }
  // The options are checked here, once, as they would be on this thread.
  const {
    reference,
    maxConnections,
    hostname = "0.0.0.0",
    port = 12345,
    path,
    socketMode,
    tls,
    reusePort: _,
  } = rest;
  const session = sessionConfig(rest, reference);
  checkMaxConnections(maxConnections);
  if (path === undefined) checkAddress(hostname, port);
  else checkSocket(path, socketMode);
  if (tls !== undefined) checkTls(tls, path);
  const pool = await startPool({
    shared: setup.shared,
    workers,
    // One process cannot bind a Unix socket twice: the main thread accepts.
    dispatch: path === undefined ? dispatch : "streams",
    hostname,
    port,
    ...(path === undefined ? {} : { path }),
    ...(socketMode === undefined ? {} : { socketMode }),
    config: {
      debug,
      logFormat,
      ...(tls === undefined ? {} : { tls }),
      agent: { module: url.href, label: String(agent), args: [...args] },
      // The session options alone: the knobs travel apart.
      session: Object.fromEntries(
        SESSION_OPTION_KEYS.map((key) => [key, session[key as keyof SessionOptions]]),
      ),
      reference: { replyDelay: session.replyDelay, closeAfterFrames: session.closeAfterFrames },
      ...(maxConnections === undefined ? {} : {
        maxConnections: Math.ceil(maxConnections / workers),
      }),
      ...(where === undefined ? {} : { metrics: true }),
    },
    log: log.child("main"),
  }).catch((err) => {
    setup.close();
    throw err;
  });
  setup.onPublish((value) => pool.publish(value));
  let draining = false;
  return withSetup(
    await withEndpoint(
      {
        hostname,
        port: pool.port,
        connections: undefined,
        shutdown: (graceMs = 3000) => pool.shutdown(graceMs),
      },
      where,
      async (address, metricsPort) => ({
        endpoint: await startMetricsEndpoint(address, metricsPort, {
          // The main thread's own: what the module's setup counts.
          sources: () => [
            ...pool.metricsSources(),
            { layout: registry.layout(), values: registry.values },
          ],
          workersUp: () => pool.ready,
          workers,
          started: () => pool.started,
          draining: () => draining,
          connections: () => undefined,
          routes,
          shared: () => setup.shared,
        }, log.child("main")),
        draining: () => draining = true,
      }),
    ),
    setup,
  );
}

/** Adds the module setup's `reload()` to a server, and stops the setup with it. */
function withSetup(server: Server, setup: ModuleSetup): Server {
  return wrap(server, {
    metricsPort: server.metricsPort,
    reload: () => setup.reload(),
    before: () => setup.close(),
  });
}

/**
 * A server that is `server` with a few more parts: a metrics port, a
 * `reload()`, and what to do before and after its shutdown (once).
 */
function wrap(
  server: Server,
  more: {
    metricsPort?: number | undefined;
    reload?: () => void;
    before?: () => void;
    after?: () => Promise<void>;
  },
): Server {
  let stopping: Promise<void> | undefined;
  return {
    hostname: server.hostname,
    port: server.port,
    get connections() {
      return server.connections;
    },
    ...(more.metricsPort === undefined ? {} : { metricsPort: more.metricsPort }),
    ...(more.reload === undefined ? {} : { reload: more.reload }),
    shutdown(graceMs?: number) {
      more.before?.();
      stopping ??= server.shutdown(graceMs).finally(() => more.after?.());
      return stopping;
    },
  };
}

/** Runs an agent on this thread, with the metrics endpoint if asked for. */
async function onThisThread(
  agent: Agent,
  options: ServerOptions,
  where: { hostname: string; port: number } | undefined,
  registry = new MetricsRegistry(),
  module?: MetricsThreadOptions["module"],
): Promise<Server> {
  checkKeys("serve()", options, SERVE_KEYS);
  const metrics = new AgentMetrics(registry, where !== undefined);
  const server = await serveWith(agent, { ...options, metrics });
  const log = options.log ?? createLogger();
  // The endpoint gets a thread of its own (see startMetricsThread).
  return await withEndpoint(server, where, async (hostname, port) => {
    const thread = await startMetricsThread(
      hostname,
      port,
      registry,
      metrics.open,
      log,
      module === undefined ? {} : { module },
    );
    return { endpoint: thread, draining: thread.draining };
  });
}

/** Adds the metrics endpoint to a running server; it stops with the server. */
async function withEndpoint(
  server: Server,
  where: { hostname: string; port: number } | undefined,
  start: (
    hostname: string,
    port: number,
  ) => Promise<{ endpoint: MetricsEndpoint; draining: () => void }>,
): Promise<Server> {
  if (where === undefined) return server;
  let started;
  try {
    started = await start(where.hostname, where.port);
  } catch (err) {
    await server.shutdown(0);
    throw err;
  }
  const { endpoint, draining } = started;
  return wrap(server, {
    metricsPort: endpoint.port,
    before: draining,
    after: () => endpoint.close(),
  });
}

/** Checks `metrics` (an address for the endpoint) as it enters. */
function checkMetrics(value: unknown): { hostname: string; port: number } | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== "object") {
    throw new TypeError("Cannot use metrics: it must be an object such as { port: 9100 }");
  }
  const { hostname = "127.0.0.1", port, ...others } = value as Record<string, unknown>;
  const unknown = Object.keys(others);
  if (unknown.length > 0) {
    throw new TypeError(`Cannot use metrics: unknown option "${unknown[0]}" (hostname, port)`);
  }
  if (typeof hostname !== "string" || hostname === "") {
    throw new TypeError("Cannot use metrics.hostname: it must be a non-empty string");
  }
  if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(
      `Cannot use metrics.port ${String(port)}: it must be an integer from 0 to 65535`,
    );
  }
  return { hostname, port };
}
