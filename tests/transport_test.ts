/**
 * One suite for every transport: the runtime's own sockets and `node:net` in
 * process, and the worker pool with both dispatch modes as a process (on
 * Bun, `--dispatch streams` relays each connection through the main thread).
 * On each: a peer's FIN still gets every ACK, then AGENT-DISCONNECT and the
 * close; a peer that stops reading is cut off.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { createLogger, Level } from "../lib/mod.ts";
import { ipReputation } from "../lib/iprep/mod.ts";
import { listen as nodeListen } from "../lib/runtime/node.ts";
import { serveWith } from "../lib/serve/server.ts";
import { FrameScanner, FrameType } from "../lib/spop.ts";
import { establishedTo, until } from "./_haproxy.ts";
import { startAgent } from "./_process.ts";
import { checkClientIp, concat, helloBytes, notifyBytes } from "./_spop_client.ts";

/** A running agent on some transport. */
interface Running {
  port: number;
  /** How long the agent lets a peer leave its output unread. */
  cutOffMs: number;
  stop(): Promise<void>;
}

interface Transport {
  name: string;
  /** Starts the IP-reputation agent holding each ACK back `delayMs`. */
  start(delayMs: number): Promise<Running>;
}

const quiet = createLogger({ level: Level.ERROR, sink: () => {} });
const FRAME_TIMEOUT_MS = 800;

function inProcess(name: string, listen: typeof nodeListen | undefined): Transport {
  return {
    name,
    async start(delayMs) {
      const server = await serveWith(ipReputation({ seed: 1 }), {
        hostname: "127.0.0.1",
        port: 0,
        log: quiet,
        frameTimeout: FRAME_TIMEOUT_MS,
        reference: { replyDelay: delayMs },
        ...(listen ? { listen } : {}),
      });
      return { port: server.port, cutOffMs: FRAME_TIMEOUT_MS, stop: () => server.shutdown(500) };
    },
  };
}

function pool(dispatch: string): Transport {
  return {
    name: `-n 2 --dispatch ${dispatch}`,
    async start(delayMs) {
      const agent = await startAgent(["-n", "2", "--dispatch", dispatch, "-t", `${delayMs}ms`]);
      // The agent's frame timeout: 5 s.
      return { port: agent.port, cutOffMs: 5000, stop: async () => void await agent.stop() };
    },
  };
}

const TRANSPORTS: Transport[] = [
  inProcess("the runtime's sockets, in process", undefined),
  inProcess("node:net, in process", nodeListen),
  pool("reuseport"),
  pool("streams"),
];

/** Every frame in `bytes`, as type and ids. */
function framesOf(
  bytes: Uint8Array,
): { type: number; streamId: number | bigint; status?: number }[] {
  const scanner = new FrameScanner(1 << 20);
  scanner.push(bytes);
  const out: { type: number; streamId: number | bigint }[] = [];
  for (let f = scanner.next(); f !== null; f = scanner.next()) {
    out.push({ type: f.type, streamId: f.streamId });
  }
  assert.equal(scanner.buffered, 0, "whole frames only");
  return out;
}

for (const transport of TRANSPORTS) {
  test(
    `transport (${transport.name}): a peer's FIN still gets every ACK, then AGENT-DISCONNECT and the close`,
    {
      timeout: 30_000,
    },
    async () => {
      const running = await transport.start(20);
      const socket = net.connect({ host: "127.0.0.1", port: running.port });
      try {
        const chunks: Uint8Array[] = [];
        socket.on("data", (c: Uint8Array) => chunks.push(c.slice()));
        socket.on("error", () => {});
        const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
        await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
        const notifies = Array.from(
          { length: 50 },
          (_, i) => notifyBytes(2 * i + 1, 1, [checkClientIp()]),
        );
        // HELLO and 50 NOTIFYs, then FIN: every ACK is still 20 ms away.
        socket.end(concat([helloBytes(), ...notifies]));
        await closed;
        const frames = framesOf(concat(chunks));
        assert.equal(frames[0]?.type, FrameType.AGENT_HELLO);
        const acks = frames.filter((f) => f.type === FrameType.ACK).map((f) => Number(f.streamId));
        assert.deepEqual(
          acks.sort((a, b) => a - b),
          Array.from({ length: 50 }, (_, i) => 2 * i + 1),
        );
        assert.equal(frames.at(-1)?.type, FrameType.AGENT_DISCONNECT, "the last frame");
        assert.equal(frames.length, 52);
      } finally {
        socket.destroy();
        await running.stop();
      }
    },
  );

  test(`transport (${transport.name}): a peer that stops reading is cut off`, {
    timeout: 60_000,
  }, async () => {
    const running = await transport.start(0);
    const socket = net.connect({ host: "127.0.0.1", port: running.port });
    try {
      socket.on("error", () => {});
      await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
      socket.pause(); // Reads nothing from here on: the agent's ACKs pile up.
      socket.write(helloBytes());
      // One reused chunk of 1,000 NOTIFYs, written until the agent stops reading
      // (its output is full) and the kernel's buffers are full too.
      const chunk = concat(
        Array.from({ length: 1000 }, (_, i) => notifyBytes(i + 1, 1, [checkClientIp()])),
      );
      const started = Date.now();
      let stalled = false;
      while (!stalled && Date.now() - started < 20_000) {
        if (socket.write(chunk)) continue;
        stalled = !(await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), 500);
          socket.once("drain", () => {
            clearTimeout(timer);
            resolve(true);
          });
        }));
      }
      assert.ok(stalled, "the agent stopped reading a peer that reads nothing");
      assert.ok(establishedTo(running.port) > 0);
      await until(
        () => establishedTo(running.port) === 0,
        "the agent to cut the peer off",
        running.cutOffMs + 10_000,
      );
    } finally {
      socket.destroy();
      await running.stop();
    }
  });
}
