import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { Agent, createLogger, Level, serve, type Server } from "../lib/mod.ts";
import type { ServerOptions as ServeOptions } from "../lib/serve/server.ts";
import { ipReputation } from "../lib/iprep/mod.ts";
import { ActionType, DataType, Flag, FrameType, Status, VarScope } from "../lib/spop.ts";
import { hex, toHex } from "./_hex.ts";
import {
  checkClientIp,
  concat,
  helloBytes,
  notifyBytes,
  type ReceivedFrame,
  SpopClient,
  waitFor,
} from "./_spop_client.ts";

/** §12.1: the AGENT-HELLO answering 16380 and "pipelining". */
const AGENT_HELLO_PIPELINING = hex(`
  00 00 00 40 65 00 00 00 01 00 00 07 76 65 72 73
  69 6f 6e 08 03 32 2e 30 0e 6d 61 78 2d 66 72 61
  6d 65 2d 73 69 7a 65 03 fc f0 06 0c 63 61 70 61
  62 69 6c 69 74 69 65 73 08 0a 70 69 70 65 6c 69
  6e 69 6e 67`);

/** §10: the AGENT-HELLO answering a health check (16380, no capabilities). */
const AGENT_HELLO_EMPTY = hex(`
  00 00 00 36 65 00 00 00 01 00 00 07 76 65 72 73 69 6f 6e 08 03 32 2e 30
  0e 6d 61 78 2d 66 72 61 6d 65 2d 73 69 7a 65 03 fc f0 06
  0c 63 61 70 61 62 69 6c 69 74 69 65 73 08 00`);

/** §10: HAProxy 3.1+'s hard-coded health-check request. */
const HEALTHCHECK_HELLO = hex(`
  00 00 00 4e 01 00 00 00 01 00 00 12 73 75 70 70
  6f 72 74 65 64 2d 76 65 72 73 69 6f 6e 73 08 03
  32 2e 30 0e 6d 61 78 2d 66 72 61 6d 65 2d 73 69
  7a 65 03 fc f0 06 0c 63 61 70 61 62 69 6c 69 74
  69 65 73 08 00 0b 68 65 61 6c 74 68 63 68 65 63
  6b 11`);

interface Running {
  server: Server;
  lines: string[];
}

/** Serves the IP-reputation agent on 127.0.0.1, a free port, logging into `lines`. */
async function start(options: ServeOptions = {}, level: Level = Level.DEBUG): Promise<Running> {
  const lines: string[] = [];
  const server = await serve(ipReputation(), {
    hostname: "127.0.0.1",
    port: 0,
    log: createLogger({ level, sink: (line) => lines.push(line) }),
    ...options,
  });
  return { server, lines };
}

/** Runs `body` with a server and clients that are always closed afterwards. */
async function withServer(
  body: (run: Running, connect: () => Promise<SpopClient>) => Promise<void>,
  options: ServeOptions = {},
): Promise<Running> {
  const run = await start(options);
  const clients: SpopClient[] = [];
  try {
    await body(run, async () => {
      const client = await SpopClient.connect(run.server.port);
      clients.push(client);
      return client;
    });
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await run.server.shutdown(1000);
  }
  return run;
}

function errorLines(lines: string[]): string[] {
  return lines.filter((line) => / error /.test(line));
}

function assertScoreAck(frame: ReceivedFrame, streamId: number | bigint, frameId: number | bigint) {
  assert.equal(frame.type, FrameType.ACK);
  assert.equal(frame.flags, Flag.FIN);
  assert.equal(frame.streamId, streamId);
  assert.equal(frame.frameId, frameId);
  assert.equal(frame.actions?.length, 1);
  const action = frame.actions[0]!;
  assert.equal(action.type, ActionType.SET_VAR);
  assert.equal(action.scope, VarScope.SESS);
  assert.equal(action.name, "ip_score");
  assert.equal(action.dataType, DataType.UINT32);
  assert.equal(typeof action.value, "number");
  const score = action.value as number;
  assert.ok(Number.isInteger(score) && score >= 0 && score <= 100, `score ${score}`);
}

async function assertDisconnect(client: SpopClient, status: number): Promise<void> {
  const frame = await client.nextFrame();
  assert.equal(frame.type, FrameType.AGENT_DISCONNECT);
  assert.equal(frame.flags, Flag.FIN);
  assert.equal(frame.disconnect?.status, status, frame.disconnect?.message);
  await client.closed();
  assert.equal(client.pending, 0, "nothing after AGENT-DISCONNECT");
}

test("serve() answers HAPROXY-HELLO with the exact AGENT-HELLO and echoes pipelining", async () => {
  await withServer(async (_run, connect) => {
    const client = await connect();
    const frame = await client.hello({ maxFrameSize: 16380, capabilities: "pipelining" });
    assert.equal(toHex(frame.bytes), toHex(AGENT_HELLO_PIPELINING));
    assert.deepEqual(frame.hello, {
      version: "2.0",
      maxFrameSize: 16380,
      capabilities: "pipelining",
    });
    assert.equal(client.isClosed, false);
  });
});

test("serve() announces no capability when HAProxy offers none", async () => {
  await withServer(async (_run, connect) => {
    const client = await connect();
    const frame = await client.hello({ maxFrameSize: 16380, capabilities: "" });
    assert.equal(toHex(frame.bytes), toHex(AGENT_HELLO_EMPTY));
    // The session stays open and answers NOTIFYs.
    assertScoreAck(await client.notify(1, 1), 1, 1);
  });
});

test("serve() answers 100 NOTIFYs sent in one write with 100 matching ACKs", async () => {
  await withServer(async (_run, connect) => {
    const client = await connect();
    await client.hello();
    const ids: [number, number][] = [];
    for (let i = 0; i < 100; i++) ids.push([i * 7 + (i % 3 === 0 ? 0 : 300), i + 1]);
    await client.send(concat(ids.map(([s, f]) => notifyBytes(s, f))));
    const seen = new Map<string, ReceivedFrame>();
    for (let i = 0; i < ids.length; i++) {
      const frame = await client.nextFrame();
      const key = `${frame.streamId}/${frame.frameId}`;
      assert.ok(!seen.has(key), `duplicate ACK ${key}`);
      seen.set(key, frame);
    }
    for (const [s, f] of ids) {
      const frame = seen.get(`${s}/${f}`);
      assert.ok(frame, `no ACK for ${s}/${f}`);
      assertScoreAck(frame, s, f);
    }
    assert.equal(client.pending, 0);
  });
});

test("serve() answers 50000 pipelined NOTIFYs while output backpressure pauses reading", async () => {
  await withServer(async (_run, connect) => {
    const client = await connect();
    await client.hello();
    const count = 50_000;
    const one = notifyBytes(1, 1);
    const batch = new Uint8Array(one.length * count);
    for (let i = 0; i < count; i++) batch.set(one, i * one.length);
    await client.send(batch);
    for (let i = 0; i < count; i++) {
      const frame = await client.nextFrame();
      if (i % 997 === 0 || i === count - 1) assertScoreAck(frame, 1, 1);
      else assert.equal(frame.type, FrameType.ACK);
    }
    assert.equal(client.pending, 0);
  }, { maxQueuedBytes: 4096 });
});

test("serve() answers every NOTIFY when asynchronous handlers exceed maxInFlight", async () => {
  const agent = new Agent().on("slow", async (message, reply) => {
    await new Promise((resolve) => setTimeout(resolve, 1));
    reply.setVar("txn", "n", message.int(0)!);
  });
  const server = await serve(agent, {
    hostname: "127.0.0.1",
    port: 0,
    maxInFlight: 4,
    log: createLogger({ sink: () => {} }),
  });
  const client = await SpopClient.connect(server.port);
  try {
    await client.hello();
    const count = 500;
    const frames: Uint8Array[] = [];
    for (let i = 1; i <= count; i++) {
      frames.push(
        notifyBytes(i, 1, [{ name: "slow", args: [{ type: DataType.INT64, value: i }] }]),
      );
    }
    await client.send(concat(frames));
    const seen = new Set<number>();
    for (let i = 0; i < count; i++) {
      const frame = await client.nextFrame();
      assert.equal(frame.type, FrameType.ACK);
      assert.deepEqual(frame.actions?.map((a) => [a.name, a.value]), [["n", frame.streamId]]);
      seen.add(frame.streamId as number);
    }
    assert.equal(seen.size, count);
  } finally {
    await client.close();
    await server.shutdown(1000);
  }
});

test("server.shutdown() lets in-flight NOTIFYs finish before AGENT-DISCONNECT 0", async () => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => release = resolve);
  let started = 0;
  const agent = new Agent().on("gated", async (_message, reply) => {
    started++;
    await gate;
    reply.setVar("txn", "done", true);
  });
  const server = await serve(agent, {
    hostname: "127.0.0.1",
    port: 0,
    log: createLogger({ sink: () => {} }),
  });
  const client = await SpopClient.connect(server.port);
  try {
    await client.hello();
    await client.send(notifyBytes(7, 3, [{ name: "gated", args: [] }]));
    await waitFor(() => started === 1, "the handler to start");
    const stopped = server.shutdown(5000);
    assert.equal(client.pending, 0, "no frame before the handler finishes");
    release();
    const ack = await client.nextFrame();
    assert.equal(ack.type, FrameType.ACK);
    assert.equal(ack.streamId, 7);
    assert.equal(ack.frameId, 3);
    assert.deepEqual(ack.actions?.map((a) => [a.name, a.value]), [["done", true]]);
    await assertDisconnect(client, Status.NORMAL);
    await stopped;
    assert.equal(server.connections, 0);
  } finally {
    release();
    await client.close();
    await server.shutdown(1000);
  }
});

test("serve() answers a HELLO and NOTIFYs written one byte at a time", async () => {
  await withServer(async (_run, connect) => {
    const client = await connect();
    const bytes = concat([
      helloBytes(),
      notifyBytes(1, 1),
      notifyBytes(300, 2, [checkClientIp("2001:db8::1")]),
      notifyBytes(5, 1),
    ]);
    for (const byte of bytes) await client.send(new Uint8Array([byte]));
    const hello = await client.nextFrame();
    assert.equal(toHex(hello.bytes), toHex(AGENT_HELLO_PIPELINING));
    assertScoreAck(await client.nextFrame(), 1, 1);
    assertScoreAck(await client.nextFrame(), 300, 2);
    assertScoreAck(await client.nextFrame(), 5, 1);
  });
});

test("serve() answers a health-check HELLO, then closes the connection", async () => {
  await withServer(async (_run, connect) => {
    const client = await connect();
    await client.send(HEALTHCHECK_HELLO);
    const frame = await client.nextFrame();
    assert.equal(toHex(frame.bytes), toHex(AGENT_HELLO_EMPTY));
    await client.closed();
    assert.equal(client.pending, 0);
  });
});

test("serve() disconnects with status 4 when the first frame is not a HELLO", async () => {
  await withServer(async (run, connect) => {
    const garbage = await connect();
    await garbage.send(hex("00 00 00 07 42 00 00 00 01 00 00"));
    await assertDisconnect(garbage, Status.INVALID_FRAME);

    const early = await connect();
    await early.send(notifyBytes(1, 1));
    await assertDisconnect(early, Status.INVALID_FRAME);
    assert.deepEqual(errorLines(run.lines), []);
  });
});

test("serve() disconnects with status 3 on LENGTH 0x7fffffff without waiting for the body", async () => {
  await withServer(async (_run, connect) => {
    const before = await connect();
    await before.send(hex("7f ff ff ff"));
    await assertDisconnect(before, Status.FRAME_TOO_BIG);

    const after = await connect();
    await after.hello();
    await after.send(hex("7f ff ff ff 03"));
    await assertDisconnect(after, Status.FRAME_TOO_BIG);
  });
});

test("serve() disconnects with status 3 on a frame above the negotiated max-frame-size", async () => {
  await withServer(async (_run, connect) => {
    const client = await connect();
    const hello = await client.hello({ maxFrameSize: 1024 });
    assert.equal(hello.hello?.maxFrameSize, 1024);
    await client.send(hex("00 00 04 01"));
    await assertDisconnect(client, Status.FRAME_TOO_BIG);
  });
});

test("serve() serves concurrent connections independently", async () => {
  await withServer(async (_run, connect) => {
    const clients = await Promise.all(Array.from({ length: 5 }, () => connect()));
    await Promise.all(clients.map((c) => c.hello()));
    // Interleave: each client sends its NOTIFYs before anyone reads an ACK.
    for (let round = 1; round <= 3; round++) {
      await Promise.all(clients.map((c, i) => c.send(notifyBytes(i * 100 + round, round))));
    }
    // One connection fails; the others must not notice.
    await clients[2]!.send(hex("00 00 00 07 01 00 00 00 01 00 00"));
    for (const [i, c] of clients.entries()) {
      for (let round = 1; round <= 3; round++) {
        assertScoreAck(await c.nextFrame(), i * 100 + round, round);
      }
    }
    await assertDisconnect(clients[2]!, Status.INVALID_FRAME);
    clients[0]!.reset();
    await clients[0]!.closed();
    for (const i of [1, 3, 4]) assertScoreAck(await clients[i]!.notify(9, 9), 9, 9);
  });
});

test("server.connections counts open connections and returns to 0 when clients close", async () => {
  await withServer(async ({ server }, connect) => {
    assert.equal(server.connections, 0);
    const clients = [await connect(), await connect(), await connect()];
    await waitFor(() => server.connections === 3, "3 connections");
    await clients[0]!.hello();
    await clients[0]!.close();
    await waitFor(() => server.connections === 2, "2 connections");
    clients[1]!.end();
    await clients[1]!.closed();
    clients[2]!.reset();
    await waitFor(() => server.connections === 0, "0 connections");
  });
});

test("server.shutdown() sends AGENT-DISCONNECT status 0 to idle clients and resolves", async () => {
  const { server } = await start();
  const clients: SpopClient[] = [];
  try {
    const idle = await SpopClient.connect(server.port);
    clients.push(idle);
    await idle.hello();
    assertScoreAck(await idle.notify(1, 1), 1, 1);
    const fresh = await SpopClient.connect(server.port);
    clients.push(fresh);
    await waitFor(() => server.connections === 2, "2 connections");

    await server.shutdown(5000);
    await assertDisconnect(idle, Status.NORMAL);
    await assertDisconnect(fresh, Status.NORMAL);
    assert.equal(server.connections, 0);
    await assert.rejects(SpopClient.connect(server.port), "the listener is closed");
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await server.shutdown(1000);
  }
});

test("serve() treats a client reset in the middle of a frame as a quiet close", async () => {
  const { lines } = await withServer(async ({ server }, connect) => {
    const client = await connect();
    await client.hello();
    await client.send(notifyBytes(1, 1).subarray(0, 10));
    client.reset();
    await client.closed();
    await waitFor(() => server.connections === 0, "the server to see the close");

    const other = await connect();
    await other.hello();
    await other.send(notifyBytes(2, 1).subarray(0, 3));
    await other.close();
    await waitFor(() => server.connections === 0, "the server to see the second close");
  });
  assert.deepEqual(errorLines(lines), []);
  assert.deepEqual(lines.filter((l) => / warn /.test(l)), []);
});

test("serve() logs the listening address at info level", async () => {
  const { lines, server } = await start({}, Level.INFO);
  try {
    assert.equal(server.hostname, "127.0.0.1");
    assert.ok(server.port > 0);
    assert.ok(
      lines.some((l) => l.endsWith(`info listening on 127.0.0.1:${server.port}`)),
      lines[0],
    );
  } finally {
    await server.shutdown(1000);
  }
});

test("serve() rejects when the port is taken", async () => {
  const { server } = await start();
  try {
    await assert.rejects(serve(ipReputation(), {
      hostname: "127.0.0.1",
      port: server.port,
      log: createLogger({ sink: () => {} }),
    }));
  } finally {
    await server.shutdown(1000);
  }
});

test("serve() sends the AGENT-HELLO and AGENT-DISCONNECT 0 to a peer that half-closes after its HELLO, then closes", async () => {
  // A peer that sends FIN after its HELLO is done: it gets the AGENT-HELLO, a
  // normal AGENT-DISCONNECT, then the close.
  const { server } = await start();
  const socket = net.connect({ host: "127.0.0.1", port: server.port });
  try {
    const received: Uint8Array[] = [];
    socket.on("data", (chunk: Uint8Array) => received.push(chunk.slice()));
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    socket.on("error", () => {});
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    socket.end(helloBytes());
    await closed;
    const all = concat(received);
    assert.equal(
      toHex(all.subarray(0, AGENT_HELLO_PIPELINING.length)),
      toHex(AGENT_HELLO_PIPELINING),
    );
    const rest = all.subarray(AGENT_HELLO_PIPELINING.length);
    assert.equal(rest[4], FrameType.AGENT_DISCONNECT);
    assert.equal(rest.length, 4 + new DataView(rest.buffer, rest.byteOffset).getUint32(0));
  } finally {
    socket.destroy();
    await server.shutdown(1000);
  }
});
