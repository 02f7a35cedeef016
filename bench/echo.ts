/**
 * The runtime's limit: a bare echo server on the agent's own socket API, to
 * compare the agent with (`bench/agent.ts` runs `bench/load.ts --echo`
 * against it under the same load). It does the least a server can do per
 * read: write back the bytes it read, in one write. SPOP frames are
 * length-prefixed, so the echoed stream is a valid stream of the same frames
 * (each NOTIFY comes back with its own ids).
 *
 * - Deno: `Deno.listen`, one loop per connection that reads into a reused
 *   buffer (`-b` bytes, 32 KiB by default) and writes the bytes back
 *   (looping over partial writes) before the next read.
 * - Bun: `Bun.listen` with one shared set of handlers; `socket.write` may
 *   take part of the bytes, so the rest is queued (copied) and sent on
 *   `drain`, and later reads are queued behind it to keep the order.
 *
 * ```sh
 * node_modules/deno/deno run --allow-net bench/echo.ts -p 0 -a 127.0.0.1 [-b 32768]
 * node_modules/bun/bin/bun.exe bench/echo.ts -p 0 -a 127.0.0.1
 * ```
 *
 * Logs `echo (<runtime>) info listening on HOST:PORT` on stderr, like the
 * agent; stops on SIGTERM/SIGINT.
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";

const USAGE = "Usage: echo.ts [-p 0] [-a 127.0.0.1] [-b 32768]";

function usage(message: string): never {
  process.stderr.write(`echo: ${message}\n${USAGE}\n`);
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({
    args: process.argv.slice(2),
    strict: true,
    allowPositionals: false,
    options: {
      port: { type: "string", short: "p", default: "0" },
      address: { type: "string", short: "a", default: "127.0.0.1" },
      "read-buffer": { type: "string", short: "b", default: "32768" },
      help: { type: "boolean", short: "h", default: false },
    },
  }));
} catch (err) {
  usage(err instanceof Error ? err.message : String(err));
}
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) usage(`bad port "${values.port}"`);
const hostname = values.address;
/** Bytes per read on Deno (one buffer per connection): the agent's adapter once read 32 KiB. */
const readBufferSize = Number(values["read-buffer"]);
if (!Number.isInteger(readBufferSize) || readBufferSize < 1) {
  usage(`bad read buffer size "${values["read-buffer"]}"`);
}

function listening(runtime: string, host: string, boundPort: number): void {
  process.stderr.write(`echo (${runtime}) info listening on ${host}:${boundPort}\n`);
}

process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));

// ---------------------------------------------------------------------------
// Bun

interface BunSocket {
  data: Pending | undefined;
  write(data: Uint8Array): number;
  end(): void;
  setNoDelay?(enabled: boolean): void;
}

interface BunApi {
  listen(options: {
    hostname: string;
    port: number;
    socket: {
      open(socket: BunSocket): void;
      data(socket: BunSocket, data: Uint8Array): void;
      drain(socket: BunSocket): void;
      end(socket: BunSocket): void;
      close(socket: BunSocket): void;
      error(socket: BunSocket, error: Error): void;
    };
  }): { hostname: string; port: number };
}

/** Bytes a Bun socket did not take yet. */
class Pending {
  buf = new Uint8Array(16 * 1024);
  len = 0;

  add(bytes: Uint8Array): void {
    const need = this.len + bytes.length;
    if (need > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < need) size *= 2;
      const grown = new Uint8Array(size);
      grown.set(this.buf.subarray(0, this.len));
      this.buf = grown;
    }
    this.buf.set(bytes, this.len);
    this.len = need;
  }
}

function serveBun(bun: BunApi): void {
  const server = bun.listen({
    hostname,
    port,
    socket: {
      open(socket) {
        socket.data = undefined;
        socket.setNoDelay?.(true);
      },
      data(socket, data) {
        const pending = socket.data;
        if (pending !== undefined && pending.len > 0) {
          pending.add(data); // Keep the order: behind what is still queued.
          return;
        }
        const n = socket.write(data);
        if (n >= data.length) return;
        const rest = n > 0 ? data.subarray(n) : data;
        (socket.data ??= new Pending()).add(rest);
      },
      drain(socket) {
        const pending = socket.data;
        if (pending === undefined || pending.len === 0) return;
        const n = socket.write(pending.buf.subarray(0, pending.len));
        if (n > 0) {
          pending.buf.copyWithin(0, n, pending.len);
          pending.len -= n;
        }
      },
      end(socket) {
        socket.end();
      },
      close() {},
      error() {},
    },
  });
  listening(`bun ${process.versions.bun}`, server.hostname, server.port);
}

// ---------------------------------------------------------------------------
// Deno

async function echoDeno(conn: Deno.TcpConn): Promise<void> {
  const buf = new Uint8Array(readBufferSize);
  try {
    conn.setNoDelay(true);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await conn.write(buf.subarray(off, n));
    }
  } catch {
    // A reset: close quietly.
  }
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

async function serveDeno(): Promise<void> {
  const listener = Deno.listen({ hostname, port, transport: "tcp" });
  const addr = listener.addr as Deno.NetAddr;
  listening(`deno ${Deno.version.deno}`, addr.hostname, addr.port);
  for await (const conn of listener) void echoDeno(conn);
}

const bun = (globalThis as unknown as { Bun?: BunApi }).Bun;
if (bun !== undefined) serveBun(bun);
else await serveDeno();
