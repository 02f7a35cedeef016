/**
 * Memory does not ratchet: a buffer grown for one large frame (the frame
 * scanner's stash, a reassembly buffer, a reply's actions, a message copied
 * for an async handler, the session's write buffer) shrinks back once that
 * frame is done.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Reassembly } from "../lib/spop/_fragments.ts";
import { Agent } from "../lib/agent/handler.ts";
import { Level } from "../lib/agent/log.ts";
import { MessageSlot } from "../lib/agent/message.ts";
import { pooledBytes } from "../lib/agent/_inflight.ts";
import { ReplySlot } from "../lib/agent/reply.ts";
import {
  DataType,
  Flag,
  Frame,
  FrameScanner,
  FrameType,
  FrameWriter,
  MessageReader,
} from "../lib/spop.ts";
import { haproxyHello, notify, settle, startSession, summary } from "./_session_harness.ts";

const MIB = 1024 * 1024;

/** A NOTIFY frame with one STRING argument of `size` bytes. */
function bigNotify(size: number, streamId = 1): Uint8Array {
  return notify(streamId, 1, [{ name: "big", args: [["s", DataType.STRING, "x".repeat(size)]] }]);
}

test("FrameScanner lets a stash grown for a 1 MiB frame go once the frame was used", () => {
  const scanner = new FrameScanner(2 * MIB);
  const frame = bigNotify(MIB);
  scanner.push(frame.subarray(0, 1000));
  assert.equal(scanner.next(), null);
  scanner.push(frame.subarray(1000));
  assert.equal(scanner.next()?.type, FrameType.NOTIFY);
  assert.ok(scanner.capacity > MIB, "the frame was stashed");
  const small = notify(3, 1, []);
  scanner.push(small);
  assert.equal(scanner.next()?.streamId, 3);
  assert.ok(scanner.capacity <= 16 * 1024, `stash ${scanner.capacity} bytes after the frame`);
});

/** A frame as the scanner fills it. */
function frameOf(type: number, fin: boolean, streamId: number, payload: Uint8Array): Frame {
  const frame = new Frame();
  frame.type = type;
  frame.flags = fin ? Flag.FIN : 0;
  frame.streamId = streamId;
  frame.frameId = 1;
  frame.buf = payload;
  frame.payloadStart = 0;
  frame.end = payload.length;
  return frame;
}

test("Reassembly lets a buffer grown for a large payload go before the next frame", () => {
  const reassembly = new Reassembly(4 * MIB);
  reassembly.add(frameOf(FrameType.NOTIFY, false, 1, new Uint8Array(MIB)));
  reassembly.add(frameOf(FrameType.UNSET, true, 1, new Uint8Array(MIB)));
  assert.ok(reassembly.capacity >= 2 * MIB);
  reassembly.add(frameOf(FrameType.NOTIFY, true, 3, new Uint8Array(10)));
  assert.ok(reassembly.capacity < 64 * 1024, `buffer ${reassembly.capacity} bytes`);
});

test("ReplySlot lets actions grown to 100 KB go once cleared", () => {
  const slot = new ReplySlot();
  slot.writer.setVar(2, new TextEncoder().encode("big"), DataType.STRING, "y".repeat(100_000));
  slot.count = 1;
  assert.ok(slot.writer.capacity > 100_000);
  slot.clear();
  assert.ok(slot.writer.capacity <= 4096, `writer ${slot.writer.capacity} bytes`);
});

test("MessageSlot lets a copy grown for a large async message go once released", () => {
  const w = new FrameWriter(256);
  w.message("big", 1).arg("s", DataType.STRING, "z".repeat(200_000));
  const buf = w.take();
  const reader = new MessageReader().reset(buf, 0, buf.length);
  assert.ok(reader.next());
  const slot = new MessageSlot();
  slot.load(reader, buf);
  slot.detach();
  assert.ok(slot.copyCapacity >= 200_000);
  slot.release();
  assert.equal(slot.copyCapacity, 0);
});

test("FrameWriter.shrink() replaces only a buffer grown beyond the limit", () => {
  const w = new FrameWriter(1024);
  w.begin(FrameType.ACK, 1, 1).setVar(
    2,
    new TextEncoder().encode("v"),
    DataType.STRING,
    "a".repeat(10),
  );
  w.end();
  w.shrink(4096, 1024);
  assert.equal(w.capacity, 1024, "a small buffer is kept");
  assert.equal(w.size, 0);
  w.begin(FrameType.ACK, 1, 1).setVar(
    2,
    new TextEncoder().encode("v"),
    DataType.STRING,
    "a".repeat(9000),
  );
  w.end();
  assert.ok(w.capacity > 4096);
  w.shrink(4096, 1024);
  assert.equal(w.capacity, 1024);
});

test("a session serves a 1 MiB NOTIFY and a 100 KB ACK, then holds small buffers again", async () => {
  const agent = new Agent()
    .on("big", (message, reply) => void reply.setVar("txn", "len", message.string("s")!.length))
    .on("huge-answer", (_m, reply) => void reply.setVar("txn", "v", "v".repeat(100_000)))
    .on("async-big", async (message, reply) => {
      await Promise.resolve();
      reply.setVar("txn", "len", message.string("s")!.length);
    });
  const h = startSession(agent, { maxFrameSize: 2 * MIB }, Level.ERROR);
  h.conn.feed(haproxyHello({ maxFrameSize: 2 * MIB }));
  const big = bigNotify(MIB);
  h.conn.feedSplit(big, 4096);
  h.conn.feed(notify(3, 1, [{ name: "huge-answer", args: [] }]));
  const asyncBig = notify(5, 1, [{
    name: "async-big",
    args: [["s", DataType.STRING, "q".repeat(300_000)]],
  }]);
  h.conn.feedSplit(asyncBig, 100);
  await settle();
  assert.deepEqual(summary(h.conn.frames()), ["HELLO", "ACK 1/1", "ACK 3/1", "ACK 5/1"]);
  assert.equal(h.conn.frames()[1]!.actions?.[0]?.value, MIB);
  assert.equal(h.conn.frames()[3]!.actions?.[0]?.value, 300_000);
  h.conn.feed(notify(7, 1, []));
  await settle();
  const held = h.session.bufferBytes;
  assert.ok(held < 100 * 1024, `${held} bytes held after the large frames (3 MiB went through)`);
  const pooled = pooledBytes();
  assert.ok(pooled < 100 * 1024, `${pooled} bytes pooled after the large frames`);
});
