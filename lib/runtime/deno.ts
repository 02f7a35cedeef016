/**
 * Sockets on Deno: `Deno.listen`, one read loop per connection into a reused
 * buffer, and a write pump that sends queued output in as few writes as
 * possible (`../shared/docs/platform.md`: Deno's `conn.write` may write part
 * of a buffer and is asynchronous, so output is copied and queued).
 *
 * Memory per connection is kept small for pools of thousands of idle
 * connections: a pending read holds its buffer, so each connection has its
 * own, but it starts at 256 bytes and grows only when reads fill it
 * (`_buffers.ts`); output buffers are lent by one pool per thread while
 * output is in flight, so an idle connection holds none.
 *
 * @module
 */

import type {
  Conn,
  ConnHandler,
  Listen,
  Listener,
  ListenOptions,
  ListenStreams,
} from "../agent/conn.ts";
import { prepareSocketPath, removeSocketPath, setSocketMode } from "./_unix.ts";
import { BufferPool, READ_BUFFER_MAX, ReadBuffer } from "./_buffers.ts";

const EMPTY = new Uint8Array(0);
/** Output buffers of this thread's connections: 4 KiB each, kept up to 64 KiB, 1 MiB in all. */
const OUTPUT = new BufferPool(4096, 64 * 1024, 1024 * 1024);
/** Pause before accepting again after a failed accept (EMFILE and the like). */
const ACCEPT_RETRY_MS = 50;
/** How long a closing connection waits for the peer's FIN before it closes anyway. */
const LINGER_MS = 2000;

/**
 * Listens with `Deno.listen` and serves each accepted connection.
 * `reusePort` needs Deno's `--unstable-net` flag.
 *
 * @param options Address, port and SO_REUSEPORT.
 * @param accept Called for each connection.
 * @returns The listener.
 */
export const listen: Listen = async (options, accept) => {
  const listener = await denoListen(options, options.reusePort ?? false);
  return acceptEach(listener, options, (conn) => {
    const wrapped = new DenoConn(conn);
    try {
      wrapped.start(accept(wrapped));
    } catch {
      wrapped.close();
    }
  });
};

/** A TCP or Unix listener (the socket file made ready first). */
async function denoListen(options: ListenOptions, reusePort: boolean): Promise<AnyListener> {
  if (options.path !== undefined) {
    await prepareSocketPath(options.path);
    const listener = Deno.listen({ transport: "unix", path: options.path });
    setSocketMode(options.path, options.mode, () => listener.close());
    return listener;
  }
  if (options.tls !== undefined) {
    return Deno.listenTls({
      hostname: options.hostname,
      port: options.port,
      transport: "tcp",
      cert: options.tls.cert,
      key: options.tls.key,
      ...(reusePort ? { reusePort: true } : {}),
    });
  }
  return Deno.listen({
    hostname: options.hostname,
    port: options.port,
    transport: "tcp",
    ...(reusePort ? { reusePort: true } : {}),
  });
}

type AnyListener = Deno.TcpListener | Deno.UnixListener | Deno.TlsListener;
type AnyConn = Deno.TcpConn | Deno.UnixConn | Deno.TlsConn;

/**
 * Listens with `Deno.listen` and hands each connection over as its
 * `readable`/`writable` streams, which can be transferred to a Worker.
 *
 * @param options Address and port.
 * @param onConn Receives each connection.
 * @returns The listener.
 */
export const listenStreams: ListenStreams = async (options, onConn) => {
  const listener = await denoListen(options, false);
  return acceptEach(listener, options, (conn) => {
    noDelay(conn);
    let done!: () => void;
    const closed = new Promise<void>((resolve) => done = resolve);
    const close = () => {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
      done();
    };
    onConn({
      remote: remoteOf(conn),
      readable: readableOf(conn),
      writable: writableOf(conn, close),
      close,
      closed,
    });
  });
};

/**
 * A connection's output as a stream (to be transferred): each chunk is
 * written whole, and closing it closes the connection once what was written
 * before has gone out, so that whoever holds the socket knows when it is done
 * (Deno's own `conn.writable` does not tell).
 */
function writableOf(conn: AnyConn, close: () => void): WritableStream<Uint8Array> {
  return new WritableStream<Uint8Array>({
    async write(chunk) {
      for (let at = 0; at < chunk.length;) at += await conn.write(chunk.subarray(at));
    },
    close,
    abort: close,
  });
}

function noDelay(conn: AnyConn): void {
  try {
    if ("setNoDelay" in conn) conn.setNoDelay(true);
  } catch {
    // The peer may already be gone.
  }
}

/**
 * A connection's bytes as a stream that ends at the peer's FIN and leaves the
 * connection open: Deno's own `conn.readable` closes the whole connection at
 * EOF, so that nothing could be sent after a peer half-closed. Each chunk has
 * a buffer of its own (chunks are transferred to a worker).
 */
function readableOf(conn: AnyConn): ReadableStream<Uint8Array> {
  const buf = new Uint8Array(READ_BUFFER_MAX);
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const n = await conn.read(buf);
        if (n === null) controller.close();
        else controller.enqueue(buf.slice(0, n));
      } catch (err) {
        controller.error(err);
      }
    },
    cancel() {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    },
  }, { highWaterMark: 0 });
}

/**
 * Accepts connections until the returned listener is closed, handing each
 * to `onConn`. A failed accept never ends the loop (returning would leave
 * nothing pending, and Deno would exit with status 0): the next connection
 * is accepted at once when only the failed one was lost, after a short pause
 * otherwise (out of descriptors or memory).
 */
function acceptEach(
  listener: AnyListener,
  options: ListenOptions,
  onConn: (conn: AnyConn) => void,
): Listener {
  let closed = false;
  void (async () => {
    for (;;) {
      let conn: AnyConn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (closed || err instanceof Deno.errors.BadResource) return; // Closed.
        if (!peerGone(err)) await new Promise((resolve) => setTimeout(resolve, ACCEPT_RETRY_MS));
        continue;
      }
      onConn(conn);
    }
  })();
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      listener.close();
    } catch {
      // Already closed.
    }
    if (options.path !== undefined) removeSocketPath(options.path);
  };
  if (options.path !== undefined) {
    return { hostname: `unix:${options.path}`, port: 0, path: options.path, close };
  }
  const addr = listener.addr as Deno.NetAddr;
  return { hostname: addr.hostname, port: addr.port, close };
}

/**
 * Whether an accept failed only for the connection being accepted: its peer
 * reset it while it waited in the backlog (Deno then fails with ENOTCONN
 * reading its address, or the kernel with ECONNABORTED). A HAProxy churning
 * its agent connections causes them in bursts, and waiting after each would
 * stall the listener while its backlog fills up.
 */
function peerGone(err: unknown): boolean {
  return err instanceof Deno.errors.NotConnected ||
    err instanceof Deno.errors.ConnectionAborted ||
    err instanceof Deno.errors.ConnectionReset;
}

function remoteOf(conn: AnyConn): string {
  const addr = conn.remoteAddr;
  if (!("hostname" in addr)) return addr.path === "" ? "unix" : `unix:${addr.path}`;
  return addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
}

class DenoConn implements Conn {
  readonly remote: string;
  readonly #conn: AnyConn;
  #handler: ConnHandler | undefined;
  /** Output waiting for the next write (lent by `OUTPUT` while there is some). */
  #out = EMPTY;
  #outLen = 0;
  /** Bytes of the buffer being written that are left. */
  #inWrite = 0;
  #writing = false;
  #closeRequested = false;
  /** FIN sent: reading on, only to drop what the peer still sends, until its FIN. */
  #halfClosed = false;
  /** The peer's FIN arrived: what is queued still goes out, then the close. */
  #peerEnded = false;
  #linger: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  #paused = false;
  #wake: (() => void) | undefined;

  constructor(conn: AnyConn) {
    this.#conn = conn;
    this.remote = remoteOf(conn);
    noDelay(conn);
  }

  get queued(): number {
    return this.#outLen + this.#inWrite;
  }

  start(handler: ConnHandler): void {
    this.#handler = handler;
    void this.#readLoop();
  }

  write(bytes: Uint8Array, length: number): void {
    if (this.#closed || this.#closeRequested) return;
    const need = this.#outLen + length;
    if (need > this.#out.length) {
      const grown = OUTPUT.take(Math.max(need, 2 * this.#out.length));
      if (this.#outLen > 0) grown.set(this.#out.subarray(0, this.#outLen));
      OUTPUT.give(this.#out);
      this.#out = grown;
    }
    // The copy is needed anyway (Deno's write is asynchronous); a short
    // output is copied by hand rather than through a view.
    const out = this.#out;
    if (length <= 64) {
      for (let i = 0, o = this.#outLen; i < length; i++) out[o + i] = bytes[i]!;
    } else out.set(length === bytes.length ? bytes : bytes.subarray(0, length), this.#outLen);
    this.#outLen = need;
    if (!this.#writing) void this.#pump();
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  close(): void {
    if (this.#writing || this.#outLen > 0) this.#closeRequested = true;
    else this.#finish();
  }

  destroy(): void {
    this.#shutdown();
  }

  async #readLoop(): Promise<void> {
    const rb = new ReadBuffer();
    try {
      while (!this.#closed) {
        if (this.#paused && !this.#halfClosed) {
          await new Promise<void>((resolve) => this.#wake = resolve);
          continue;
        }
        const n = await this.#conn.read(rb.bytes);
        if (this.#closed) break;
        if (n === null) {
          if (this.#halfClosed) break; // Both sides are done.
          // The peer is done sending: the handler finishes, then close() flushes and closes.
          this.#peerEnded = true;
          this.#handler!.onEnd();
          return;
        }
        if (!this.#halfClosed) this.#handler!.onData(rb.bytes, n);
        rb.used(n);
      }
    } catch {
      // A reset or a read after close: both end the connection quietly.
    }
    this.#shutdown();
  }

  async #pump(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#outLen > 0 && !this.#closed) {
        const buf = this.#out;
        const len = this.#outLen;
        this.#out = EMPTY;
        this.#outLen = 0;
        this.#inWrite = len;
        let off = 0;
        while (off < len) {
          off += await this.#conn.write(buf.subarray(off, len));
          this.#inWrite = len - off;
        }
        OUTPUT.give(buf); // Written: the next output of any connection may use it.
      }
    } catch {
      this.#writing = false;
      this.#shutdown(); // Broken pipe or reset: a quiet close.
      return;
    }
    this.#writing = false;
    if (this.#closeRequested) this.#finish();
    else if (!this.#closed) this.#handler?.onDrain();
  }

  /**
   * Sends FIN, then reads and drops what the peer still sends until it
   * closes too (or `LINGER_MS` passes). Closing with unread input would
   * reset the connection, and the peer could lose the last frames sent,
   * such as the AGENT-DISCONNECT.
   */
  #finish(): void {
    if (this.#closed || this.#halfClosed) return;
    if (this.#peerEnded) return this.#shutdown(); // Everything was sent and the peer is done.
    this.#halfClosed = true;
    this.#linger = setTimeout(() => this.#shutdown(), LINGER_MS);
    this.#conn.closeWrite().catch(() => this.#shutdown());
    this.resume();
  }

  #shutdown(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#linger);
    this.#outLen = this.#inWrite = 0;
    OUTPUT.give(this.#out); // Not being written (the pump writes a buffer it took off #out).
    this.#out = EMPTY;
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
    this.resume();
    this.#handler?.onClose();
  }
}
