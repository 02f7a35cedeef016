/**
 * The HAProxy side of `bench/memory.ts`: a connection sends the HAPROXY-HELLO
 * HAProxy sends and waits for the AGENT-HELLO, then, optionally, one NOTIFY
 * (`check-client-ip` with an IPv4 address, as HAProxy sends it) and its ACK.
 * Against an echo server the same frames come back, which is accepted too.
 *
 * @module
 */

import { DataType, FrameScanner, FrameType, FrameWriter, writeHaproxyHello } from "../lib/spop.ts";

/** The HELLO HAProxy sends. */
function helloBytes(): Uint8Array {
  const w = new FrameWriter();
  writeHaproxyHello(w, {
    maxFrameSize: 16380,
    capabilities: "pipelining",
    engineId: crypto.randomUUID(),
  });
  return w.bytes().slice();
}

/** A NOTIFY with one `check-client-ip` message, stream 1, frame 1. */
function notifyBytes(): Uint8Array {
  const w = new FrameWriter();
  w.begin(FrameType.NOTIFY, 1, 1)
    .message("check-client-ip", 1)
    .arg("", DataType.IPV4, new Uint8Array([10, 1, 2, 3]))
    .end();
  return w.bytes().slice();
}

const HELLO = helloBytes();
const NOTIFY = notifyBytes();

/**
 * Sends `frame` on `conn` and waits for one frame of type `expect` (or of
 * the frame's own type when `echo`).
 */
async function roundTrip(
  conn: Deno.TcpConn,
  frame: Uint8Array,
  expect: number,
  echo: boolean,
): Promise<void> {
  let off = 0;
  while (off < frame.length) off += await conn.write(frame.subarray(off));
  const scanner = new FrameScanner(1 << 20);
  const buf = new Uint8Array(4096);
  const want = echo ? frame[4]! : expect;
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) throw new Error(`closed before a frame of type ${want}`);
    scanner.push(buf, n);
    const got = scanner.next();
    if (got === null) continue;
    if (got.type !== want) throw new Error(`frame type ${got.type} instead of ${want}`);
    while (scanner.next() !== null) { /* Drain. */ }
    return;
  }
}

/**
 * Sends HAPROXY-HELLO on `conn` and waits for the AGENT-HELLO.
 *
 * @param conn A connection to the server.
 * @param echo The server echoes: wait for the HELLO itself.
 */
export function handshake(conn: Deno.TcpConn, echo: boolean): Promise<void> {
  return roundTrip(conn, HELLO, FrameType.AGENT_HELLO, echo);
}

/**
 * Sends one NOTIFY on `conn` (after its handshake) and waits for the ACK.
 *
 * @param conn A connection to the server.
 * @param echo The server echoes: wait for the NOTIFY itself.
 */
export function notifyOnce(conn: Deno.TcpConn, echo: boolean): Promise<void> {
  return roundTrip(conn, NOTIFY, FrameType.ACK, echo);
}

/** Closes connections, ignoring those already closed. */
export function closeAll(conns: Deno.TcpConn[]): void {
  for (const c of conns) {
    try {
      c.close();
    } catch {
      // Already closed.
    }
  }
}

/**
 * Run as a program (`deno run --allow-net bench/_memory_client.ts PORT N`):
 * opens N connections to 127.0.0.1:PORT, 50 at a time, each doing its HELLO
 * and one NOTIFY; prints "ready" and keeps them open until stdin closes.
 */
async function main(args: string[]): Promise<void> {
  const port = Number(args[0]);
  const count = Number(args[1]);
  const echo = args[2] === "echo";
  const conns: Deno.TcpConn[] = [];
  for (let i = 0; i < count; i += 50) {
    await Promise.all(
      Array.from({ length: Math.min(50, count - i) }, async () => {
        const c = await Deno.connect({ hostname: "127.0.0.1", port });
        conns.push(c);
        await handshake(c, echo);
        await notifyOnce(c, echo);
      }),
    );
  }
  console.log("ready");
  // Until the parent closes stdin.
  for await (const _ of Deno.stdin.readable) { /* Nothing to read. */ }
  closeAll(conns);
}

if (import.meta.main) await main(Deno.args);
