/**
 * A listening agent: accepts connections with the runtime's sockets and runs
 * one {@linkcode Session} per connection.
 *
 * @module
 */

import { type Accept, IGNORED, type Listen } from "../agent/conn.ts";
import { Agent } from "../agent/handler.ts";
import { createLogger, type Logger } from "../agent/log.ts";
import {
  checkAddress,
  checkKeys,
  checkMaxConnections,
  checkSocket,
  checkTls,
  SESSION_OPTION_KEYS,
  sessionConfig,
} from "../agent/options.ts";
import {
  type ReferenceKnobs,
  Session,
  type SessionConfig,
  type SessionOptions,
  type Timers,
} from "../agent/session.ts";
import { runtimeListen } from "../runtime/mod.ts";
import { AgentMetrics } from "../metrics/agent.ts";

/**
 * Options of {@linkcode serve}. Session options default as in
 * `DEFAULT_SESSION_OPTIONS`; every value is checked, and a wrong one throws
 * a `RangeError` or `TypeError` that names it.
 */
export interface ServerOptions extends Partial<SessionOptions> {
  /** Address to bind; `"0.0.0.0"` (all IPv4 interfaces) by default. */
  hostname?: string;
  /** Port to bind; 12345 by default, 0 for any free port. */
  port?: number;
  /** Bind with SO_REUSEPORT, so that several listeners share the port. */
  reusePort?: boolean;
  /**
   * Listen on this Unix socket file instead of TCP (HAProxy:
   * `server s1 unix@/path`). A stale file is replaced, a live one refused;
   * the file is removed when the server stops.
   */
  path?: string;
  /** The socket file's mode, e.g. `0o660`; the umask's by default. */
  socketMode?: number;
  /**
   * Serve SPOP over TLS (TCP only), with this certificate (chain) and private
   * key in PEM (HAProxy: `server s1 host:port ssl verify required ca-file ca.pem`).
   */
  tls?: { cert: string; key: string };
  /** Connections served at once; more are closed as soon as they arrive. 10,000 by default. */
  maxConnections?: number;
  /** Where to log; info level on stderr by default. */
  log?: Logger;
  /**
   * The test knobs of HAProxy's example agent (`spoa -t`, `-f`): hold each
   * ACK back, close each connection after N NOTIFYs. Off by default.
   */
  reference?: Partial<ReferenceKnobs>;
}

/** What {@linkcode serve} accepts besides the public options: for tests and the pool. */
export interface InternalServeOptions extends ServerOptions {
  /** The socket adapter; the current runtime's by default. */
  listen?: Listen;
  /** Timer functions for sessions. */
  timers?: Timers;
  /** Where sessions count. */
  metrics?: AgentMetrics;
}

export const SERVE_KEYS: readonly string[] = [
  ...SESSION_OPTION_KEYS,
  "hostname",
  "port",
  "reusePort",
  "path",
  "socketMode",
  "tls",
  "maxConnections",
  "log",
  "reference",
];

/** A running agent. */
export interface Server {
  /** The bound address. */
  readonly hostname: string;
  /** The bound port. */
  readonly port: number;
  /** Connections open now; `undefined` when worker threads serve them. */
  readonly connections: number | undefined;
  /** The port of the metrics endpoint, when `serve()` was given `metrics`. */
  readonly metricsPort?: number;
  /**
   * Asks the agent module's `setup` to reload, as SIGHUP does to `spoa`
   * (servers of agent modules from `serve()`).
   */
  reload?(): void;
  /**
   * Stops accepting, lets each session finish its in-flight NOTIFYs and send
   * AGENT-DISCONNECT (status 0), and closes what is left after `graceMs`.
   *
   * @param graceMs How long sessions may take to drain.
   * @returns When every connection is closed.
   */
  shutdown(graceMs?: number): Promise<void>;
}

/** The default of `maxConnections`. */
export const DEFAULT_MAX_CONNECTIONS = 10_000;
const SWEEP_MS = 1000;

/** Options of {@linkcode createAcceptor}. */
export interface AcceptorOptions extends Partial<SessionOptions> {
  /** Connections served at once; more are closed as soon as they arrive. 10,000 by default. */
  maxConnections?: number;
  /** Where to log; info level on stderr by default. */
  log?: Logger;
  /** Timer functions for sessions (tests inject their own). */
  timers?: Timers;
  /** The reference agent's test knobs. */
  reference?: Partial<ReferenceKnobs>;
  /** Where sessions count (a private set of metrics by default). */
  metrics?: AgentMetrics;
}

/** Runs a session for each connection given to it, wherever they come from. */
export interface Acceptor {
  /** Starts a session on a connection; pass this to a listener. */
  readonly accept: Accept;
  /** Connections open now. */
  readonly connections: number;
  /**
   * Drains every session (see {@linkcode Server.shutdown}).
   *
   * @param graceMs How long sessions may take to drain.
   * @returns When every connection is closed.
   */
  shutdown(graceMs: number): Promise<void>;
}

/**
 * Creates the per-connection half of a server, for connections accepted
 * elsewhere (a worker handed connections by the main thread).
 *
 * @param agent The message handlers.
 * @param options How sessions behave.
 * @returns The acceptor.
 */
export function createAcceptor(agent: Agent, options: AcceptorOptions = {}): Acceptor {
  if (!(agent instanceof Agent)) {
    throw new TypeError("Cannot serve: the agent must be an Agent (new Agent().on(...))");
  }
  const sessionOptions: SessionConfig = sessionConfig(options, options.reference);
  checkMaxConnections(options.maxConnections);
  const log = options.log ?? createLogger();
  const sessions = new Set<Session>();
  const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const metrics = options.metrics ?? new AgentMetrics();
  const values = metrics.values;
  // The series of each handler's message exist from the start: a registry
  // read from another thread learns of series added later a little later.
  for (const name of agent.messages) metrics.message(name);
  let nextId = 1;
  let refused = 0;
  // Frame timeouts are checked by one sweep a second, running only while
  // there are connections (so an idle server keeps no timer).
  let sweep: ReturnType<typeof setInterval> | undefined;
  const now = () => options.timers?.clock?.() ?? Date.now();
  /** A session's connection closed (one function for all, rather than a closure each). */
  function forget(session: Session): void {
    values[metrics.open]!--;
    sessions.delete(session);
    if (sessions.size === 0 && sweep !== undefined) {
      clearInterval(sweep);
      sweep = undefined;
    }
  }
  return {
    accept(conn) {
      if (sessions.size >= maxConnections) {
        values[metrics.refused]!++;
        conn.destroy();
        // One line per 1,000 refusals: a flood must not flood the log too.
        if (refused++ % 1000 === 0) {
          log.warn(
            `refused a connection from ${conn.remote}: ${maxConnections} are open (--max-connections)`,
          );
        }
        return IGNORED;
      }
      if (sweep === undefined) {
        sweep = setInterval(() => {
          const t = now();
          for (const s of sessions) s.expire(t);
        }, SWEEP_MS);
      }
      const id = nextId++;
      const connLog = log.child(`#${id}`, { peer: conn.remote });
      if (connLog.debugEnabled) connLog.debug(`accepted ${conn.remote}`);
      const session = new Session(conn, agent, sessionOptions, connLog, options.timers, metrics);
      sessions.add(session);
      values[metrics.accepted]!++;
      values[metrics.open]!++;
      session.onClosed = forget;
      return session;
    },
    get connections() {
      return sessions.size;
    },
    async shutdown(graceMs) {
      const all = [...sessions].map((s) => s.shutdown());
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<void>((resolve) => timer = setTimeout(resolve, graceMs));
      await Promise.race([Promise.all(all), late]);
      clearTimeout(timer);
      for (const s of sessions) s.abort();
      await Promise.all([...sessions].map((s) => s.closed));
    },
  };
}

/**
 * Starts an agent.
 *
 * @param agent The message handlers.
 * @param options Where to listen and how sessions behave.
 * @returns The running server.
 *
 * @throws {RangeError} For an option out of range (e.g. `maxFrameSize` below 256).
 * @throws {TypeError} For an unknown option or a value of the wrong type.
 *
 * @example Serve one message on a free port, then stop
 * ```ts
 * import { Agent } from "../agent/handler.ts";
 * import { serve } from "./server.ts";
 *
 * const agent = new Agent().on("hello", (_msg, reply) => void reply.setVar("txn", "seen", true));
 * const server = await serve(agent, { hostname: "127.0.0.1", port: 0 });
 * await server.shutdown();
 * ```
 */
export function serve(agent: Agent, options: ServerOptions = {}): Promise<Server> {
  try {
    checkKeys("serve()", options, SERVE_KEYS);
  } catch (err) {
    return Promise.reject(err);
  }
  return serveWith(agent, options);
}

/**
 * {@linkcode serve} with the internal options too (a socket adapter, timers).
 *
 * @param agent The message handlers.
 * @param options Where to listen and how sessions behave.
 * @returns The running server.
 */
export async function serveWith(agent: Agent, options: InternalServeOptions): Promise<Server> {
  const hostname = options.hostname ?? "0.0.0.0";
  const port = options.port ?? 12345;
  const { path, socketMode } = options;
  if (path === undefined) checkAddress(hostname, port);
  else checkSocket(path, socketMode);
  const { tls } = options;
  if (tls !== undefined) checkTls(tls, path);
  const log = options.log ?? createLogger();
  const acceptor = createAcceptor(agent, { ...options, log });
  const reusePort = path === undefined && (options.reusePort ?? false);
  const listen = options.listen ?? await runtimeListen({ reusePort });
  const listener = await listen(
    {
      hostname,
      port,
      ...(reusePort ? { reusePort: true } : {}),
      ...(path === undefined ? {} : { path }),
      ...(socketMode === undefined ? {} : { mode: socketMode }),
      ...(tls === undefined ? {} : { tls }),
    },
    acceptor.accept,
  );
  if (path === undefined) {
    log.info(`listening on ${listener.hostname}:${listener.port}`, {
      address: listener.hostname,
      port: listener.port,
    });
  } else log.info(`listening on unix:${path}`, { address: `unix:${path}` });

  let stopping: Promise<void> | undefined;
  return {
    hostname: listener.hostname,
    port: listener.port,
    get connections() {
      return acceptor.connections;
    },
    shutdown(graceMs = 5000) {
      stopping ??= (async () => {
        listener.close();
        await acceptor.shutdown(graceMs);
      })();
      return stopping;
    },
  };
}
