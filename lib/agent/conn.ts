/**
 * The contract between a session and the runtime that owns its socket. A
 * runtime adapter (`./runtime/*.ts`) gives each accepted connection a
 * {@linkcode Conn} and forwards socket events to the {@linkcode ConnHandler}
 * it got back; the session knows nothing else about sockets.
 *
 * @module
 */

/** One TCP connection, as the session sees it. */
export interface Conn {
  /** The peer's address, for logs (e.g. `"127.0.0.1:41234"`). */
  readonly remote: string;
  /** Bytes accepted by `write()` that the kernel has not taken yet. */
  readonly queued: number;
  /**
   * Sends the first `length` bytes of `bytes` (the session passes its whole
   * reused write buffer, so that no view is made per write). The connection
   * copies what it cannot send at once, so the caller may reuse `bytes` as
   * soon as this returns. Each call is one socket write when the socket has
   * room.
   */
  write(bytes: Uint8Array, length: number): void;
  /** Stops delivering data until `resume()`. */
  pause(): void;
  /** Delivers data again after `pause()`. */
  resume(): void;
  /** Sends what is queued, then closes. Safe to call more than once. */
  close(): void;
  /** Closes at once, dropping queued output. Safe to call more than once. */
  destroy(): void;
}

/** What a connection reports to (implemented by the session). */
export interface ConnHandler {
  /**
   * Bytes arrived. `bytes` may be a reused read buffer: it is only valid
   * during this call.
   */
  onData(bytes: Uint8Array, length: number): void;
  /** Everything queued was sent. */
  onDrain(): void;
  /**
   * The peer finished sending (its FIN arrived); the connection stays open
   * for what is still to be sent, until `close()`.
   */
  onEnd(): void;
  /** The connection is closed (by either side, or by an error). Called once. */
  onClose(): void;
}

/** The handler of a connection refused at once (already destroyed): it ignores everything. */
export const IGNORED: ConnHandler = {
  onData() {},
  onDrain() {},
  onEnd() {},
  onClose() {},
};

/** Where and how to listen. */
export interface ListenOptions {
  /** Address to bind; `"0.0.0.0"` for all IPv4 interfaces. */
  hostname: string;
  /** Port to bind; 0 picks a free one. */
  port: number;
  /** Share the port with other listeners of this process (SO_REUSEPORT). */
  reusePort?: boolean;
  /** Listen on this Unix socket file instead of TCP (`hostname` and `port` are ignored). */
  path?: string;
  /** The socket file's mode, e.g. `0o660` (Unix sockets only). */
  mode?: number;
  /** Serve TLS over TCP with this certificate (chain) and private key, in PEM. */
  tls?: { cert: string; key: string };
}

/** A listening socket. */
export interface Listener {
  /** The bound address. */
  readonly hostname: string;
  /** The bound port (the real one when 0 was asked for); 0 for a Unix socket. */
  readonly port: number;
  /** The socket file, for a Unix socket. */
  readonly path?: string;
  /** Stops accepting; open connections stay. */
  close(): void;
}

/** Called for each accepted connection; returns who receives its events. */
export type Accept = (conn: Conn) => ConnHandler;

/** Opens a listener with a runtime's own sockets. */
export type Listen = (options: ListenOptions, accept: Accept) => Promise<Listener>;

/** A connection handed over whole as a pair of byte streams (Deno's `conn.readable`/`writable`). */
export interface StreamPair {
  /** The peer's address, for logs. */
  readonly remote: string;
  /** Bytes from the peer. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Bytes to the peer. */
  readonly writable: WritableStream<Uint8Array>;
  /** Closes the connection (when whoever got the streams is gone). */
  close(): void;
  /**
   * Settles once the connection is closed on this side: after the last bytes
   * written to `writable` went to the socket, or after `close()`. Whoever
   * holds the socket waits for it before ending, so that a worker's last
   * frame (an AGENT-DISCONNECT at shutdown) is not lost on the way.
   */
  readonly closed: Promise<void>;
}

/** Opens a listener that hands each connection over as streams, to be transferred. */
export type ListenStreams = (
  options: ListenOptions,
  onConn: (pair: StreamPair) => void,
) => Promise<Listener>;
