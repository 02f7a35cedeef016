/**
 * A listening agent: accepts connections with the runtime's sockets and runs
 * one {@linkcode Session} per connection.
 *
 * @module
 */

import type { Accept, Listen } from "./conn.ts";
import type { Agent } from "./handler.ts";
import { createLogger, type Logger } from "./log.ts";
import { DEFAULT_SESSION_OPTIONS, Session, type SessionOptions, type Timers } from "./session.ts";
import { runtimeListen } from "./runtime/mod.ts";

/** Options of {@linkcode serve}; session options default as in `DEFAULT_SESSION_OPTIONS`. */
export interface ServeOptions extends AcceptorOptions {
  /** Address to bind; `"0.0.0.0"` (all IPv4 interfaces) by default. */
  hostname?: string;
  /** Port to bind; 12345 by default, 0 for any free port. */
  port?: number;
  /** Bind with SO_REUSEPORT, so that several listeners share the port. */
  reusePort?: boolean;
  /** The socket adapter; the current runtime's by default. */
  listen?: Listen;
}

/** A running agent. */
export interface Server {
  /** The bound address. */
  readonly hostname: string;
  /** The bound port. */
  readonly port: number;
  /** Connections open now. */
  readonly connections: number;
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
  const log = options.log ?? createLogger();
  const sessionOptions: SessionOptions = { ...DEFAULT_SESSION_OPTIONS };
  for (const key of Object.keys(DEFAULT_SESSION_OPTIONS) as (keyof SessionOptions)[]) {
    if (options[key] !== undefined) Object.assign(sessionOptions, { [key]: options[key] });
  }
  const sessions = new Set<Session>();
  const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  let nextId = 1;
  let refused = 0;
  // Frame timeouts are checked by one sweep a second, running only while
  // there are connections (so an idle server keeps no timer).
  let sweep: ReturnType<typeof setInterval> | undefined;
  const now = () => options.timers?.clock?.() ?? Date.now();
  function forget(session: Session): void {
    sessions.delete(session);
    if (sessions.size === 0 && sweep !== undefined) {
      clearInterval(sweep);
      sweep = undefined;
    }
  }
  return {
    accept(conn) {
      if (sessions.size >= maxConnections) {
        conn.destroy();
        // One line per 1,000 refusals: a flood must not flood the log too.
        if (refused++ % 1000 === 0) {
          log.warn(
            `refused a connection from ${conn.remote}: ${maxConnections} are open (--max-connections)`,
          );
        }
        return { onData() {}, onDrain() {}, onClose() {} };
      }
      if (sweep === undefined) {
        sweep = setInterval(() => {
          const t = now();
          for (const s of sessions) s.expire(t);
        }, SWEEP_MS);
      }
      const id = nextId++;
      const connLog = log.child(`#${id}`);
      if (connLog.debugEnabled) connLog.debug(`accepted ${conn.remote}`);
      const session = new Session(conn, agent, sessionOptions, connLog, options.timers);
      sessions.add(session);
      void session.closed.then(() => forget(session));
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
 * @example Serve one message on a free port, then stop
 * ```ts ignore
 * import { Agent } from "./handler.ts";
 * import { serve } from "./server.ts";
 *
 * const agent = new Agent().on("hello", (_msg, reply) => void reply.setVar("txn", "seen", true));
 * const server = await serve(agent, { hostname: "127.0.0.1", port: 0 });
 * await server.shutdown();
 * ```
 */
export async function serve(agent: Agent, options: ServeOptions = {}): Promise<Server> {
  const log = options.log ?? createLogger();
  const acceptor = createAcceptor(agent, { ...options, log });
  const listen = options.listen ?? await runtimeListen({ reusePort: options.reusePort ?? false });
  const listener = await listen(
    {
      hostname: options.hostname ?? "0.0.0.0",
      port: options.port ?? 12345,
      ...(options.reusePort ? { reusePort: true } : {}),
    },
    acceptor.accept,
  );
  log.info(`listening on ${listener.hostname}:${listener.port}`);

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
