/**
 * Sockets through `node:net`, which Deno and Bun both provide. spoa uses it
 * where a runtime's own API needs a flag: Deno's `Deno.listen({ reusePort })`
 * exits the process unless `--unstable-net` is given, while `node:net`'s
 * `listen({ reusePort: true })` needs none (`../shared/docs/platform.md`).
 *
 * `socket.write()` keeps the buffer it is given until it is sent, so every
 * write hands it a copy.
 *
 * @module
 */

import net from "node:net";
import tls from "node:tls";
import { Buffer } from "node:buffer";
import type { Accept, Conn, ConnHandler, Listen, Listener } from "../agent/conn.ts";
import { prepareSocketPath, setSocketMode } from "./_unix.ts";

/** How long a closing connection waits for the peer's FIN before it closes anyway. */
const LINGER_MS = 2000;

/**
 * Listens with `node:net` and serves each accepted connection.
 *
 * @param options Address, port and SO_REUSEPORT.
 * @param accept Called for each connection.
 * @returns The listener.
 */
export const listen: Listen = async (options, accept) => {
  if (options.path !== undefined) await prepareSocketPath(options.path);
  return await listenNode(options, accept);
};

const listenNode: Listen = (options, accept) =>
  new Promise((resolve, reject) => {
    // allowHalfOpen: after the peer's FIN, what is still to be sent goes out first.
    const onSocket = (socket: net.Socket) => serveSocket(socket, accept);
    const server = options.tls === undefined
      ? net.createServer({ noDelay: true, allowHalfOpen: true }, onSocket)
      : tls.createServer(
        { noDelay: true, allowHalfOpen: true, cert: options.tls.cert, key: options.tls.key },
        onSocket,
      );
    // A failed handshake is the peer's problem: the socket closes, nothing else happens.
    server.on("tlsClientError", () => {});
    server.once("error", reject);
    const path = options.path;
    server.listen(
      path !== undefined ? { path, backlog: 1024 } : {
        host: options.hostname,
        port: options.port,
        backlog: 1024,
        ...(options.reusePort ? { reusePort: true } : {}),
      },
      () => {
        server.off("error", reject);
        if (path !== undefined) {
          try {
            setSocketMode(path, options.mode, () => server.close());
          } catch (err) {
            reject(err);
            return;
          }
          // node:net removes the socket file when the server closes.
          resolve({ hostname: `unix:${path}`, port: 0, path, close: () => void server.close() });
          return;
        }
        const address = server.address() as net.AddressInfo;
        const listener: Listener = {
          hostname: address.address,
          port: address.port,
          close: () => void server.close(),
        };
        resolve(listener);
      },
    );
  });

function serveSocket(socket: net.Socket, accept: Accept): void {
  const conn = new NodeConn(socket);
  let handler: ConnHandler;
  try {
    handler = accept(conn);
  } catch {
    socket.destroy();
    return;
  }
  conn.handler = handler;
  socket.on("data", (chunk: Uint8Array) => handler.onData(chunk, chunk.length));
  socket.on("drain", () => handler.onDrain());
  socket.on("end", () => conn.peerEnded());
  // Resets and broken pipes end the connection quietly; "close" follows.
  socket.on("error", () => {});
  socket.on("close", () => conn.closed());
}

class NodeConn implements Conn {
  readonly remote: string;
  handler: ConnHandler | undefined;
  readonly #socket: net.Socket;
  #closed = false;
  /** `end()` was called. */
  #ending = false;
  /** The peer's FIN arrived. */
  #peerDone = false;
  #linger: ReturnType<typeof setTimeout> | undefined;

  constructor(socket: net.Socket) {
    this.#socket = socket;
    const host = socket.remoteAddress;
    this.remote = host === undefined
      ? "unix"
      : host.includes(":")
      ? `[${host}]:${socket.remotePort}`
      : `${host}:${socket.remotePort}`;
  }

  get queued(): number {
    return this.#socket.writableLength;
  }

  write(bytes: Uint8Array, length: number): void {
    // A copy: the socket keeps what it is given until it is sent.
    if (!this.#closed) this.#socket.write(Buffer.from(bytes.subarray(0, length)));
  }

  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    this.#socket.resume();
  }

  close(): void {
    if (this.#closed || this.#ending) return;
    this.#ending = true;
    this.#socket.end();
    // A peer that never sends its FIN is closed after LINGER_MS.
    if (!this.#peerDone) this.#linger = setTimeout(() => this.#socket.destroy(), LINGER_MS);
  }

  /** The peer's FIN arrived (`end`). */
  peerEnded(): void {
    this.#peerDone = true;
    if (this.#closed) return;
    if (this.#ending) {
      clearTimeout(this.#linger);
      return; // Our end() went first: the socket closes now.
    }
    this.handler?.onEnd();
  }

  destroy(): void {
    this.#socket.destroy();
  }

  /** The socket closed. */
  closed(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#linger);
    this.handler?.onClose();
  }
}
