/**
 * Handler lifetimes: what a handler keeps of its message, arguments, reply
 * and context never reaches another NOTIFY; the context's signal; late
 * handlers are bounded; a closed connection leaves no timer and no log.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Agent,
  type Arg,
  type Context,
  createLogger,
  Level,
  type Message,
  type Reply,
  serve,
} from "../lib/mod.ts";
import { DataType, FrameType } from "../lib/spop.ts";
import {
  concat,
  deferred,
  haproxyHello,
  type Harness,
  linesAt,
  notify,
  PAD,
  settle,
  startSession,
  summary,
} from "./_session_harness.ts";
import { SpopClient } from "./_spop_client.ts";

const LATE = /its NOTIFY was already acknowledged$/;

/** A session past its handshake, with the AGENT-HELLO taken off the record. */
function running(agent: Agent, options: Parameters<typeof startSession>[1] = {}): Harness {
  const h = startSession(agent, options, Level.INFO);
  h.conn.feed(haproxyHello({ engineId: "engine-7" }));
  assert.deepEqual(summary(h.conn.frames()), ["HELLO"]);
  h.conn.writes.length = 0;
  h.conn.events.length = 0;
  return h;
}

/** Every late use of a message, its first argument, a reply and a context, each expected to throw. */
function assertAllSealed(m: Message, arg: Arg | undefined, r: Reply, c: Context | undefined): void {
  const uses: [string, () => unknown][] = [
    ["message.name", () => m.name],
    ["message.size", () => m.size],
    ["message.arg", () => m.arg(0)],
    ["message.ip", () => m.ip(0)],
    ["message.int", () => m.int("n")],
    ["message.bigint", () => m.bigint("n")],
    ["message.string", () => m.string("s")],
    ["message.binary", () => m.binary(0)],
    ["message.boolean", () => m.boolean(0)],
    ["message.isNull", () => m.isNull(0)],
    ["reply.setVar", () => r.setVar("txn", "late", 1)],
    ["reply.unsetVar", () => r.unsetVar("txn", "late")],
    ["reply.size", () => r.size],
  ];
  if (arg !== undefined) {
    uses.push(
      ["arg.type", () => arg.type],
      ["arg.name", () => arg.name],
      ["arg.text", () => arg.text()],
      ["arg.value", () => arg.value()],
      ["arg.bytes", () => arg.bytes()],
      ["arg.byteLength", () => arg.byteLength],
      ["arg.copyTo", () => arg.copyTo(new Uint8Array(16))],
    );
  }
  if (c !== undefined) {
    uses.push(
      ["context.streamId", () => c.streamId],
      ["context.frameId", () => c.frameId],
      ["context.engineId", () => c.engineId],
      ["context.remote", () => c.remote],
      ["context.capabilities", () => c.capabilities],
      ["context.signal", () => c.signal],
    );
  }
  for (const [what, use] of uses) assert.throws(use, LATE, what);
}

const ARGS = [
  ["ip", DataType.IPV4, "10.0.0.1"],
  ["n", DataType.INT64, 7],
  ["s", DataType.STRING, "first"],
] as const;

test("serve() keeps a fire-and-forget handler's late setVar out of the next NOTIFY's ACK", async () => {
  // The scenario of the issue: stream 1's handler sets a variable 5 ms after
  // it returned; stream 3's handler takes 30 ms on the same connection.
  const errors: string[] = [];
  const agent = new Agent()
    .on("fire-and-forget", (_m, reply) => {
      setTimeout(() => {
        try {
          reply.setVar("txn", "leaked", "from-fire-and-forget");
        } catch (err) {
          errors.push((err as Error).message);
        }
      }, 5);
    })
    .on("slow", async (_m, reply) => {
      await new Promise((r) => setTimeout(r, 30));
      reply.setVar("txn", "mine", "slow");
    });
  const server = await serve(agent, {
    hostname: "127.0.0.1",
    port: 0,
    log: createLogger({ level: Level.ERROR, sink: () => {} }),
  });
  const client = await SpopClient.connect(server.port);
  try {
    await client.hello();
    const first = await client.notify(1, 1, [{ name: "fire-and-forget", args: [] }]);
    const second = await client.notify(3, 1, [{ name: "slow", args: [] }]);
    assert.equal(first.streamId, 1);
    assert.deepEqual(first.actions?.map((a) => a.name), ["_"], "stream 1: no action of its own");
    assert.equal(second.type, FrameType.ACK);
    assert.equal(second.streamId, 3);
    assert.deepEqual(
      second.actions?.map((a) => [a.name, a.value]),
      [["mine", "slow"]],
      "stream 3 carries its own variable only",
    );
    assert.deepEqual(errors, [
      'Cannot set variable "leaked": its NOTIFY was already acknowledged',
    ]);
  } finally {
    await client.close();
    await server.shutdown(1000);
  }
});

test("a plain handler's message, arguments, reply and context throw once it returned", () => {
  let kept: [Message, Arg | undefined, Reply, Context] | undefined;
  const seen: Context[] = [];
  const agent = new Agent().on("m", (message, reply, context) => {
    kept = [message, message.arg(0), reply, context];
    seen.push(context);
    reply.setVar("txn", "s", message.string("s") ?? "");
  });
  const h = running(agent);
  h.conn.feed(notify(1, 1, [{ name: "m", args: ARGS }]));
  assertAllSealed(...kept!);
  h.conn.feed(notify(3, 1, [{ name: "m", args: [["s", DataType.STRING, "second"]] }]));
  assertAllSealed(...kept!);
  const acks = h.conn.frames();
  assert.deepEqual(acks.map((f) => f.actions?.[0]?.value), ["first", "second"]);
  assert.equal(seen[0], seen[1], "plain handlers share the pooled handles: nothing allocated");
});

test("an async handler's handles read their own NOTIFY across awaits, then throw once it is acknowledged", async () => {
  const gate = deferred();
  let kept: [Message, Arg | undefined, Reply, Context] | undefined;
  let bytes: Uint8Array | undefined;
  const agent = new Agent().on("m", async (message, reply, context) => {
    const arg = message.arg("ip");
    bytes = arg?.bytes(); // a copy, taken before the await
    kept = [message, arg, reply, context];
    await gate.promise;
    reply
      .setVar("txn", "s", message.string("s") ?? "")
      .setVar("txn", "ip", arg?.text() ?? "")
      .setVar("txn", "stream", Number(context.streamId));
  });
  const h = running(agent);
  h.conn.feed(notify(5, 1, [{ name: "m", args: ARGS }])); // the read buffer is scribbled after
  h.conn.feed(notify(7, 1, [{ name: "other", args: [["s", DataType.STRING, "noise"]] }]));
  gate.resolve();
  await settle();
  const [ack] = h.conn.frames().filter((f) => f.streamId === 5);
  assert.deepEqual(ack!.actions!.map((a) => a.value), ["first", "10.0.0.1", 5]);
  assert.deepEqual(bytes, new Uint8Array([10, 0, 0, 1]));
  assertAllSealed(...kept!);
});

test("a handler past its deadline cannot touch the next NOTIFY that reuses its state", async () => {
  const gates = [deferred(), deferred()];
  const late: string[] = [];
  let call = 0;
  const agent = new Agent().on("slow", async (message, reply) => {
    const mine = call++;
    const before = message.string("s");
    await gates[mine]!.promise;
    try {
      reply.setVar("txn", "from", `call ${mine}: ${before}`);
      message.string("s");
    } catch (err) {
      late.push((err as Error).message);
    }
  });
  const h = running(agent, { handlerTimeout: 10 });
  h.conn.feed(notify(1, 1, [{ name: "slow", args: [["s", DataType.STRING, "one"]] }]));
  h.timers.advance(10); // NOTIFY 1 acknowledged without actions; its state goes back to the pool
  assert.equal(h.session.lateHandlers, 1);
  h.conn.feed(notify(3, 1, [{ name: "slow", args: [["s", DataType.STRING, "two"]] }]));
  gates[0]!.resolve(); // the late handler of NOTIFY 1 wakes while NOTIFY 3 is in flight
  await settle();
  gates[1]!.resolve();
  await settle();
  assert.equal(h.session.lateHandlers, 0);
  const frames = h.conn.frames();
  assert.deepEqual(summary(frames), ["ACK 1/1", "ACK 3/1"]);
  assert.deepEqual(frames[0]!.actions, [PAD]);
  assert.deepEqual(frames[1]!.actions!.map((a) => a.value), ["call 1: two"]);
  assert.deepEqual(late, ['Cannot set variable "from": its NOTIFY was already acknowledged']);
});

test("a plain function that returns a promise is acknowledged at once, with one error", async () => {
  const agent = new Agent().on(
    "then-style",
    (_m, reply) => Promise.resolve().then(() => void reply.setVar("txn", "x", 1)),
  );
  const h = running(agent);
  h.conn.feed(notify(1, 1, [{ name: "then-style", args: [] }]));
  h.conn.feed(notify(3, 1, [{ name: "then-style", args: [] }]));
  await settle();
  assert.deepEqual(summary(h.conn.frames()), ["ACK 1/1", "ACK 3/1"]);
  assert.deepEqual(h.conn.frames().map((f) => f.actions), [[PAD], [PAD]]);
  const errors = linesAt(h.lines, "error");
  assert.equal(errors.length, 1, "logged once per handler");
  assert.match(errors[0]!, /"then-style" returned a promise but is not an async function/);
});

test("Context tells the NOTIFY's ids, the engine, the peer and the capabilities", () => {
  let got: Record<string, unknown> | undefined;
  const agent = new Agent().on("m", (_m, _r, context) => {
    got = {
      streamId: context.streamId,
      frameId: context.frameId,
      engineId: context.engineId,
      remote: context.remote,
      capabilities: context.capabilities,
      aborted: context.signal.aborted,
    };
    context.log.info("from a handler");
  });
  const h = running(agent);
  h.conn.feed(notify(2n ** 60n, 9, [{ name: "m", args: [] }]));
  assert.deepEqual(got, {
    streamId: 2n ** 60n,
    frameId: 9,
    engineId: "engine-7",
    remote: "192.0.2.7:40000",
    capabilities: ["pipelining"],
    aborted: false,
  });
  assert.match(linesAt(h.lines, "info").at(-1)!, / from a handler$/);
});

test("Context.signal aborts at the handler deadline, with a TimeoutError", async () => {
  let signal: AbortSignal | undefined;
  const agent = new Agent().on("m", async (_m, _r, context) => {
    signal = context.signal;
    await new Promise<void>((resolve) => signal!.addEventListener("abort", () => resolve()));
  });
  const h = running(agent, { handlerTimeout: 25 });
  h.conn.feed(notify(1, 1, [{ name: "m", args: [] }]));
  assert.equal(signal!.aborted, false);
  h.timers.advance(25);
  assert.equal(signal!.aborted, true);
  assert.equal((signal!.reason as DOMException).name, "TimeoutError");
  await settle();
  assert.equal(h.session.lateHandlers, 0, "the handler gave up once aborted");
});

test("Context.signal aborts when the connection closes and when the agent shuts down", async () => {
  const signals: AbortSignal[] = [];
  const agent = new Agent().on("m", async (_m, _r, context) => {
    signals.push(context.signal);
    await new Promise<void>((resolve) => context.signal.addEventListener("abort", () => resolve()));
  });
  const closing = running(agent);
  closing.conn.feed(notify(1, 1, [{ name: "m", args: [] }]));
  closing.conn.deliverClose();
  assert.equal((signals[0]!.reason as DOMException).name, "AbortError");
  assert.match((signals[0]!.reason as DOMException).message, /connection closed/);

  const stopping = running(agent);
  stopping.conn.feed(notify(1, 1, [{ name: "m", args: [] }]));
  const closed = stopping.session.shutdown();
  assert.match((signals[1]!.reason as DOMException).message, /agent is stopping/);
  await settle();
  await closed;
  assert.deepEqual(summary(stopping.conn.frames()), ["ACK 1/1", "DISCONNECT 0"]);
});

test("an async handler that declares two parameters gets no context", async () => {
  const thirds: unknown[] = [];
  const agent = new Agent()
    .on("two", async function (_m, _r) {
      thirds.push(arguments[2]);
      await Promise.resolve();
    })
    .on("three", async (_m, _r, context) => {
      thirds.push(typeof context.streamId);
      await Promise.resolve();
    });
  const h = running(agent);
  h.conn.feed(notify(1, 1, [{ name: "two", args: [] }, { name: "three", args: [] }]));
  await settle();
  assert.equal(thirds[0], undefined, "not made when not asked for");
  assert.equal(thirds[1], "number");
});

test("late handlers above maxLateHandlers pause reading until they finish", async () => {
  const gates = [deferred(), deferred(), deferred()];
  let n = 0;
  const agent = new Agent().on("hang", async () => await gates[n++]!.promise);
  const h = running(agent, { handlerTimeout: 5, maxLateHandlers: 2 });
  h.conn.feed(notify(1, 1, [{ name: "hang", args: [] }]));
  h.timers.advance(5);
  assert.ok(
    !h.conn.events.includes("pause"),
    `one late handler: reading goes on (${h.conn.events})`,
  );
  h.conn.feed(notify(3, 1, [{ name: "hang", args: [] }]));
  h.timers.advance(5);
  assert.equal(h.session.lateHandlers, 2);
  assert.equal(h.session.inFlight, 0, "both NOTIFYs were acknowledged");
  assert.equal(h.conn.events.at(-1), "pause", "the bound pauses reading");
  gates[0]!.resolve();
  await settle();
  assert.equal(h.session.lateHandlers, 1);
  assert.equal(h.conn.events.at(-1), "resume");
  assert.equal(linesAt(h.lines, "warn").length, 2, "one deadline warning per NOTIFY");
});

test("a closed connection leaves no timer armed and logs nothing about its NOTIFYs", async () => {
  const gate = deferred();
  const agent = new Agent()
    .on("fails-later", async () => {
      await gate.promise;
      throw new Error("too late to matter");
    });
  const h = running(agent, { handlerTimeout: 50 });
  h.conn.feed(concat(
    notify(1, 1, [{ name: "fails-later", args: [] }]),
    notify(3, 1, [{ name: "fails-later", args: [] }]),
  ));
  assert.equal(h.session.armedTimers, 2, "two handler deadlines");
  h.conn.deliverClose();
  await h.session.closed;
  assert.equal(h.session.armedTimers, 0);
  assert.equal(h.timers.pending, 0);
  assert.equal(h.session.lateHandlers, 2);
  h.timers.advance(60_000);
  gate.resolve();
  await settle();
  assert.equal(h.session.lateHandlers, 0);
  assert.deepEqual(h.lines.filter((l) => / (warn|error) /.test(l)), []);
  assert.equal(h.conn.writes.length, 0);
});

test("a closed connection clears the -t delay of its pending ACKs", async () => {
  const h = startSession(new Agent().on("quick", () => {}), { replyDelay: 100 }, Level.INFO);
  h.conn.feed(haproxyHello());
  h.conn.feed(notify(1, 1, [{ name: "quick", args: [] }]));
  assert.equal(h.session.armedTimers, 1);
  h.conn.deliverClose();
  await h.session.closed;
  assert.equal(h.timers.pending, 0);
  h.timers.advance(1000);
  assert.deepEqual(summary(h.conn.frames()), ["HELLO"]);
});

test("Message.ip() gives IPv4-mapped IPv6 addresses as IPv4 when asked", () => {
  let got: (string | undefined)[] = [];
  const agent = new Agent().on("m", (message) => {
    got = [
      message.ip(0),
      message.ip(0, { unmapIPv4: true }),
      message.ip(1, { unmapIPv4: true }),
      message.ip(2, { unmapIPv4: true }),
    ];
  });
  const h = running(agent);
  h.conn.feed(notify(1, 1, [{
    name: "m",
    args: [
      ["", DataType.IPV6, "::ffff:10.0.0.1"],
      ["", DataType.IPV6, "2001:db8::1"],
      ["", DataType.IPV4, "192.0.2.1"],
    ],
  }]));
  assert.deepEqual(got, ["::ffff:10.0.0.1", "10.0.0.1", "2001:db8::1", "192.0.2.1"]);
});

test("Arg.copyTo() copies an address without allocating, and refuses a short target", () => {
  let copied: number[] = [];
  let error: unknown;
  const agent = new Agent().on("m", (message) => {
    const target = new Uint8Array(20);
    const n = message.arg(0)!.copyTo(target, 2);
    copied = [n, ...target.subarray(2, 2 + n)];
    try {
      message.arg(0)!.copyTo(new Uint8Array(3));
    } catch (err) {
      error = err;
    }
  });
  const h = running(agent);
  h.conn.feed(notify(1, 1, [{ name: "m", args: [["", DataType.IPV4, "10.1.2.3"]] }]));
  assert.deepEqual(copied, [4, 10, 1, 2, 3]);
  assert.ok(error instanceof RangeError);
});
