/**
 * Sockets on Bun: `Bun.listen` with one shared set of handlers and the
 * connection object in `socket.data` (`../shared/docs/platform.md`: Bun's
 * `socket.write` returns how many bytes the kernel took and keeps none of the
 * rest, so the rest is queued here and sent on `drain`).
 *
 * The Bun API is described by local interfaces, so that `deno check` needs
 * no Bun type package.
 *
 * @module
 */

import type { Conn, ConnHandler, Listen } from "../agent/conn.ts";
import { prepareSocketPath, removeSocketPath, setSocketMode } from "./_unix.ts";

interface BunSocket {
  data: BunConn;
  readonly remoteAddress: string;
  readonly remotePort?: number;
  /** Writes `data[byteOffset, byteOffset + byteLength)`; returns the bytes taken. */
  write(data: Uint8Array, byteOffset?: number, byteLength?: number): number;
  end(): void;
  /** Without an argument: sends FIN and keeps reading (a half-close). */
  shutdown(): void;
  terminate(): void;
  pause(): void;
  resume(): void;
  setNoDelay?(enabled: boolean): void;
}

interface BunSocketHandlers {
  open(socket: BunSocket): void;
  data(socket: BunSocket, data: Uint8Array): void;
  drain(socket: BunSocket): void;
  close(socket: BunSocket): void;
  error(socket: BunSocket, error: Error): void;
  end(socket: BunSocket): void;
}

interface BunTcpListener {
  readonly hostname: string;
  readonly port: number;
  stop(closeActiveConnections?: boolean): void;
}

interface BunApi {
  listen(options: {
    hostname?: string;
    port?: number;
    unix?: string;
    tls?: { cert: string; key: string };
    reusePort?: boolean;
    allowHalfOpen?: boolean;
    socket: BunSocketHandlers;
  }): BunTcpListener;
}

const Bun = (globalThis as unknown as { Bun: BunApi }).Bun;

/** How long a closing connection waits for the peer's FIN before it closes anyway. */
const LINGER_MS = 2000;

/** Bytes of one read handed to a session at a time (larger reads go in slices). */
const READ_SLICE = 64 * 1024;
/**
 * One read buffer for every connection of this thread. Bun hands each read
 * a new `Uint8Array`, and the first use of its `.buffer` (the codec's
 * `DataView`) makes JavaScriptCore allocate an `ArrayBuffer` for it: 10 % of
 * the agent's CPU in a profile. A session keeps nothing of `bytes` after
 * `onData` returns (`ConnHandler`), so one buffer serves all, with one
 * `DataView` that the codec keeps.
 */
const READ_BUFFER = new Uint8Array(READ_SLICE);

/** Hands a read to a handler through the shared read buffer. */
function readInto(handler: ConnHandler, data: Uint8Array): void {
  for (let at = 0; at < data.length; at += READ_SLICE) {
    const end = Math.min(at + READ_SLICE, data.length);
    READ_BUFFER.set(at === 0 && end === data.length ? data : data.subarray(at, end));
    handler.onData(READ_BUFFER, end - at);
  }
}

/**
 * Listens with `Bun.listen` and serves each accepted connection.
 *
 * @param options Address, port and SO_REUSEPORT.
 * @param accept Called for each connection.
 * @returns The listener.
 */
export const listen: Listen = async (options, accept) => {
  const path = options.path;
  if (path !== undefined) await prepareSocketPath(path);
  const server = Bun.listen({
    ...(path !== undefined ? { unix: path } : { hostname: options.hostname, port: options.port }),
    ...(options.reusePort && path === undefined ? { reusePort: true } : {}),
    ...(options.tls === undefined ? {} : { tls: { cert: options.tls.cert, key: options.tls.key } }),
    // After the peer's FIN, what is still to be sent goes out first (`end` below).
    allowHalfOpen: true,
    socket: {
      open(socket) {
        const conn = new BunConn(socket);
        socket.data = conn;
        try {
          conn.handler = accept(conn);
        } catch {
          socket.end();
        }
      },
      data(socket, data) {
        const handler = socket.data.handler;
        if (handler !== undefined) readInto(handler, data);
      },
      drain(socket) {
        socket.data.flush();
      },
      end(socket) {
        socket.data.peerEnded();
      },
      close(socket) {
        socket.data.closed();
      },
      error(socket) {
        socket.data.closed();
      },
    },
  });
  if (path !== undefined) {
    setSocketMode(path, options.mode, () => server.stop(false));
    let closed = false;
    return {
      hostname: `unix:${path}`,
      port: 0,
      path,
      close: () => {
        if (closed) return;
        closed = true;
        server.stop(false);
        removeSocketPath(path);
      },
    };
  }
  return { hostname: server.hostname, port: server.port, close: () => server.stop(false) };
};

class BunConn implements Conn {
  readonly remote: string;
  handler: ConnHandler | undefined;
  readonly #socket: BunSocket;
  #out = new Uint8Array(0);
  #outLen = 0;
  #closeRequested = false;
  /** FIN sent: reading on, only to drop what the peer still sends, until its FIN. */
  #halfClosed = false;
  /** The peer's FIN arrived: what is queued still goes out, then the close. */
  #peerEnded = false;
  #linger: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  constructor(socket: BunSocket) {
    this.#socket = socket;
    const host = socket.remoteAddress;
    const port = socket.remotePort;
    this.remote = !host
      ? "unix"
      : port === undefined
      ? host
      : host.includes(":")
      ? `[${host}]:${port}`
      : `${host}:${port}`;
  }

  get queued(): number {
    return this.#outLen;
  }

  write(bytes: Uint8Array, length: number): void {
    if (this.#closed || this.#closeRequested) return;
    let sent = 0;
    if (this.#outLen === 0) {
      // Bun writes a range of the buffer: no view is made.
      sent = this.#socket.write(bytes, 0, length);
      if (sent >= length) return;
      if (sent < 0) sent = 0;
    }
    this.#queue(bytes.subarray(sent, length));
  }

  /** Sends queued output (on `drain`). */
  flush(): void {
    if (this.#outLen === 0 || this.#closed) return;
    const n = this.#socket.write(this.#out.subarray(0, this.#outLen));
    if (n > 0) {
      this.#out.copyWithin(0, n, this.#outLen);
      this.#outLen -= n;
    }
    if (this.#outLen > 0) return;
    if (this.#closeRequested) this.#finish();
    else this.handler?.onDrain();
  }

  pause(): void {
    if (!this.#closed && !this.#halfClosed) this.#socket.pause();
  }

  resume(): void {
    if (!this.#closed) this.#socket.resume();
  }

  close(): void {
    if (this.#closed) return;
    if (this.#outLen > 0) this.#closeRequested = true;
    else this.#finish();
  }

  destroy(): void {
    if (this.#closed) return;
    this.#outLen = 0;
    this.#socket.terminate();
  }

  /** The peer's FIN arrived (`end`). */
  peerEnded(): void {
    if (this.#closed) return;
    this.#peerEnded = true;
    if (this.#halfClosed) return this.#socket.end(); // Both sides are done.
    this.handler?.onEnd();
  }

  /** The socket is gone (`close` or `error`). */
  closed(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#linger);
    this.#outLen = 0;
    this.handler?.onClose();
  }

  /**
   * Sends FIN, then reads (the session drops what arrives) until the peer
   * closes too, or `LINGER_MS` passes. `end()` would close the socket at
   * once, and closing with unread input resets the connection: the peer
   * could lose the last frames sent, such as the AGENT-DISCONNECT.
   */
  #finish(): void {
    if (this.#closed || this.#halfClosed) return;
    if (this.#peerEnded) return this.#socket.end(); // Everything was sent and the peer is done.
    this.#halfClosed = true;
    this.#linger = setTimeout(() => this.destroy(), LINGER_MS);
    this.#socket.shutdown();
    this.#socket.resume();
  }

  #queue(bytes: Uint8Array): void {
    const need = this.#outLen + bytes.length;
    if (need > this.#out.length) {
      const grown = new Uint8Array(Math.max(need, this.#out.length * 2, 16 * 1024));
      grown.set(this.#out.subarray(0, this.#outLen));
      this.#out = grown;
    }
    this.#out.set(bytes, this.#outLen);
    this.#outLen = need;
  }
}
