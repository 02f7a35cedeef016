/**
 * Memory per connection (issue 17): read buffers that start small and follow
 * the reads, output buffers lent while output is in flight, and the write
 * buffers and NOTIFY state that sessions share per thread. Large frames,
 * byte-at-a-time frames and many connections at once still get the right
 * answers, on the runtime's sockets and on a session alone.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  BufferPool,
  READ_BUFFER_MAX,
  READ_BUFFER_MIN,
  READ_SHRINK_AFTER,
  ReadBuffer,
} from "../lib/runtime/_buffers.ts";
import { Agent, createLogger, Level, serve } from "../lib/mod.ts";
import { DataType, FrameType } from "../lib/spop.ts";
import { concat, notifyBytes, SpopClient } from "./_spop_client.ts";
import {
  deferred,
  haproxyHello,
  notify,
  settle,
  startSession,
  summary,
} from "./_session_harness.ts";

test("ReadBuffer doubles after each read that fills it, up to its largest size", () => {
  const rb = new ReadBuffer(256, 2048);
  assert.equal(rb.bytes.length, 256);
  const sizes: number[] = [];
  for (let i = 0; i < 5; i++) {
    rb.used(rb.bytes.length);
    sizes.push(rb.bytes.length);
  }
  assert.deepEqual(sizes, [512, 1024, 2048, 2048, 2048]);
});

test("ReadBuffer keeps its buffer for reads that do not fill it", () => {
  const rb = new ReadBuffer();
  assert.equal(rb.bytes.length, READ_BUFFER_MIN);
  const first = rb.bytes;
  for (let i = 0; i < 10 * READ_SHRINK_AFTER; i++) rb.used(READ_BUFFER_MIN - 1 - (i % 100));
  assert.equal(rb.bytes, first, "no new buffer");
});

test("ReadBuffer halves after a run of reads of a quarter or less, never below its first size", () => {
  const rb = new ReadBuffer(256, READ_BUFFER_MAX);
  while (rb.bytes.length < READ_BUFFER_MAX) rb.used(rb.bytes.length);
  const big = rb.bytes;
  for (let i = 0; i < READ_SHRINK_AFTER - 1; i++) rb.used(100);
  assert.equal(rb.bytes, big, "not before the run is complete");
  rb.used(READ_BUFFER_MAX / 2); // More than a quarter: the run starts again.
  for (let i = 0; i < READ_SHRINK_AFTER - 1; i++) rb.used(100);
  assert.equal(rb.bytes, big);
  rb.used(100);
  assert.equal(rb.bytes.length, READ_BUFFER_MAX / 2);
  for (let i = 0; i < 100 * READ_SHRINK_AFTER; i++) rb.used(10);
  assert.equal(rb.bytes.length, 256);
});

test("BufferPool lends a buffer given back, and lets go of one grown beyond keepBytes", () => {
  const pool = new BufferPool(4096, 16384, 65536);
  const a = pool.take(100);
  assert.equal(a.length, 4096);
  pool.give(a);
  assert.equal(pool.freeBytes, 4096);
  assert.equal(pool.take(4096), a);
  const big = pool.take(20000);
  assert.equal(big.length, 32768);
  pool.give(big);
  assert.equal(pool.freeBytes, 0, "too large to keep");
  const b = pool.take(10);
  pool.give(b);
  assert.notEqual(pool.take(5000), b, "too small for the take");
});

test("BufferPool keeps at most maxBytes", () => {
  const pool = new BufferPool(1024, 1024, 4096);
  const taken = Array.from({ length: 8 }, () => pool.take(1));
  for (const buf of taken) pool.give(buf);
  assert.equal(pool.freeBytes, 4096);
});

/** Answers `echo-size` with the length of its STRING argument, `big-answer` with `n` bytes. */
function sizeAgent(): Agent {
  return new Agent()
    .on("echo-size", (message, reply) => {
      reply.setVar("txn", "len", message.string("s")!.length);
    })
    .on("big-answer", (message, reply) => {
      reply.setVar("txn", "v", "v".repeat(message.int("n")!));
    });
}

function sizeNotify(streamId: number, size: number): Uint8Array {
  return notifyBytes(streamId, 1, [{
    name: "echo-size",
    args: [{ name: "s", type: DataType.STRING, value: "x".repeat(size) }],
  }]);
}

async function withAgent(
  body: (client: SpopClient) => Promise<void>,
  maxFrameSize = 65535,
): Promise<void> {
  const server = await serve(sizeAgent(), {
    hostname: "127.0.0.1",
    port: 0,
    maxFrameSize,
    log: createLogger({ level: Level.ERROR, sink: () => {} }),
  });
  const client = await SpopClient.connect(server.port);
  try {
    await body(client);
  } finally {
    await client.close();
    await server.shutdown(1000);
  }
}

test("the runtime's sockets carry NOTIFYs far larger than the first read buffer, whole and in pieces", async () => {
  await withAgent(async (client) => {
    const hello = await client.hello({ maxFrameSize: 65535 });
    assert.equal(hello.hello?.maxFrameSize, 65535);
    // One write of a frame near the largest size.
    await client.send(sizeNotify(1, 65000));
    // The same in 1,000-byte pieces, then one of 10,000 bytes a byte at a time.
    const pieces = sizeNotify(3, 65000);
    for (let at = 0; at < pieces.length; at += 1000) {
      await client.send(pieces.subarray(at, at + 1000));
    }
    const bytes = sizeNotify(5, 10000);
    for (let i = 0; i < bytes.length; i++) await client.send(bytes.subarray(i, i + 1));
    for (const [streamId, size] of [[1, 65000], [3, 65000], [5, 10000]]) {
      const ack = await client.nextFrame();
      assert.equal(ack.type, FrameType.ACK);
      assert.equal(ack.streamId, streamId);
      assert.equal(ack.actions?.[0]?.value, size);
    }
  });
});

test("the runtime's sockets send a 60,000-byte ACK and 2,000 ACKs of one read, in order", async () => {
  await withAgent(async (client) => {
    await client.hello({ maxFrameSize: 65535 });
    const big = notifyBytes(1, 1, [{
      name: "big-answer",
      args: [{ name: "n", type: DataType.UINT32, value: 60000 }],
    }]);
    const many = Array.from({ length: 2000 }, (_, i) => sizeNotify(3 + 2 * i, i % 50));
    await client.send(concat([big, ...many]));
    const ack = await client.nextFrame();
    assert.equal(ack.streamId, 1);
    assert.equal((ack.actions?.[0]?.value as string).length, 60000);
    for (let i = 0; i < 2000; i++) {
      const next = await client.nextFrame();
      assert.equal(next.streamId, 3 + 2 * i);
      assert.equal(next.actions?.[0]?.value, i % 50);
    }
  });
});

test("the runtime's sockets carry a 1 MiB NOTIFY and a 1 MiB ACK when -m allows 2 MiB", async () => {
  const MIB = 1024 * 1024;
  await withAgent(async (client) => {
    await client.hello({ maxFrameSize: 2 * MIB });
    await client.send(sizeNotify(1, MIB));
    await client.send(notifyBytes(3, 1, [{
      name: "big-answer",
      args: [{ name: "n", type: DataType.UINT32, value: MIB }],
    }]));
    await client.send(sizeNotify(5, 10));
    const first = await client.nextFrame();
    assert.equal(first.streamId, 1);
    assert.equal(first.actions?.[0]?.value, MIB);
    const second = await client.nextFrame();
    assert.equal(second.streamId, 3);
    assert.equal((second.actions?.[0]?.value as string).length, MIB);
    const third = await client.nextFrame();
    assert.equal(third.streamId, 5);
    assert.equal(third.actions?.[0]?.value, 10);
  }, 2 * MIB);
});

test("sessions whose ACKs wait for the same flush each send only their own", async () => {
  const gate = deferred();
  const agent = new Agent().on("wait", async (message, reply) => {
    const id = message.int("id")!;
    await gate.promise;
    reply.setVar("txn", "id", id);
  });
  const sessions = Array.from({ length: 5 }, () => startSession(agent, {}, Level.ERROR));
  sessions.forEach((h, i) => {
    h.conn.feed(haproxyHello());
    h.conn.feed(notify(1 + i, 1, [{ name: "wait", args: [["id", DataType.UINT32, i]] }]));
  });
  gate.resolve();
  await settle();
  sessions.forEach((h, i) => {
    const frames = h.conn.frames();
    assert.deepEqual(summary(frames), ["HELLO", `ACK ${1 + i}/1`]);
    assert.equal(frames[1]!.actions?.[0]?.value, i);
    assert.equal(h.session.bufferBytes, 0, "no buffer held once the ACK went out");
  });
});

test("a thousand idle sessions hold no write buffer once their ACKs went out", async () => {
  const agent = new Agent().on("n", () => {});
  const sessions = Array.from({ length: 1000 }, () => startSession(agent, {}, Level.ERROR));
  for (const h of sessions) {
    h.conn.feed(haproxyHello());
    h.conn.feed(notify(1, 1, [{ name: "n" }]));
  }
  await settle();
  for (const h of sessions) {
    assert.deepEqual(summary(h.conn.frames()), ["HELLO", "ACK 1/1"]);
    assert.equal(h.session.bufferBytes, 0);
  }
});

test("a connection closed by its last delayed ACK leaves the shared NOTIFY state whole", async () => {
  // The last ACK of a drain closes the connection, and this fake reports the
  // close at once, as Bun's sockets can: the NOTIFY being acknowledged is
  // abandoned with the others before its ACK returns.
  const first = startSession(new Agent().on("n", () => {}), { replyDelay: 10 }, Level.ERROR);
  first.conn.autoClose = false;
  const close = first.conn.close.bind(first.conn);
  first.conn.close = () => {
    close();
    first.conn.deliverClose();
  };
  first.conn.feed(haproxyHello());
  first.conn.feed(notify(1, 1, [{ name: "n" }]));
  first.session.onEnd();
  first.timers.advance(10);
  await settle();
  assert.deepEqual(summary(first.conn.frames()), ["HELLO", "ACK 1/1", "DISCONNECT 0"]);
  // Two NOTIFYs in flight at once on another connection each get their own state.
  const gate = deferred();
  const agent = new Agent().on("wait", async (message, reply) => {
    const id = message.int("id")!;
    await gate.promise;
    reply.setVar("txn", "id", id);
  });
  const second = startSession(agent, {}, Level.ERROR);
  second.conn.feed(haproxyHello());
  for (const id of [3, 5, 7]) {
    second.conn.feed(notify(id, 1, [{ name: "wait", args: [["id", DataType.UINT32, id]] }]));
  }
  gate.resolve();
  await settle();
  const frames = second.conn.frames();
  assert.deepEqual(summary(frames), ["HELLO", "ACK 3/1", "ACK 5/1", "ACK 7/1"]);
  assert.deepEqual(frames.slice(1).map((f) => f.actions?.map((a) => a.value)), [[3], [5], [7]]);
});
