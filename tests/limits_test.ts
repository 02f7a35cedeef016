/**
 * Bounds against slow or hostile peers and handlers: the handler deadline,
 * the incomplete-frame timeout and the connection limit.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Agent, createLogger, DataType, Level } from "../lib/mod.ts";
import { createAcceptor } from "../lib/serve/server.ts";
import { FrameType, FrameWriter, Status } from "../lib/spop.ts";
import {
  deferred,
  FakeConn,
  haproxyHello,
  linesAt,
  notify,
  settle,
  startSession,
} from "./_session_harness.ts";

const ASK = { name: "ask", args: [["", DataType.STRING, "x"]] as const };

test("Session acknowledges without actions when handlers outlive handlerTimeout", async () => {
  const never = deferred();
  const agent = new Agent().on("ask", async (_m, reply) => {
    reply.setVar("txn", "early", 1); // Set before hanging: must not reach HAProxy.
    await never.promise;
    reply.setVar("txn", "late", 2);
  });
  const h = startSession(agent, { handlerTimeout: 50 });
  h.conn.feed(haproxyHello());
  h.conn.feed(notify(1, 1, [ASK]));
  await settle();
  assert.equal(h.conn.frames().filter((f) => f.type === FrameType.ACK).length, 0);
  h.timers.advance(49);
  await settle();
  assert.equal(h.conn.frames().filter((f) => f.type === FrameType.ACK).length, 0);
  h.timers.advance(1);
  await settle();
  const acks = h.conn.frames().filter((f) => f.type === FrameType.ACK);
  assert.equal(acks.length, 1);
  assert.deepEqual(acks[0]!.actions?.map((a) => a.name), ["_"], "only the padding unset-var");
  assert.equal(linesAt(h.lines, "warn").length, 1);
  assert.equal(h.session.inFlight, 0);
  // The late handler finishes: nothing more is written, and the next NOTIFY is answered cleanly.
  never.resolve();
  await settle();
  h.conn.feed(notify(3, 1, [{ name: "other" }]));
  await settle();
  const after = h.conn.frames().filter((f) => f.type === FrameType.ACK);
  assert.equal(after.length, 2);
  assert.equal(after[1]!.streamId, 3);
  assert.deepEqual(after[1]!.actions?.map((a) => a.name), ["_"]);
});

test("Session keeps a handler's actions when it finishes before handlerTimeout", async () => {
  const done = deferred();
  const agent = new Agent().on("ask", async (_m, reply) => {
    await done.promise;
    reply.setVar("txn", "ok", true);
  });
  const h = startSession(agent, { handlerTimeout: 50 });
  h.conn.feed(haproxyHello());
  h.conn.feed(notify(1, 1, [ASK]));
  h.timers.advance(40);
  done.resolve();
  await settle();
  h.timers.advance(100);
  await settle();
  const acks = h.conn.frames().filter((f) => f.type === FrameType.ACK);
  assert.equal(acks.length, 1);
  assert.deepEqual(acks[0]!.actions?.map((a) => a.name), ["ok"]);
  assert.equal(linesAt(h.lines, "warn").length, 0);
});

test("Session with handlerTimeout 0 waits for handlers as long as they take", async () => {
  const done = deferred();
  const agent = new Agent().on("ask", async () => await done.promise);
  const h = startSession(agent, { handlerTimeout: 0 });
  h.conn.feed(haproxyHello());
  h.conn.feed(notify(1, 1, [ASK]));
  h.timers.advance(60_000);
  await settle();
  assert.equal(h.conn.frames().filter((f) => f.type === FrameType.ACK).length, 0);
  done.resolve();
  await settle();
  assert.equal(h.conn.frames().filter((f) => f.type === FrameType.ACK).length, 1);
});

test("Session.expire() closes a connection stuck mid-frame with status 2", () => {
  const h = startSession(new Agent(), { frameTimeout: 5000 });
  h.conn.feed(haproxyHello());
  const frame = notify(1, 1, [ASK]);
  h.conn.feed(frame.subarray(0, 10));
  h.timers.now = 4999;
  h.session.expire(h.timers.now);
  assert.equal(h.conn.frames().filter((f) => f.type === FrameType.AGENT_DISCONNECT).length, 0);
  h.timers.now = 5000;
  h.session.expire(h.timers.now);
  const bye = h.conn.frames().filter((f) => f.type === FrameType.AGENT_DISCONNECT);
  assert.equal(bye[0]?.disconnect?.status, Status.TIMEOUT);
  assert.deepEqual(linesAt(h.lines, "info"), [
    "1970-01-01T00:00:00.000Z info 192.0.2.7:40000: frame still incomplete after 5000 ms; closing with status 2",
  ]);
  h.timers.now = 6000;
  h.session.expire(h.timers.now);
  assert.equal(linesAt(h.lines, "info").length, 1, "one line per connection");
});

test("Session.expire() leaves alone a connection whose frames complete, however slowly", () => {
  const h = startSession(new Agent(), { frameTimeout: 5000 });
  h.conn.feed(haproxyHello());
  const frame = notify(1, 1, [ASK]);
  h.conn.feed(frame.subarray(0, 10));
  h.timers.now = 4000;
  h.conn.feed(frame.subarray(10));
  h.timers.now = 60_000;
  h.session.expire(h.timers.now);
  const types = h.conn.frames().map((f) => f.type);
  assert.deepEqual(types, [FrameType.AGENT_HELLO, FrameType.ACK]);
});

test("Session.expire() does not count time spent with reading paused by the agent", () => {
  const h = startSession(new Agent(), { frameTimeout: 5000, maxQueuedBytes: 10 });
  h.conn.queued = 1000; // The peer does not read our output: after the HELLO reading pauses.
  h.conn.feed(haproxyHello());
  const frame = notify(1, 1, [ASK]);
  h.conn.feed(frame.subarray(0, 10));
  assert.ok(h.conn.events.includes("pause"));
  h.timers.now = 4000; // Paused for 4 s: the frame timeout would have run out at 5 s.
  h.session.expire(h.timers.now);
  h.conn.queued = 0;
  h.session.onDrain(); // Reading resumes at 4 s: the peer gets a fresh frameTimeout.
  h.timers.now = 8999;
  h.session.expire(h.timers.now);
  assert.equal(h.conn.frames().filter((f) => f.type === FrameType.AGENT_DISCONNECT).length, 0);
  h.timers.now = 9000;
  h.session.expire(h.timers.now);
  assert.equal(h.conn.frames().filter((f) => f.type === FrameType.AGENT_DISCONNECT).length, 1);
});

test("createAcceptor() closes connections beyond maxConnections at once, others untouched", async () => {
  const lines: string[] = [];
  const acceptor = createAcceptor(new Agent(), {
    maxConnections: 2,
    log: createLogger({ level: Level.INFO, sink: (l) => lines.push(l) }),
  });
  const conns = [new FakeConn(), new FakeConn(), new FakeConn()];
  for (const conn of conns) conn.handler = acceptor.accept(conn);
  assert.equal(acceptor.connections, 2);
  assert.equal(conns[2]!.count("destroy"), 1);
  assert.equal(conns[0]!.count("destroy") + conns[1]!.count("destroy"), 0);
  conns[0]!.feed(haproxyHello());
  assert.equal(conns[0]!.frames()[0]?.type, FrameType.AGENT_HELLO);
  assert.equal(lines.filter((l) => l.includes("--max-connections")).length, 1);
  // A slot frees up when a connection closes.
  conns[1]!.handler!.onClose();
  await settle();
  const late = new FakeConn();
  late.handler = acceptor.accept(late);
  assert.equal(late.count("destroy"), 0);
  await acceptor.shutdown(100);
});

test("Session answers a HAPROXY-DISCONNECT with an impossible status as status 99 and closes", () => {
  for (const [type, value] of [[DataType.INT32, -1], [DataType.UINT64, 2n ** 40n]] as const) {
    const h = startSession(new Agent());
    h.conn.feed(haproxyHello());
    const w = new FrameWriter(64);
    w.begin(FrameType.HAPROXY_DISCONNECT).kv("status-code", type, value)
      .kv("message", DataType.STRING, "bye").end();
    h.conn.feed(w.take());
    const bye = h.conn.frames().filter((f) => f.type === FrameType.AGENT_DISCONNECT);
    assert.equal(bye[0]?.disconnect?.status, Status.UNKNOWN, `${value}`);
    assert.ok(h.conn.ended, "closed");
    assert.equal(linesAt(h.lines, "error").length, 0);
  }
});

test("Session.expire() cuts off a peer that reads none of its output for frameTimeout", () => {
  const h = startSession(new Agent(), { frameTimeout: 5000, maxQueuedBytes: 10 });
  h.conn.queued = 1000; // Nothing we write leaves: the AGENT-HELLO fills the queue.
  h.conn.feed(haproxyHello());
  h.timers.now = 4999;
  h.session.expire(h.timers.now);
  assert.equal(h.conn.count("destroy"), 0);
  h.timers.now = 5000;
  h.session.expire(h.timers.now);
  assert.equal(h.conn.count("destroy"), 1);
  assert.equal(linesAt(h.lines, "warn").length, 1);
});
