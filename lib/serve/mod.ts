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
import { loadAgentModule, moduleUrl } from "./module.ts";
import { startPool } from "./pool.ts";
import type { Dispatch } from "./pool_protocol.ts";
import { serve as serveAgent, SERVE_KEYS, type Server, type ServerOptions } from "./server.ts";

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
}

const KEYS: readonly string[] = [
  ...SERVE_KEYS,
  "workers",
  "dispatch",
  "args",
  "debug",
  "logFormat",
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
    ...rest
  } = options;
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
    return await serveAgent(agent, rest);
  }
  if (!(agent instanceof URL) && typeof agent !== "string") {
    throw new TypeError("Cannot serve: pass an Agent, or an agent module's URL or path");
  }
  const url = moduleUrl(agent);
  const log = rest.log ??
    createLogger({ level: debug ? Level.DEBUG : Level.INFO, format: logFormat });
  if (workers <= 1) {
    const loaded = await loadAgentModule(
      url,
      { workerId: 0, workers: 0, args, log },
      String(agent),
    );
    return await serveAgent(loaded, { ...rest, log });
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
    },
    log: log.child("main"),
  });
  return {
    hostname,
    port: pool.port,
    connections: undefined,
    shutdown: (graceMs = 3000) => pool.shutdown(graceMs),
  };
}
