/**
 * The floor agent: the least an SPOA on this runtime can do for HAProxy, to
 * measure what spoa's own code costs on top of the runtime and the kernel
 * (`bench/e2e.ts --runtime floor-deno,floor-bun`). It is not an agent to
 * use: it answers every HAPROXY-HELLO with a fixed AGENT-HELLO (pipelining,
 * max-frame-size 16380) whatever HAProxy offered, every NOTIFY with an ACK
 * that sets `sess.iprep.ip_score` to 50 without reading the message, and a
 * HAPROXY-DISCONNECT with an AGENT-DISCONNECT and a close. It checks nothing
 * beyond the frame lengths.
 *
 * Per read: every whole frame in it gets its answer in one output buffer,
 * sent in one write; a frame cut by the read waits for the next.
 *
 * - Deno: `Deno.listen`, one read loop per connection (reused buffers).
 * - Bun: `Bun.listen`, one shared set of handlers.
 *
 * ```sh
 * node_modules/deno/deno run --allow-net bench/floor/floor.ts -p 0 -a 127.0.0.1
 * node_modules/bun/bin/bun.exe bench/floor/floor.ts -p 0 -a 127.0.0.1
 * ```
 *
 * Logs `floor (<runtime>) info listening on HOST:PORT` on stderr, as spoa
 * does; stops on SIGTERM/SIGINT.
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { floorFrames } from "./templates.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  strict: true,
  options: {
    port: { type: "string", short: "p", default: "0" },
    address: { type: "string", short: "a", default: "127.0.0.1" },
  },
});
const port = Number(values.port);
const FRAMES = floorFrames();
const ACTIONS = FRAMES.ackActions;
/** Largest frame accepted (as announced), and the buffers' size. */
const MAX_FRAME = 16380;
const BUFFER = 64 * 1024;
const HAPROXY_HELLO = 1;
const HAPROXY_DISCONNECT = 2;
const NOTIFY = 3;
const ACK = 103;

/** A connection's unread tail and what to send for the bytes read so far. */
class Floor {
  readonly pending = new Uint8Array(MAX_FRAME + 4);
  pendingLen = 0;
  readonly out = new Uint8Array(BUFFER);
  outLen = 0;
  closing = false;

  /** Answers the whole frames of `bytes[0, n)`; false on a bad frame. */
  feed(bytes: Uint8Array, n: number): boolean {
    let data = bytes;
    let end = n;
    if (this.pendingLen > 0) {
      const take = Math.min(n, this.pending.length - this.pendingLen);
      this.pending.set(bytes.subarray(0, take), this.pendingLen);
      this.pendingLen += take;
      if (take < n) return false; // More than one frame's worth behind a cut frame: give up.
      data = this.pending;
      end = this.pendingLen;
      this.pendingLen = 0;
    }
    let at = 0;
    while (end - at >= 4) {
      const len = ((data[at]! << 24) | (data[at + 1]! << 16) | (data[at + 2]! << 8) |
        data[at + 3]!) >>> 0;
      if (len > MAX_FRAME || len < 7) return false;
      if (end - at - 4 < len) break;
      if (!this.#answer(data, at + 4, at + 4 + len)) return false;
      at += 4 + len;
    }
    if (at < end) {
      this.pending.copyWithin(0, at, end);
      if (data !== this.pending) this.pending.set(data.subarray(at, end));
      this.pendingLen = end - at;
    }
    return true;
  }

  #answer(data: Uint8Array, start: number, end: number): boolean {
    const type = data[start]!;
    if (type === HAPROXY_HELLO) return this.#put(FRAMES.agentHello);
    if (type === HAPROXY_DISCONNECT) {
      this.closing = true;
      return this.#put(FRAMES.agentDisconnect);
    }
    if (type !== NOTIFY) return true;
    // The stream-id and frame-id varints, copied as they are.
    let ids = start + 5;
    for (let k = 0; k < 2; k++) {
      if (data[ids]! >= 240) {
        ids++;
        while (ids < end && data[ids]! >= 128) ids++;
      }
      ids++;
    }
    if (ids > end) return false;
    const idLen = ids - (start + 5);
    const len = 5 + idLen + ACTIONS.length;
    if (this.outLen + 4 + len > this.out.length) return false;
    const out = this.out;
    let o = this.outLen;
    out[o] = len >>> 24;
    out[o + 1] = (len >>> 16) & 0xff;
    out[o + 2] = (len >>> 8) & 0xff;
    out[o + 3] = len & 0xff;
    out[o + 4] = ACK;
    out[o + 5] = 0;
    out[o + 6] = 0;
    out[o + 7] = 0;
    out[o + 8] = 1; // FIN
    o += 9;
    for (let i = start + 5; i < ids; i++) out[o++] = data[i]!;
    out.set(ACTIONS, o);
    this.outLen = o + ACTIONS.length;
    return true;
  }

  #put(frame: Uint8Array): boolean {
    if (this.outLen + frame.length > this.out.length) return false;
    this.out.set(frame, this.outLen);
    this.outLen += frame.length;
    return true;
  }
}

function listening(hostname: string, at: number, runtime: string): void {
  process.stderr.write(`floor (${runtime}) info listening on ${hostname}:${at}\n`);
}

if (typeof Deno !== "undefined" && !navigator.userAgent.startsWith("Bun")) {
  const listener = Deno.listen({ hostname: values.address, port });
  listening(values.address, (listener.addr as Deno.NetAddr).port, "deno");
  const serve = async (conn: Deno.TcpConn) => {
    conn.setNoDelay(true);
    const buf = new Uint8Array(BUFFER);
    const floor = new Floor();
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null || !floor.feed(buf, n)) break;
        for (let at = 0; at < floor.outLen;) {
          at += await conn.write(floor.out.subarray(at, floor.outLen));
        }
        floor.outLen = 0;
        if (floor.closing) break;
      }
    } catch {
      // Reset: done.
    }
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  };
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    Deno.addSignalListener(signal, () => Deno.exit(0));
  }
  for await (const conn of listener) void serve(conn);
} else {
  const bun = (globalThis as unknown as { Bun: BunApi }).Bun;
  const server = bun.listen<Floor>({
    hostname: values.address,
    port,
    socket: {
      open(socket) {
        socket.setNoDelay?.(true);
        socket.data = new Floor();
      },
      data(socket, bytes) {
        const floor = socket.data;
        if (!floor.feed(bytes, bytes.length)) return void socket.end();
        flush(socket);
      },
      drain: flush,
    },
  });
  listening(values.address, server.port, "bun");
  for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => process.exit(0));
}

/** Sends what is queued; what the socket does not take waits for `drain`. */
function flush(socket: BunSocket<Floor>): void {
  const floor = socket.data;
  if (floor.outLen > 0) {
    const sent = Math.max(0, socket.write(floor.out.subarray(0, floor.outLen)));
    floor.out.copyWithin(0, sent, floor.outLen);
    floor.outLen -= sent;
  }
  if (floor.closing && floor.outLen === 0) socket.end();
}

/** The part of Bun's API used here. */
interface BunApi {
  listen<T>(options: {
    hostname: string;
    port: number;
    socket: {
      open(socket: BunSocket<T>): void;
      data(socket: BunSocket<T>, bytes: Uint8Array): void;
      drain(socket: BunSocket<T>): void;
    };
  }): { port: number };
}

interface BunSocket<T> {
  data: T;
  write(bytes: Uint8Array): number;
  end(): void;
  setNoDelay?(on: boolean): void;
}
