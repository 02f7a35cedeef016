import { test } from "node:test";
import assert from "node:assert/strict";
import { Agent, type Handler } from "../lib/agent/handler.ts";
import type { Message } from "../lib/agent/message.ts";
import type { Reply } from "../lib/agent/reply.ts";
import { ipReputation, seededScore } from "../lib/iprep/mod.ts";
import { Level } from "../lib/agent/log.ts";
import type { SessionConfig } from "../lib/agent/session.ts";
import {
  DataType,
  Flag,
  FrameType,
  Status,
  statusMessage,
  type Value,
  VarScope,
} from "../lib/spop.ts";
import { hex, toHex } from "./_hex.ts";
import {
  type Action,
  type AgentFrame,
  concat,
  type Deferred,
  deferred,
  haproxyDisconnect,
  haproxyHello,
  type Harness,
  type HelloOptions,
  helloWith,
  type Item,
  linesAt,
  messagesPayload,
  type MessageSpec,
  notify,
  PAD,
  rawFrame,
  settle,
  startSession,
  summary,
  unset,
} from "./_session_harness.ts";

// ---------------------------------------------------------------------------
// Helpers

const NO_FIN = 0;
const FIN_ABORT = Flag.FIN | Flag.ABORT;
const U64_MAX = 2n ** 64n - 1n;

/**
 * Checks what every test expects of the agent's output, and returns it as
 * frames: FIN and only FIN on every frame, ids 0/0 on HELLO and DISCONNECT, a
 * DISCONNECT only as the last frame, no write after close.
 */
function wire(h: Harness): AgentFrame[] {
  const frames = h.conn.frames();
  for (const f of frames) {
    assert.equal(toHex(f.bytes.subarray(5, 9)), "00 00 00 01", "flags are exactly FIN");
    if (f.type !== FrameType.ACK) {
      assert.equal(f.streamId, 0, "stream-id of a HELLO/DISCONNECT");
      assert.equal(f.frameId, 0, "frame-id of a HELLO/DISCONNECT");
    }
  }
  const at = frames.findIndex((f) => f.type === FrameType.AGENT_DISCONNECT);
  assert.ok(at === -1 || at === frames.length - 1, "AGENT-DISCONNECT is the last frame");
  assert.equal(h.conn.writesAfterClose, 0, "no write after close()/destroy()");
  return frames;
}

/** A session past the handshake; the AGENT-HELLO is checked, then taken off the record. */
function running(
  agent: Agent,
  options: Partial<SessionConfig> = {},
  hello: HelloOptions = {},
  level: Level = Level.DEBUG,
): Harness {
  const h = startSession(agent, options, level);
  h.conn.feed(haproxyHello(hello));
  assert.deepEqual(summary(wire(h)), ["HELLO"]);
  assert.equal(h.conn.ended, false);
  h.conn.writes.length = 0;
  h.conn.events.length = 0;
  return h;
}

/**
 * Asserts that the session ended with one AGENT-DISCONNECT carrying `status`
 * as its last frame, then close() (once, last), and that `closed` resolves.
 */
async function assertClosedWith(h: Harness, status: number): Promise<AgentFrame> {
  const frames = wire(h);
  const last = frames.at(-1);
  assert.ok(last?.disconnect, `ends with AGENT-DISCONNECT, got ${summary(frames)}`);
  assert.equal(last.disconnect.status, status);
  assert.equal(h.conn.count("close"), 1);
  assert.equal(h.conn.count("destroy"), 0);
  assert.equal(h.conn.events.at(-1), "close", "close() comes after the last write");
  await h.session.closed;
  return last;
}

/** Asserts the session now ignores input: a NOTIFY fed later gets nothing. */
function assertDeaf(h: Harness): void {
  const writes = h.conn.writes.length;
  h.conn.feed(notify(99, 1, []));
  h.conn.feed(haproxyHello());
  assert.equal(h.conn.writes.length, writes, "nothing written after the session ended");
}

function setVar(scope: VarScope, name: string, type: DataType, value: Value): Action {
  return { action: "set-var", scope, name, type, value };
}

/** The actions of the only ACK in `frames`. */
function onlyAck(frames: readonly AgentFrame[]): AgentFrame {
  assert.equal(frames.length, 1, `one frame, got ${summary(frames)}`);
  const ack = frames[0]!;
  assert.equal(ack.type, FrameType.ACK);
  return ack;
}

/** Gates that async handlers wait on, by key. */
class Gates {
  readonly #gates = new Map<number, Deferred<void>>();
  get(key: number): Deferred<void> {
    let gate = this.#gates.get(key);
    if (gate === undefined) {
      gate = deferred();
      this.#gates.set(key, gate);
    }
    return gate;
  }
  open(key: number): void {
    this.get(key).resolve();
  }
}

/**
 * `work` waits for gate `n`, then sets txn.n and txn.tag from its arguments,
 * read after the await.
 */
function gatedAgent(gates: Gates): Agent {
  return new Agent().on("work", async (message, reply) => {
    const n = Number(message.int("n"));
    await gates.get(n).promise;
    reply.setVar("txn", "n", message.int("n")!);
    reply.setVar("txn", "tag", message.string("tag")!);
  });
}

function work(streamId: number, n: number, frameId = 1): Uint8Array {
  return notify(streamId, frameId, [{
    name: "work",
    args: [["n", DataType.INT64, n], ["tag", DataType.STRING, `t${n}`]],
  }]);
}

function workActions(n: number): Action[] {
  return [
    setVar(VarScope.TXN, "n", DataType.INT64, n),
    setVar(VarScope.TXN, "tag", DataType.STRING, `t${n}`),
  ];
}

/** A deterministic shuffle (mulberry32). */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  let s = seed >>> 0;
  const rand = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** A NOTIFY 1/1 whose LENGTH is exactly `length` (one BINARY argument). */
function notifyOfLength(length: number): Uint8Array {
  for (let k = 0; k < length; k++) {
    const frame = notify(1, 1, [{ name: "x", args: [["", DataType.BINARY, new Uint8Array(k)]] }]);
    if (frame.length - 4 === length) return frame;
  }
  throw new Error(`No NOTIFY of LENGTH ${length}`);
}

// ---------------------------------------------------------------------------
// The main scenario, fed in every chunking

/** check-client-ip → sess.ip_score = last address byte; echo → txn.echo = arg "s". */
function demoAgent(): Agent {
  return new Agent()
    .on("check-client-ip", (message, reply) => {
      const bytes = message.arg(0)?.bytes();
      if (bytes === undefined || bytes.length === 0) return;
      reply.setVar("sess", "ip_score", bytes[bytes.length - 1]! % 101, DataType.UINT32);
    })
    .on("echo", (message, reply) => {
      reply.setVar("txn", "echo", message.string("s") ?? null);
    });
}

const SCENARIO: readonly Uint8Array[] = [
  haproxyHello(),
  notify(1, 1, [{ name: "check-client-ip", args: [["", DataType.IPV4, "192.168.1.10"]] }]),
  notify(0, 1, [{ name: "echo", args: [["s", DataType.STRING, "hello"]] }]),
  rawFrame(42, hex("01 02 03"), { streamId: 5, frameId: 5 }),
  notify(300, 1, [{ name: "nope" }, { name: "echo", args: [["s", DataType.STRING, "x"]] }]),
  notify(3, 1, []),
  notify(U64_MAX, U64_MAX, [{
    name: "check-client-ip",
    args: [["ip", DataType.IPV6, "2001:db8::1"]],
  }]),
  haproxyDisconnect(0),
];

const SCENARIO_STREAM = concat(...SCENARIO);

function checkScenario(frames: readonly AgentFrame[]): void {
  assert.deepEqual(summary(frames), [
    "HELLO",
    "ACK 1/1",
    "ACK 0/1",
    "ACK 300/1",
    "ACK 3/1",
    `ACK ${U64_MAX}/${U64_MAX}`,
    "DISCONNECT 0",
  ]);
  assert.deepEqual(frames.slice(1, 6).map((f) => f.actions), [
    [setVar(VarScope.SESS, "ip_score", DataType.UINT32, 10)],
    [setVar(VarScope.TXN, "echo", DataType.STRING, "hello")],
    [setVar(VarScope.TXN, "echo", DataType.STRING, "x")],
    [PAD],
    [setVar(VarScope.SESS, "ip_score", DataType.UINT32, 1)],
  ]);
}

type Feeding = "whole" | "bytewise" | "concatenated";

function runScenario(how: Feeding, level: Level = Level.DEBUG): Harness {
  const h = startSession(demoAgent(), {}, level);
  if (how === "concatenated") h.conn.feed(SCENARIO_STREAM);
  else if (how === "bytewise") h.conn.feedBytewise(SCENARIO_STREAM);
  else for (const frame of SCENARIO) h.conn.feed(frame);
  return h;
}

test("Session gives identical output fed whole, byte by byte and concatenated", async () => {
  const outputs = new Map<string, string>();
  for (const level of [Level.DEBUG, Level.INFO]) {
    for (const how of ["whole", "bytewise", "concatenated"] as const) {
      const h = runScenario(how, level);
      const frames = wire(h);
      checkScenario(frames);
      // One write per read that completed frames: the concatenated read writes once.
      assert.equal(h.conn.writes.length, how === "concatenated" ? 1 : 7, how);
      assert.equal(h.conn.count("close"), 1);
      await h.session.closed;
      outputs.set(`${how} ${level}`, toHex(h.conn.output()));
    }
  }
  assert.equal(new Set(outputs.values()).size, 1, "the same bytes whatever the chunking");
});

test("Session gives identical output split at every offset", () => {
  const reference = toHex(runScenario("concatenated").conn.output());
  for (let at = 1; at < SCENARIO_STREAM.length; at++) {
    const h = startSession(demoAgent(), {}, Level.INFO);
    h.conn.feedSplit(SCENARIO_STREAM, at);
    assert.equal(toHex(h.conn.output()), reference, `split at ${at}`);
    assert.ok(h.conn.writes.length <= 2, `at most one write per read (split at ${at})`);
    wire(h);
  }
});

// ---------------------------------------------------------------------------
// HELLO

test("Session answers the §12.1 HAPROXY-HELLO with the §12.1 AGENT-HELLO bytes", () => {
  const h = startSession(new Agent());
  h.conn.feed(hex(`
    00 00 00 7b 01 00 00 00 01 00 00 12 73 75 70 70
    6f 72 74 65 64 2d 76 65 72 73 69 6f 6e 73 08 03
    32 2e 30 0e 6d 61 78 2d 66 72 61 6d 65 2d 73 69
    7a 65 03 fc f0 06 0c 63 61 70 61 62 69 6c 69 74
    69 65 73 08 0a 70 69 70 65 6c 69 6e 69 6e 67 09
    65 6e 67 69 6e 65 2d 69 64 08 24 33 66 32 65 34
    64 35 63 2d 36 62 37 61 2d 34 39 38 30 2d 38 62
    31 63 2d 32 64 33 65 34 66 35 30 36 31 37 32`));
  assert.equal(h.conn.writes.length, 1);
  assert.equal(
    toHex(h.conn.writes[0]!),
    toHex(hex(`
      00 00 00 40 65 00 00 00 01 00 00 07 76 65 72 73
      69 6f 6e 08 03 32 2e 30 0e 6d 61 78 2d 66 72 61
      6d 65 2d 73 69 7a 65 03 fc f0 06 0c 63 61 70 61
      62 69 6c 69 74 69 65 73 08 0a 70 69 70 65 6c 69
      6e 69 6e 67`)),
  );
  assert.deepEqual(h.conn.events, ["write"]);
  assert.equal(h.timers.pending, 0, "the hello timer is cancelled");
});

test("Session answers max-frame-size = min(HAProxy's, ours)", () => {
  const cases: [haproxy: number, ours: number, expected: number][] = [
    [16380, 16384, 16380],
    [65536, 16384, 16384],
    [256, 16384, 256],
    [16380, 1024, 1024],
    [1024, 1024, 1024],
    [2 ** 32 - 1, 16384, 16384],
  ];
  for (const [haproxy, ours, expected] of cases) {
    const h = startSession(new Agent(), { maxFrameSize: ours });
    h.conn.feed(haproxyHello({ maxFrameSize: haproxy }));
    const frames = wire(h);
    assert.deepEqual(summary(frames), ["HELLO"]);
    assert.deepEqual(frames[0]!.hello, {
      version: "2.0",
      maxFrameSize: expected,
      capabilities: "pipelining",
    }, `HAProxy ${haproxy}, ours ${ours}`);
  }
});

test("Session refuses a HAProxy max-frame-size below 256 with status 9", async () => {
  const h = startSession(new Agent());
  h.conn.feed(haproxyHello({ maxFrameSize: 255 }));
  await assertClosedWith(h, Status.BAD_FRAME_SIZE);
  assert.equal(wire(h).length, 1, "no AGENT-HELLO before the DISCONNECT");
  assertDeaf(h);
});

test("Session announces only the capabilities both sides use", () => {
  const cases: [offered: string, options: Partial<SessionConfig>, expected: string][] = [
    ["pipelining", {}, "pipelining"],
    ["pipelining,async", {}, "pipelining"],
    ["pipelining,async", { async: true }, "pipelining,async"],
    ["async", { async: true }, "async"],
    ["pipelining", { async: true }, "pipelining"],
    ["pipelining,async", { pipelining: false }, ""],
    ["pipelining,async", { pipelining: false, async: true }, "async"],
    ["", { pipelining: true, async: true }, ""],
    ["", { fragmentation: true }, "fragmentation"],
    ["pipelining", { fragmentation: true }, "pipelining,fragmentation"],
    [" pipelining , async ", { async: true }, "pipelining,async"],
    ["pipelining-v2,asyncx,PIPELINING", { async: true }, ""],
    ["fragmentation", {}, ""],
    [
      "pipelining,async,fragmentation",
      { async: true, fragmentation: true },
      "pipelining,async,fragmentation",
    ],
  ];
  for (const [offered, options, expected] of cases) {
    const h = startSession(new Agent(), options);
    h.conn.feed(haproxyHello({ capabilities: offered }));
    const frames = wire(h);
    assert.deepEqual(summary(frames), ["HELLO"]);
    assert.equal(
      frames[0]!.hello!.capabilities,
      expected,
      `offered "${offered}", options ${JSON.stringify(options)}`,
    );
  }
});

test("Session accepts a HELLO with empty capabilities and no engine-id", () => {
  const h = running(demoAgent(), {}, { capabilities: "", engineId: null });
  h.conn.feed(notify(1, 1, [{ name: "echo", args: [["s", DataType.STRING, "ok"]] }]));
  const ack = onlyAck(wire(h));
  assert.deepEqual(ack.actions, [setVar(VarScope.TXN, "echo", DataType.STRING, "ok")]);
  assert.equal(h.conn.ended, false);
});

test("Session accepts supported-versions listing any 2.x version", () => {
  for (const versions of ["2.0", "1.0, 2.5", " 2.0 ", "3.0,2.1", "2.0,2.0"]) {
    const h = startSession(new Agent());
    h.conn.feed(haproxyHello({ supportedVersions: versions }));
    const frames = wire(h);
    assert.deepEqual(summary(frames), ["HELLO"], versions);
    assert.equal(frames[0]!.hello!.version, "2.0", versions);
  }
});

const VERSIONS: Item = ["supported-versions", DataType.STRING, "2.0"];
const SIZE: Item = ["max-frame-size", DataType.UINT32, 16380];
const CAPS: Item = ["capabilities", DataType.STRING, "pipelining"];

test("Session refuses a bad first frame with AGENT-DISCONNECT, then closes", async () => {
  const cases: [name: string, bytes: Uint8Array, status: number][] = [
    ["no 2.x version", haproxyHello({ supportedVersions: "1.0,3.0" }), Status.BAD_VERSION],
    ["an unparsable version", haproxyHello({ supportedVersions: "2.x" }), Status.BAD_VERSION],
    ["an empty version list", haproxyHello({ supportedVersions: "" }), Status.BAD_VERSION],
    ["no supported-versions", helloWith([SIZE, CAPS]), Status.NO_VERSION],
    ["no max-frame-size", helloWith([VERSIONS, CAPS]), Status.NO_FRAME_SIZE],
    ["no capabilities", helloWith([VERSIONS, SIZE]), Status.NO_CAPABILITIES],
    ["a NOTIFY first", notify(1, 1, []), Status.INVALID_FRAME],
    ["an UNSET first", rawFrame(FrameType.UNSET, new Uint8Array(0)), Status.INVALID_FRAME],
    ["a DISCONNECT first", haproxyDisconnect(0), Status.INVALID_FRAME],
    ["an unknown type first", rawFrame(42, new Uint8Array(0)), Status.INVALID_FRAME],
    [
      "an AGENT-HELLO first",
      rawFrame(FrameType.AGENT_HELLO, new Uint8Array(0)),
      Status.INVALID_FRAME,
    ],
    ["stream-id 1", helloWith([VERSIONS, SIZE, CAPS], { streamId: 1 }), Status.INVALID_FRAME],
    ["frame-id 1", helloWith([VERSIONS, SIZE, CAPS], { frameId: 1 }), Status.INVALID_FRAME],
    [
      "no FIN",
      helloWith([VERSIONS, SIZE, CAPS], { flags: NO_FIN }),
      Status.FRAGMENTATION_NOT_SUPPORTED,
    ],
    [
      "a string max-frame-size",
      helloWith([VERSIONS, ["max-frame-size", DataType.STRING, "16380"], CAPS]),
      Status.INVALID_FRAME,
    ],
    [
      "a string healthcheck",
      helloWith([VERSIONS, SIZE, CAPS, ["healthcheck", DataType.STRING, "true"]]),
      Status.INVALID_FRAME,
    ],
    [
      "a reserved data type",
      rawFrame(
        FrameType.HAPROXY_HELLO,
        concat(helloWith([VERSIONS, SIZE, CAPS]).subarray(11), hex("01 78 0a")),
      ),
      Status.INVALID_FRAME,
    ],
    [
      "an item that runs past the frame",
      hex("00 00 00 0c 01 00 00 00 01 00 00 07 76 65 72 73"),
      Status.INVALID_FRAME,
    ],
    ["an empty item name", hex("00 00 00 09 01 00 00 00 01 00 00 00 00"), Status.INVALID_FRAME],
  ];
  for (const [name, bytes, status] of cases) {
    const h = startSession(new Agent());
    h.conn.feed(bytes);
    const last = await assertClosedWith(h, status);
    assert.equal(wire(h).length, 1, `${name}: only the AGENT-DISCONNECT`);
    assert.equal(last.disconnect!.message.length > 0, true, name);
    assert.equal(h.timers.pending, 0, `${name}: the hello timer is cancelled`);
    assert.equal(linesAt(h.lines, "warn").length, 1, `${name}: one warning`);
    assertDeaf(h);
  }
});

test("Session refuses a LENGTH above its max-frame-size before HELLO from the prefix alone", async () => {
  const h = startSession(new Agent(), { maxFrameSize: 1024 });
  h.conn.feed(hex("00 00 04 01"));
  await assertClosedWith(h, Status.FRAME_TOO_BIG);
  assertDeaf(h);
});

test("Session accepts a HELLO of exactly its max-frame-size", () => {
  const hello = haproxyHello({ engineId: "x".repeat(300) });
  const h = startSession(new Agent(), { maxFrameSize: hello.length - 4 });
  h.conn.feed(hello);
  assert.deepEqual(summary(wire(h)), ["HELLO"]);
  const big = haproxyHello({ engineId: "x".repeat(301) });
  const h2 = startSession(new Agent(), { maxFrameSize: hello.length - 4 });
  h2.conn.feed(big);
  assert.deepEqual(summary(wire(h2)), [`DISCONNECT ${Status.FRAME_TOO_BIG}`]);
});

test("Session refuses a LENGTH below 7 with status 4", async () => {
  for (const length of [0, 6]) {
    const h = startSession(new Agent());
    h.conn.feed(concat(hex("00 00 00"), new Uint8Array([length]), new Uint8Array(length)));
    await assertClosedWith(h, Status.INVALID_FRAME);
  }
});

test("Session answers a health-check HELLO and closes", async () => {
  const h = startSession(new Agent());
  // The exact 3.1+ tcp-check request (§10).
  h.conn.feed(hex(`
    00 00 00 4e 01 00 00 00 01 00 00 12 73 75 70 70
    6f 72 74 65 64 2d 76 65 72 73 69 6f 6e 73 08 03
    32 2e 30 0e 6d 61 78 2d 66 72 61 6d 65 2d 73 69
    7a 65 03 fc f0 06 0c 63 61 70 61 62 69 6c 69 74
    69 65 73 08 00 0b 68 65 61 6c 74 68 63 68 65 63
    6b 11`));
  assert.equal(
    toHex(h.conn.output()),
    toHex(hex(`
      00 00 00 36 65 00 00 00 01 00 00 07 76 65 72 73 69 6f 6e 08 03 32 2e 30
      0e 6d 61 78 2d 66 72 61 6d 65 2d 73 69 7a 65 03 fc f0 06
      0c 63 61 70 61 62 69 6c 69 74 69 65 73 08 00`)),
  );
  assert.deepEqual(h.conn.events, ["write", "close"], "AGENT-HELLO, then close, no DISCONNECT");
  assert.equal(h.timers.pending, 0);
  await h.session.closed;
  assertDeaf(h);
});

test("Session does not announce fragmentation to a health check", () => {
  const h = startSession(new Agent(), { fragmentation: true, async: true });
  h.conn.feed(haproxyHello({ healthcheck: true, capabilities: "" }));
  const frames = wire(h);
  assert.deepEqual(summary(frames), ["HELLO"]);
  assert.equal(frames[0]!.hello!.capabilities, "");
  assert.deepEqual(h.conn.events, ["write", "close"]);
});

test("Session ignores the frames behind a health-check HELLO in the same read", () => {
  const h = startSession(demoAgent());
  h.conn.feed(concat(haproxyHello({ healthcheck: true, capabilities: "" }), notify(1, 1, [])));
  assert.deepEqual(summary(wire(h)), ["HELLO"]);
  assert.deepEqual(h.conn.events, ["write", "close"]);
});

test("Session refuses a second HELLO with status 4", async () => {
  const h = running(new Agent());
  h.conn.feed(haproxyHello());
  await assertClosedWith(h, Status.INVALID_FRAME);
  assert.equal(wire(h).length, 1);
});

test("Session closes with status 2 when no HELLO comes within helloTimeout", async () => {
  const h = startSession(new Agent(), { helloTimeout: 1000 });
  assert.equal(h.timers.pending, 1);
  h.timers.advance(999);
  assert.equal(h.conn.writes.length, 0);
  h.timers.advance(1);
  const last = await assertClosedWith(h, Status.TIMEOUT);
  assert.match(last.disconnect!.message, /1000 ms/);
  assert.equal(wire(h).length, 1);
  assertDeaf(h);
  assert.deepEqual(linesAt(h.lines, "info"), [
    "1970-01-01T00:00:00.000Z info 192.0.2.7:40000: no HAPROXY-HELLO within 1000 ms; closing with status 2",
  ]);
});

test("Session times out a HELLO that arrives only in part", async () => {
  const h = startSession(new Agent(), { helloTimeout: 50 });
  const hello = haproxyHello();
  h.conn.feed(hello.subarray(0, 20));
  h.timers.advance(50);
  await assertClosedWith(h, Status.TIMEOUT);
  h.conn.feed(hello.subarray(20));
  assert.equal(wire(h).length, 1, "the rest of the HELLO is ignored");
});

test("Session cancels the hello timer on a timely HELLO", () => {
  const h = startSession(new Agent(), { helloTimeout: 1000 });
  h.timers.advance(999);
  h.conn.feed(haproxyHello());
  assert.equal(h.timers.pending, 0);
  h.timers.advance(10_000);
  assert.deepEqual(summary(wire(h)), ["HELLO"]);
  assert.equal(h.conn.ended, false);
});

test("Session answers HELLO and the NOTIFYs behind it in one write", () => {
  const h = startSession(demoAgent());
  h.conn.feed(concat(haproxyHello(), notify(1, 1, []), notify(3, 1, [])));
  assert.equal(h.conn.writes.length, 1);
  assert.deepEqual(summary(wire(h)), ["HELLO", "ACK 1/1", "ACK 3/1"]);
});

// ---------------------------------------------------------------------------
// NOTIFY and ACK

test("Session acknowledges each NOTIFY with its stream-id and frame-id", () => {
  const cases: [stream: number | bigint, frame: number | bigint, idHex: string][] = [
    [0, 1, "00 01"], // 2.x: the first stream after start
    [300, 1, "fc 03 01"], // 2.x uniq_id
    [1, 1, "01 01"], // 3.x
    [3, 1, "03 01"],
    [239, 240, "ef f0 00"],
    [2 ** 53 - 1, 7, "ff f0 fe fe fe fe fe 7e 07"],
    [U64_MAX, U64_MAX, "ff f0 fe fe fe fe fe fe fe 0e ff f0 fe fe fe fe fe fe fe 0e"],
  ];
  for (const [stream, frame, idHex] of cases) {
    const h = running(new Agent(), { emptyAcks: true });
    h.conn.feed(notify(stream, frame, []));
    const ack = onlyAck(wire(h));
    assert.equal(ack.streamId, stream);
    assert.equal(ack.frameId, frame);
    assert.equal(toHex(ack.bytes.subarray(9)), idHex, `${stream}/${frame}`);
  }
});

test("Session pads an ACK without actions with unset-var txn _", () => {
  const h = running(new Agent());
  h.conn.feed(notify(1, 1, []));
  assert.equal(toHex(h.conn.output()), "00 00 00 0c 67 00 00 00 01 01 01 02 02 02 01 5f");
  assert.deepEqual(onlyAck(wire(h)).actions, [PAD]);
});

test("Session sends an empty ACK with emptyAcks", () => {
  const h = running(new Agent(), { emptyAcks: true });
  h.conn.feed(notify(1, 1, []));
  h.conn.feed(notify(0, 1, [{ name: "unknown" }]));
  assert.equal(toHex(h.conn.writes[0]!), "00 00 00 07 67 00 00 00 01 01 01");
  assert.equal(toHex(h.conn.writes[1]!), "00 00 00 07 67 00 00 00 01 00 01");
});

test("Session does not pad an ACK that has actions", () => {
  const h = running(demoAgent());
  h.conn.feed(notify(1, 1, [{ name: "echo", args: [["s", DataType.STRING, "a"]] }]));
  assert.deepEqual(onlyAck(wire(h)).actions, [
    setVar(VarScope.TXN, "echo", DataType.STRING, "a"),
  ]);
});

test("Session acknowledges an empty NOTIFY", () => {
  let calls = 0;
  const h = running(new Agent().on("m", () => void calls++));
  h.conn.feed(notify(5, 2, []));
  const ack = onlyAck(wire(h));
  assert.equal(ack.streamId, 5);
  assert.equal(ack.frameId, 2);
  assert.deepEqual(ack.actions, [PAD]);
  assert.equal(calls, 0);
});

test("Session acknowledges unknown messages without actions", () => {
  const h = running(demoAgent());
  h.conn.feed(notify(1, 1, [
    { name: "check-client", args: [["", DataType.IPV4, "10.0.0.1"]] },
    { name: "check-client-ipv6" },
    { name: "ECHO", args: [["s", DataType.STRING, "x"]] },
  ]));
  assert.deepEqual(onlyAck(wire(h)).actions, [PAD]);
  assert.ok(h.lines.some((l) => l.includes('no handler for message "check-client"')));
  assert.equal(linesAt(h.lines, "error").length, 0);
});

test("Session acknowledges messages with unexpected argument types", () => {
  const seen: unknown[] = [];
  const agent = new Agent().on("m", (message, reply) => {
    seen.push(message.ip(0), message.int("n"), message.string(1), message.isNull(2));
    if (message.ip(0) !== undefined) reply.setVar("txn", "ip", message.ip(0)!);
  });
  const h = running(agent);
  h.conn.feed(notify(1, 1, [{
    name: "m",
    args: [
      ["", DataType.STRING, "192.168.1.1"],
      ["n", DataType.BINARY, hex("01")],
      ["", DataType.NULL, null],
    ],
  }]));
  assert.deepEqual(onlyAck(wire(h)).actions, [PAD]);
  assert.deepEqual(seen, [undefined, undefined, undefined, true]);
});

test("Session acknowledges a NOTIFY whose handler throws and logs the error", () => {
  const agent = demoAgent()
    .on("boom", () => {
      throw new Error("kaput");
    })
    .on("boom-string", () => {
      throw "plain string";
    })
    .on("bad-name", (_message, reply) => {
      reply.setVar("txn", "no spaces allowed", 1);
    });
  const h = running(agent, {}, {}, Level.INFO);
  h.conn.feed(notify(1, 1, [
    { name: "boom" },
    { name: "echo", args: [["s", DataType.STRING, "after"]] },
    { name: "boom-string" },
    { name: "bad-name" },
  ]));
  assert.deepEqual(onlyAck(wire(h)).actions, [
    setVar(VarScope.TXN, "echo", DataType.STRING, "after"),
  ]);
  const errors = linesAt(h.lines, "error");
  assert.equal(errors.length, 3);
  assert.match(errors[0]!, /handler for message "boom" failed: Error: kaput/);
  assert.match(errors[1]!, /handler for message "boom-string" failed: plain string/);
  assert.match(errors[2]!, /handler for message "bad-name" failed: TypeError/);
  assert.equal(h.conn.ended, false);
  // The connection goes on.
  h.conn.feed(notify(3, 1, []));
  assert.deepEqual(summary(wire(h)), ["ACK 1/1", "ACK 3/1"]);
});

test("Session acknowledges a NOTIFY whose handler rejects and logs the error", async () => {
  const agent = demoAgent().on("reject", async (_message, reply) => {
    reply.setVar("txn", "before", true);
    await Promise.resolve();
    throw new Error("async kaput");
  });
  const h = running(agent, {}, {}, Level.INFO);
  h.conn.feed(notify(1, 1, [
    { name: "reject" },
    { name: "echo", args: [["s", DataType.STRING, "sync"]] },
  ]));
  assert.equal(h.conn.writes.length, 0, "the ACK waits for the async handler");
  assert.equal(h.session.inFlight, 1);
  await settle();
  const ack = onlyAck(wire(h));
  assert.deepEqual(ack.actions, [
    setVar(VarScope.TXN, "before", DataType.BOOL, true),
    setVar(VarScope.TXN, "echo", DataType.STRING, "sync"),
  ]);
  const errors = linesAt(h.lines, "error");
  assert.equal(errors.length, 1);
  assert.match(errors[0]!, /handler for message "reject" failed: Error: async kaput/);
  assert.equal(h.session.inFlight, 0);
});

test("Session runs every message of a NOTIFY in order, handled or not", () => {
  const order: string[] = [];
  const agent = new Agent()
    .on("a", (message, reply) => {
      order.push(message.name);
      reply.setVar("txn", "a", 1);
    })
    .on("b", (message, reply) => {
      order.push(message.name);
      reply.setVar("req", "b", 2).unsetVar("res", "c");
    });
  const h = running(agent);
  h.conn.feed(notify(7, 3, [
    { name: "b" },
    { name: "zzz", args: [["", DataType.INT32, 5]] },
    { name: "a" },
    { name: "b" },
  ]));
  assert.deepEqual(order, ["b", "a", "b"]);
  assert.deepEqual(onlyAck(wire(h)).actions, [
    setVar(VarScope.REQ, "b", DataType.INT64, 2),
    { action: "unset-var", scope: VarScope.RES, name: "c" },
    setVar(VarScope.TXN, "a", DataType.INT64, 1),
    setVar(VarScope.REQ, "b", DataType.INT64, 2),
    { action: "unset-var", scope: VarScope.RES, name: "c" },
  ]);
});

test("Session waits for every async handler of a NOTIFY before its ACK", async () => {
  const gates = new Gates();
  const agent = new Agent()
    .on("sync", (_message, reply) => void reply.setVar("txn", "sync", 0))
    .on("async", async (message, reply) => {
      const n = Number(message.int(0));
      await gates.get(n).promise;
      reply.setVar("txn", `async${n}`, n);
    });
  const h = running(agent);
  h.conn.feed(notify(1, 1, [
    { name: "async", args: [["", DataType.INT64, 1]] },
    { name: "sync" },
    { name: "async", args: [["", DataType.INT64, 2]] },
  ]));
  gates.open(2);
  await settle();
  assert.equal(h.conn.writes.length, 0);
  gates.open(1);
  await settle();
  assert.deepEqual(onlyAck(wire(h)).actions, [
    setVar(VarScope.TXN, "sync", DataType.INT64, 0),
    setVar(VarScope.TXN, "async2", DataType.INT64, 2),
    setVar(VarScope.TXN, "async1", DataType.INT64, 1),
  ]);
});

test("Session acknowledges a NOTIFY whose handler returns null", () => {
  // A handler typed `void` may still return anything at run time.
  const handler = ((_message: Message, reply: Reply) => {
    reply.setVar("txn", "x", 1);
    return null;
  }) as unknown as Handler;
  const h = running(new Agent().on("m", handler));
  h.conn.feed(notify(1, 1, [{ name: "m" }]));
  assert.deepEqual(onlyAck(wire(h)).actions, [setVar(VarScope.TXN, "x", DataType.INT64, 1)]);
  assert.equal(h.conn.ended, false);
});

test("Session acknowledges once when a handler's thenable settles twice", async () => {
  const gate = deferred();
  const agent = new Agent()
    .on("twice", (_message, reply) => {
      reply.setVar("txn", "x", 1);
      return {
        then(onFulfilled?: ((value: void) => unknown) | null) {
          onFulfilled?.();
          onFulfilled?.();
          return this;
        },
      } as unknown as PromiseLike<void>;
    })
    .on("late", async (message, reply) => {
      await gate.promise;
      reply.setVar("txn", "s", message.string(0)!);
    });
  const h = running(agent);
  h.conn.feed(concat(notify(1, 1, [{ name: "twice" }]), notify(3, 1, [{ name: "twice" }])));
  await settle();
  // Two handlers in flight at once must not share pooled state.
  h.conn.feed(notify(5, 1, [{ name: "late", args: [["", DataType.STRING, "five"]] }]));
  h.conn.feed(notify(7, 1, [{ name: "late", args: [["", DataType.STRING, "seven"]] }]));
  gate.resolve();
  await settle();
  const frames = wire(h);
  assert.deepEqual(summary(frames), ["ACK 1/1", "ACK 3/1", "ACK 5/1", "ACK 7/1"]);
  assert.deepEqual(frames[2]!.actions, [setVar(VarScope.TXN, "s", DataType.STRING, "five")]);
  assert.deepEqual(frames[3]!.actions, [setVar(VarScope.TXN, "s", DataType.STRING, "seven")]);
  assert.equal(h.session.inFlight, 0);
});

test("Session treats a thenable whose then() throws as a failed handler", async () => {
  const agent = new Agent().on("m", async () => {
    await ({
      then() {
        throw new Error("bad thenable");
      },
    } as unknown as PromiseLike<void>);
  });
  const h = running(agent, {}, {}, Level.INFO);
  h.conn.feed(notify(1, 1, [{ name: "m" }]));
  await settle();
  assert.deepEqual(summary(wire(h)), ["ACK 1/1"]);
  assert.equal(h.conn.ended, false);
  assert.match(linesAt(h.lines, "error")[0] ?? "", /bad thenable/);
});

test("Session drops the actions of an ACK above max-frame-size and logs an error", () => {
  const agent = new Agent().on("big", (message, reply) => {
    reply.setVar("txn", "big_", "x".repeat(Number(message.int(0))));
  });
  for (const emptyAcks of [false, true]) {
    const h = running(agent, { emptyAcks }, { maxFrameSize: 256 }, Level.INFO);
    // LENGTH 7 + set-var(3 + 5 + 1 + 1 + n) is 256 for n = 239, 258 for n = 240.
    h.conn.feed(notify(1, 1, [{ name: "big", args: [["", DataType.INT64, 239]] }]));
    h.conn.feed(notify(3, 1, [{ name: "big", args: [["", DataType.INT64, 240]] }]));
    const frames = wire(h);
    assert.deepEqual(summary(frames), ["ACK 1/1", "ACK 3/1"]);
    assert.equal(frames[0]!.length, 256);
    assert.deepEqual(frames[1]!.actions, emptyAcks ? [] : [PAD]);
    const errors = linesAt(h.lines, "error");
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /ACK for 3\/1 dropped its actions/);
    h.conn.feed(notify(5, 1, []));
    assert.equal(wire(h).length, 3, "the connection goes on");
  }
});

// ---------------------------------------------------------------------------
// Async handlers and pipelining

test("Session sends pipelined ACKs in completion order (reverse)", async () => {
  const gates = new Gates();
  const h = running(gatedAgent(gates));
  const count = 24;
  h.conn.feed(concat(...Array.from({ length: count }, (_, i) => work(2 * i + 1, i))));
  assert.equal(h.session.inFlight, count);
  assert.equal(h.conn.writes.length, 0);
  for (let i = count - 1; i >= 0; i--) {
    gates.open(i);
    await settle();
    assert.equal(h.conn.writes.length, count - i, `one write after gate ${i}`);
  }
  const frames = wire(h);
  assert.deepEqual(
    summary(frames),
    Array.from({ length: count }, (_, k) => `ACK ${2 * (count - 1 - k) + 1}/1`),
  );
  frames.forEach((f, k) => assert.deepEqual(f.actions, workActions(count - 1 - k)));
  assert.equal(h.session.inFlight, 0);
});

test("Session sends pipelined ACKs in completion order (shuffled)", async () => {
  for (const seed of [1, 2, 3]) {
    const gates = new Gates();
    const h = running(gatedAgent(gates));
    const count = 30;
    for (let i = 0; i < count; i++) h.conn.feed(work(2 * i + 1, i));
    const order = shuffled(Array.from({ length: count }, (_, i) => i), seed);
    for (const i of order) {
      gates.open(i);
      await settle();
    }
    const frames = wire(h);
    assert.deepEqual(summary(frames), order.map((i) => `ACK ${2 * i + 1}/1`));
    frames.forEach((f, k) => assert.deepEqual(f.actions, workActions(order[k]!)));
    assert.equal(new Set(summary(frames)).size, count, "each exactly once");
  }
});

test("Session coalesces ACKs completed in one tick into one write", async () => {
  const gates = new Gates();
  const h = running(gatedAgent(gates));
  for (let i = 0; i < 8; i++) h.conn.feed(work(2 * i + 1, i));
  const order = [5, 0, 7, 2, 6];
  for (const i of order) gates.open(i);
  await settle();
  assert.equal(h.conn.writes.length, 1);
  assert.deepEqual(summary(wire(h)), order.map((i) => `ACK ${2 * i + 1}/1`));
  assert.equal(h.session.inFlight, 3);
});

test("Session gives the same async output whatever the chunking", async () => {
  const outputs = new Set<string>();
  for (const how of ["whole", "bytewise", "concatenated"] as const) {
    const gates = new Gates();
    const h = startSession(gatedAgent(gates));
    const frames = [haproxyHello(), ...Array.from({ length: 12 }, (_, i) => work(2 * i + 1, i))];
    if (how === "concatenated") h.conn.feed(concat(...frames));
    else if (how === "bytewise") h.conn.feedBytewise(concat(...frames));
    else for (const f of frames) h.conn.feed(f);
    for (const i of shuffled(Array.from({ length: 12 }, (_, i) => i), 9)) {
      gates.open(i);
      await settle();
    }
    assert.equal(wire(h).length, 13, how);
    outputs.add(toHex(h.conn.output()));
  }
  assert.equal(outputs.size, 1);
});

test("Session lets async handlers read arguments after the read buffer is reused", async () => {
  const gate = deferred();
  const agent = new Agent().on("late", async (message, reply) => {
    await gate.promise;
    reply
      .setVar("txn", "name", message.name)
      .setVar("txn", "s", message.string("s")!)
      .setVar("txn", "ip", message.ip("ip")!)
      .setVar("txn", "bin", message.binary(2)!)
      .setVar("txn", "n", message.int("n")!)
      .setVar("txn", "raw", message.arg(0)!.bytes().slice())
      .setVar("txn", "argname", message.arg(1)!.name);
  });
  const h = running(agent);
  const first = notify(7, 1, [{
    name: "late",
    args: [
      ["s", DataType.STRING, "original"],
      ["ip", DataType.IPV4, "10.1.2.3"],
      ["", DataType.BINARY, hex("de ad be ef")],
      ["n", DataType.INT64, -5],
    ],
  }]);
  const second = notify(9, 1, [
    { name: "other", args: [["x", DataType.STRING, "zzzzzzzzzzzzzzzzzzzz"]] },
    {
      name: "late",
      args: [
        ["s", DataType.STRING, "second!!"],
        ["ip", DataType.IPV4, "192.0.2.99"],
        ["", DataType.BINARY, hex("01 02")],
        ["n", DataType.INT64, 77],
      ],
    },
  ]);
  // The test owns the read buffer, and reuses it as an adapter does.
  const buf = new Uint8Array(256);
  buf.set(first);
  h.session.onData(buf, first.length);
  buf.fill(0x41);
  buf.set(second);
  h.session.onData(buf, second.length);
  buf.fill(0x42);
  gate.resolve();
  await settle();
  const frames = wire(h);
  assert.deepEqual(summary(frames), ["ACK 7/1", "ACK 9/1"]);
  const expect = (s: string, ip: string, bin: Uint8Array, n: number) => [
    setVar(VarScope.TXN, "name", DataType.STRING, "late"),
    setVar(VarScope.TXN, "s", DataType.STRING, s),
    setVar(VarScope.TXN, "ip", DataType.STRING, ip),
    setVar(VarScope.TXN, "bin", DataType.BINARY, bin),
    setVar(VarScope.TXN, "n", DataType.INT64, n),
    setVar(VarScope.TXN, "raw", DataType.BINARY, new TextEncoder().encode(s)),
    setVar(VarScope.TXN, "argname", DataType.STRING, "ip"),
  ];
  assert.deepEqual(frames[0]!.actions, expect("original", "10.1.2.3", hex("de ad be ef"), -5));
  assert.deepEqual(frames[1]!.actions, expect("second!!", "192.0.2.99", hex("01 02"), 77));
});

// ---------------------------------------------------------------------------
// Coalescing

test("Session writes the ACKs of one read in exactly one write", () => {
  const h = running(demoAgent());
  const frames = Array.from(
    { length: 10 },
    (_, i) => notify(2 * i + 1, 1, [{ name: "echo", args: [["s", DataType.STRING, `v${i}`]] }]),
  );
  h.conn.feed(concat(...frames));
  assert.equal(h.conn.writes.length, 1);
  assert.deepEqual(h.conn.events, ["write"]);
  const acks = wire(h);
  assert.equal(acks.length, 10);
  acks.forEach((f, i) =>
    assert.deepEqual(f.actions, [setVar(VarScope.TXN, "echo", DataType.STRING, `v${i}`)])
  );
});

test("Session writes once per read when frames arrive byte by byte", () => {
  const h = running(demoAgent());
  const frames = [notify(1, 1, []), notify(3, 1, []), notify(5, 1, [])];
  h.conn.feedBytewise(concat(...frames));
  assert.equal(h.conn.reads, 1 + frames.reduce((n, f) => n + f.length, 0));
  assert.equal(h.conn.writes.length, 3);
  for (const write of h.conn.writes) {
    assert.equal(write.length, 16, "each write holds exactly one padded ACK");
  }
  assert.deepEqual(summary(wire(h)), ["ACK 1/1", "ACK 3/1", "ACK 5/1"]);
});

// ---------------------------------------------------------------------------
// Backpressure

test("Session pauses reading while conn.queued exceeds maxQueuedBytes and resumes on drain", () => {
  const h = running(new Agent(), { maxQueuedBytes: 1000 });
  h.conn.queued = 1000;
  h.conn.feed(notify(1, 1, []));
  assert.deepEqual(h.conn.events, ["write"], "exactly maxQueuedBytes does not pause");
  h.conn.queued = 1001;
  h.conn.feed(notify(3, 1, []));
  assert.deepEqual(h.conn.events, ["write", "write", "pause"]);
  h.conn.feed(notify(5, 1, []));
  assert.deepEqual(h.conn.events, ["write", "write", "pause", "write"], "no second pause");
  h.conn.queued = 0;
  h.session.onDrain();
  assert.deepEqual(h.conn.events.slice(4), ["resume"]);
  h.session.onDrain();
  assert.equal(h.conn.count("resume"), 1, "no resume without a pause");
  assert.equal(wire(h).length, 3);
});

test("Session pauses for output queued by an async ACK", async () => {
  const gates = new Gates();
  const h = running(gatedAgent(gates), { maxQueuedBytes: 10 });
  h.conn.feed(work(1, 0));
  h.conn.queued = 11;
  gates.open(0);
  await settle();
  assert.deepEqual(h.conn.events, ["write", "pause"]);
  h.session.onDrain();
  assert.deepEqual(h.conn.events, ["write", "pause", "resume"]);
});

test("Session ignores onDrain when it did not pause for output", () => {
  const h = running(new Agent());
  h.session.onDrain();
  h.conn.feed(notify(1, 1, []));
  h.session.onDrain();
  assert.deepEqual(h.conn.events, ["write"]);
});

test("Session pauses at maxInFlight and resumes when a handler settles", async () => {
  const gates = new Gates();
  const h = running(gatedAgent(gates), { maxInFlight: 3 });
  h.conn.feed(work(1, 0));
  h.conn.feed(work(3, 1));
  assert.deepEqual(h.conn.events, [], "two in flight: still reading");
  h.conn.feed(work(5, 2));
  assert.deepEqual(h.conn.events, ["pause"]);
  assert.equal(h.session.inFlight, 3);
  gates.open(1);
  await settle();
  assert.deepEqual(h.conn.events, ["pause", "resume", "write"]);
  h.conn.feed(work(7, 3));
  assert.deepEqual(h.conn.events.slice(3), ["pause"]);
  gates.open(0);
  gates.open(2);
  gates.open(3);
  await settle();
  assert.equal(h.conn.count("pause"), 2);
  assert.equal(h.conn.count("resume"), 2);
  assert.equal(h.session.inFlight, 0);
  assert.deepEqual(summary(wire(h)), ["ACK 3/1", "ACK 1/1", "ACK 5/1", "ACK 7/1"]);
});

test("Session stays paused while never-settling handlers fill maxInFlight", async () => {
  const agent = new Agent().on("hang", async () => await new Promise<void>(() => {}));
  const h = running(agent, { maxInFlight: 2 });
  h.conn.feed(concat(notify(1, 1, [{ name: "hang" }]), notify(3, 1, [{ name: "hang" }])));
  await settle();
  assert.deepEqual(h.conn.events, ["pause"]);
  h.session.onDrain();
  assert.deepEqual(h.conn.events, ["pause"], "a drain does not resume past maxInFlight");
  assert.equal(h.session.inFlight, 2);
});

test("Session stays paused on drain while shutting down", async () => {
  const gates = new Gates();
  const h = running(gatedAgent(gates), { maxQueuedBytes: 10 });
  h.conn.queued = 100;
  h.conn.feed(notify(1, 1, []));
  h.conn.feed(work(3, 0));
  assert.deepEqual(h.conn.events, ["write", "pause"]);
  const closed = h.session.shutdown();
  h.conn.queued = 0;
  h.session.onDrain();
  assert.deepEqual(h.conn.events, ["write", "pause"], "no resume while draining");
  gates.open(0);
  await settle();
  await closed;
  assert.deepEqual(summary(wire(h)), ["ACK 1/1", "ACK 3/1", "DISCONNECT 0"]);
});

// ---------------------------------------------------------------------------
// Fragmentation

const FRAG_PAYLOAD = messagesPayload([{
  name: "frag",
  args: [["s", DataType.STRING, "abcdefghij"], ["n", DataType.INT64, 42]],
}]);

function fragmentedNotify(streamId: number, frameId: number): Uint8Array[] {
  return [
    rawFrame(FrameType.NOTIFY, FRAG_PAYLOAD.subarray(0, 5), { streamId, frameId, flags: NO_FIN }),
    unset(streamId, frameId, FRAG_PAYLOAD.subarray(5, 12), NO_FIN),
    unset(streamId, frameId, FRAG_PAYLOAD.subarray(12), Flag.FIN),
  ];
}

function fragAgent(): Agent {
  return new Agent().on("frag", (message, reply) => {
    reply.setVar("txn", "s", message.string("s")!).setVar("txn", "n", message.int("n")!);
  });
}

const FRAG_ACTIONS = [
  setVar(VarScope.TXN, "s", DataType.STRING, "abcdefghij"),
  setVar(VarScope.TXN, "n", DataType.INT64, 42),
];

test("Session reassembles a fragmented NOTIFY into one ACK", () => {
  const outputs = new Set<string>();
  for (const how of ["whole", "bytewise", "concatenated"] as const) {
    const h = running(fragAgent(), { fragmentation: true });
    const frames = [...fragmentedNotify(5, 2), ...fragmentedNotify(0, 3), notify(7, 1, [])];
    if (how === "concatenated") h.conn.feed(concat(...frames));
    else if (how === "bytewise") h.conn.feedBytewise(concat(...frames));
    else for (const f of frames) h.conn.feed(f);
    const acks = wire(h);
    assert.deepEqual(summary(acks), ["ACK 5/2", "ACK 0/3", "ACK 7/1"], how);
    assert.deepEqual(acks[0]!.actions, FRAG_ACTIONS);
    assert.deepEqual(acks[1]!.actions, FRAG_ACTIONS);
    assert.deepEqual(acks[2]!.actions, [PAD]);
    outputs.add(toHex(h.conn.output()));
  }
  assert.equal(outputs.size, 1);
});

test("Session answers a NOTIFY sent in one fragment with FIN", () => {
  const h = running(fragAgent(), { fragmentation: true });
  h.conn.feed(rawFrame(FrameType.NOTIFY, FRAG_PAYLOAD, { streamId: 1, frameId: 1 }));
  assert.deepEqual(onlyAck(wire(h)).actions, FRAG_ACTIONS);
});

test("Session lets async handlers of a reassembled NOTIFY read arguments after the next reassembly", async () => {
  const gate = deferred();
  const agent = new Agent().on("frag", async (message, reply) => {
    await gate.promise;
    reply.setVar("txn", "s", message.string("s")!).setVar("txn", "n", message.int("n")!);
  });
  const h = running(agent, { fragmentation: true });
  const other = messagesPayload([{
    name: "frag",
    args: [["s", DataType.STRING, "ZYXWVUTSRQ"], ["n", DataType.INT64, 7]],
  }]);
  h.conn.feed(concat(
    ...fragmentedNotify(5, 2),
    rawFrame(FrameType.NOTIFY, other.subarray(0, 9), { streamId: 7, frameId: 1, flags: NO_FIN }),
    unset(7, 1, other.subarray(9)),
  ));
  gate.resolve();
  await settle();
  const acks = wire(h);
  assert.deepEqual(summary(acks), ["ACK 5/2", "ACK 7/1"]);
  assert.deepEqual(acks[0]!.actions, FRAG_ACTIONS);
  assert.deepEqual(acks[1]!.actions, [
    setVar(VarScope.TXN, "s", DataType.STRING, "ZYXWVUTSRQ"),
    setVar(VarScope.TXN, "n", DataType.INT64, 7),
  ]);
});

test("Session drops an aborted fragmented NOTIFY without ACK", () => {
  let calls = 0;
  const agent = new Agent().on("frag", () => void calls++);
  const h = running(agent, { fragmentation: true });
  const [first, second] = fragmentedNotify(5, 2);
  h.conn.feed(concat(first!, unset(5, 2, new Uint8Array(0), FIN_ABORT)));
  assert.equal(h.conn.writes.length, 0);
  // Aborted after two fragments; then the connection goes on.
  h.conn.feed(concat(first!, second!, unset(5, 2, new Uint8Array(0), FIN_ABORT)));
  assert.equal(h.conn.writes.length, 0);
  assert.equal(calls, 0);
  h.conn.feed(concat(...fragmentedNotify(5, 3)));
  assert.deepEqual(summary(wire(h)), ["ACK 5/3"]);
  assert.equal(calls, 1);
  assert.equal(h.session.inFlight, 0);
  assert.equal(h.conn.ended, false);
});

test("Session closes with status 11 on interlaced fragments", async () => {
  const [first] = fragmentedNotify(5, 2);
  const cases: [string, Uint8Array][] = [
    ["UNSET of another stream", unset(7, 2, FRAG_PAYLOAD.subarray(5), NO_FIN)],
    ["UNSET of another frame", unset(5, 3, FRAG_PAYLOAD.subarray(5))],
    ["a new fragmented NOTIFY", rawFrame(FrameType.NOTIFY, FRAG_PAYLOAD, { flags: NO_FIN })],
    ["a whole NOTIFY", notify(7, 1, [])],
    ["the same ids in a new NOTIFY", notify(5, 2, [])],
  ];
  for (const [name, bytes] of cases) {
    const h = running(fragAgent(), { fragmentation: true });
    h.conn.feed(first!);
    h.conn.feed(bytes);
    const last = await assertClosedWith(h, Status.INTERLACED_FRAMES);
    assert.equal(wire(h).length, 1, name);
    assert.match(last.disconnect!.message, /5\/2 is still being reassembled/, name);
  }
});

test("Session closes with status 3 when reassembly exceeds maxReassembledSize", async () => {
  for (const [size, ok] of [[40, true], [41, false]] as const) {
    const payload = messagesPayload([{
      name: "big",
      args: [["", DataType.BINARY, new Uint8Array(size - 8)]],
    }]);
    assert.equal(payload.length, size);
    const h = running(new Agent(), { fragmentation: true, maxReassembledSize: 40 });
    h.conn.feed(rawFrame(FrameType.NOTIFY, payload.subarray(0, 30), {
      streamId: 1,
      frameId: 1,
      flags: NO_FIN,
    }));
    h.conn.feed(unset(1, 1, payload.subarray(30)));
    if (ok) assert.deepEqual(summary(wire(h)), ["ACK 1/1"]);
    else await assertClosedWith(h, Status.FRAME_TOO_BIG);
  }
});

test("Session closes with status 4 on UNSET with nothing open", async () => {
  for (const flags of [Flag.FIN, NO_FIN]) {
    const h = running(fragAgent(), { fragmentation: true });
    h.conn.feed(unset(1, 1, FRAG_PAYLOAD, flags));
    await assertClosedWith(h, Status.INVALID_FRAME);
  }
  // Also right after a completed reassembly.
  const h = running(fragAgent(), { fragmentation: true });
  h.conn.feed(concat(...fragmentedNotify(5, 2), unset(5, 2, FRAG_PAYLOAD)));
  assert.deepEqual(summary(wire(h)), ["ACK 5/2", `DISCONNECT ${Status.INVALID_FRAME}`]);
});

test("Session closes with status 10 on fragments when fragmentation is off", async () => {
  const cases: Uint8Array[] = [
    rawFrame(FrameType.NOTIFY, FRAG_PAYLOAD, { streamId: 1, frameId: 1, flags: NO_FIN }),
    unset(1, 1, FRAG_PAYLOAD),
    unset(1, 1, FRAG_PAYLOAD, NO_FIN),
  ];
  for (const bytes of cases) {
    const h = running(fragAgent());
    h.conn.feed(bytes);
    await assertClosedWith(h, Status.FRAGMENTATION_NOT_SUPPORTED);
    assert.equal(wire(h).length, 1);
  }
});

test("Session closes with status 10 on a fragment when HAProxy offers fragmentation but it is off", async () => {
  const h = running(fragAgent(), { fragmentation: false }, { capabilities: "fragmentation" });
  h.conn.feed(rawFrame(FrameType.NOTIFY, FRAG_PAYLOAD, { streamId: 1, frameId: 1, flags: 0 }));
  await assertClosedWith(h, Status.FRAGMENTATION_NOT_SUPPORTED);
});

// ---------------------------------------------------------------------------
// Frames after the handshake

test("Session skips unknown frame types after the handshake", () => {
  const h = running(demoAgent());
  h.conn.feed(concat(
    rawFrame(42, hex("de ad be ef"), { streamId: 1, frameId: 1 }),
    rawFrame(200, new Uint8Array(0), { flags: NO_FIN }),
    rawFrame(4, hex("00")),
    notify(1, 1, [{ name: "echo", args: [["s", DataType.STRING, "still here"]] }]),
  ));
  assert.deepEqual(onlyAck(wire(h)).actions, [
    setVar(VarScope.TXN, "echo", DataType.STRING, "still here"),
  ]);
  assert.ok(h.lines.some((l) => l.includes("skipping unknown frame type 42")));
  assert.equal(h.conn.ended, false);
});

test("Session refuses agent frame types from HAProxy with status 4", async () => {
  for (const type of [FrameType.AGENT_HELLO, FrameType.AGENT_DISCONNECT, FrameType.ACK]) {
    const h = running(demoAgent());
    h.conn.feed(concat(notify(1, 1, []), rawFrame(type, new Uint8Array(0), { streamId: 1 })));
    await assertClosedWith(h, Status.INVALID_FRAME);
    assert.deepEqual(summary(wire(h)), ["ACK 1/1", "DISCONNECT 4"], `type ${type}`);
    assert.equal(h.conn.writes.length, 1, "the ACK and the DISCONNECT leave together");
  }
});

test("Session refuses a frame above the negotiated max-frame-size with status 3", async () => {
  const h = startSession(demoAgent(), { maxFrameSize: 16384 });
  h.conn.feed(haproxyHello({ maxFrameSize: 1024 }));
  assert.equal(wire(h)[0]!.hello!.maxFrameSize, 1024);
  h.conn.feed(notifyOfLength(1024));
  assert.deepEqual(summary(wire(h)), ["HELLO", "ACK 1/1"], "exactly the limit is fine");
  const tooBig = notifyOfLength(1025);
  h.conn.feed(tooBig.subarray(0, 4));
  await assertClosedWith(h, Status.FRAME_TOO_BIG);
  h.conn.feed(tooBig.subarray(4));
  assert.deepEqual(summary(wire(h)), ["HELLO", "ACK 1/1", "DISCONNECT 3"]);
});

test("Session refuses a malformed NOTIFY with status 4", async () => {
  const cases: [string, Uint8Array][] = [
    [
      "a truncated string argument",
      rawFrame(3, hex("01 6d 01 00 08 0a 61 62 63"), { streamId: 1, frameId: 1 }),
    ],
    ["a truncated integer", rawFrame(3, hex("01 6d 01 00 04 f0"), { streamId: 1, frameId: 1 })],
    ["a truncated address", rawFrame(3, hex("01 6d 01 00 06 0a 00"), { streamId: 1, frameId: 1 })],
    ["a reserved type", rawFrame(3, hex("01 6d 01 00 0b"), { streamId: 1, frameId: 1 })],
    ["a missing argument", rawFrame(3, hex("01 6d 02 00 00"), { streamId: 1, frameId: 1 })],
    ["no NB-ARGS", rawFrame(3, hex("01 6d"), { streamId: 1, frameId: 1 })],
    ["a name past the frame", rawFrame(3, hex("05 6d"), { streamId: 1, frameId: 1 })],
    ["ids past the frame", hex("00 00 00 07 03 00 00 00 01 f5 f5")],
    ["a LENGTH below 7", hex("00 00 00 06 03 00 00 00 01 01")],
  ];
  for (const [name, bytes] of cases) {
    const h = running(demoAgent());
    h.conn.feed(bytes);
    await assertClosedWith(h, Status.INVALID_FRAME);
    assert.equal(wire(h).length, 1, name);
    assertDeaf(h);
  }
});

// ---------------------------------------------------------------------------
// HAPROXY-DISCONNECT

test("Session answers HAPROXY-DISCONNECT with the §12.4 bytes and closes", async () => {
  const request = haproxyDisconnect(0);
  const spec = `
    00 00 00 25 02 00 00 00 01 00 00 0b 73 74 61 74 75 73 2d 63 6f 64 65 03 00
    07 6d 65 73 73 61 67 65 08 06 6e 6f 72 6d 61 6c`;
  assert.equal(toHex(request), toHex(hex(spec)));
  const h = running(new Agent());
  h.conn.feed(request);
  assert.equal(toHex(h.conn.output()), toHex(hex(spec)).replace(/^(\S+ \S+ \S+ \S+) 02/, "$1 66"));
  await assertClosedWith(h, Status.NORMAL);
  assertDeaf(h);
});

test("Session echoes the HAPROXY-DISCONNECT status", async () => {
  for (const status of [Status.TIMEOUT, Status.FRAME_ID_NOT_FOUND, 42]) {
    const h = running(new Agent(), {}, {}, Level.INFO);
    h.conn.feed(haproxyDisconnect(status, "idle timeout expired"));
    const last = await assertClosedWith(h, status);
    assert.equal(last.disconnect!.message, statusMessage(status));
    assert.deepEqual(linesAt(h.lines, "info"), [
      `1970-01-01T00:00:00.000Z info HAProxy disconnects: status ${status} (idle timeout expired)`,
    ]);
  }
});

test("Session drops pending ACKs after HAPROXY-DISCONNECT", async () => {
  for (const autoClose of [false, true]) {
    const gates = new Gates();
    const h = running(gatedAgent(gates));
    h.conn.autoClose = autoClose;
    h.conn.feed(concat(work(1, 0), work(3, 1), work(5, 2)));
    gates.open(1);
    h.conn.feed(haproxyDisconnect(0));
    assert.deepEqual(summary(wire(h)), ["DISCONNECT 0"]);
    for (let i = 0; i < 3; i++) gates.open(i);
    await settle();
    assert.deepEqual(summary(wire(h)), ["DISCONNECT 0"], `autoClose ${autoClose}`);
    assert.equal(h.conn.writes.length, 1);
    assert.equal(h.session.inFlight, 0);
    assert.deepEqual(h.conn.events, ["write", "close"]);
  }
});

test("Session ignores frames after HAPROXY-DISCONNECT in the same read", () => {
  let calls = 0;
  const h = running(new Agent().on("m", () => void calls++));
  h.conn.feed(concat(
    notify(1, 1, [{ name: "m" }]),
    haproxyDisconnect(0),
    notify(3, 1, [{ name: "m" }]),
    haproxyHello(),
  ));
  assert.equal(h.conn.writes.length, 1);
  assert.deepEqual(summary(wire(h)), ["ACK 1/1", "DISCONNECT 0"]);
  assert.equal(calls, 1);
});

// ---------------------------------------------------------------------------
// EOF and reset

test("Session stays quiet when the peer closes with handlers in flight", async () => {
  const gates = new Gates();
  const agent = gatedAgent(gates).on("fail-late", async () => {
    await gates.get(100).promise;
    throw new Error("late failure");
  });
  const h = running(agent, {}, {}, Level.INFO);
  h.conn.feed(concat(work(1, 0), work(3, 1), notify(5, 1, [{ name: "fail-late" }])));
  h.conn.deliverClose();
  await h.session.closed;
  for (const key of [0, 1, 100]) gates.open(key);
  await settle();
  assert.equal(h.conn.writes.length, 0);
  assert.deepEqual(h.conn.events, []);
  assert.equal(h.session.inFlight, 0);
  assert.equal(linesAt(h.lines, "warn").length, 0);
  assert.deepEqual(linesAt(h.lines, "error"), [], "nothing about NOTIFYs it can no longer answer");
});

test("Session stays quiet when the peer closes during HELLO or mid-frame", async () => {
  const h = startSession(new Agent(), {}, Level.INFO);
  h.conn.feed(haproxyHello().subarray(0, 10));
  h.conn.deliverClose();
  await h.session.closed;
  assert.equal(h.timers.pending, 0, "the hello timer is cancelled");
  h.timers.advance(60_000);
  assert.equal(h.conn.writes.length, 0);

  const r = running(demoAgent(), {}, {}, Level.INFO);
  r.conn.feed(notify(1, 1, [{ name: "echo" }]).subarray(0, 9));
  r.conn.deliverClose();
  await r.session.closed;
  assert.equal(r.conn.writes.length, 0);
  assert.deepEqual([...h.lines, ...r.lines], [], "EOF is not an error");
});

test("Session ignores onData and a second onClose after onClose", async () => {
  const h = running(demoAgent());
  h.session.onClose();
  h.session.onClose();
  await h.session.closed;
  h.session.onData(notify(1, 1, []), 11);
  h.session.onDrain();
  assert.equal(h.conn.writes.length, 0);
  assert.deepEqual(h.conn.events, []);
  await h.session.shutdown();
  h.session.abort();
  assert.deepEqual(h.conn.events, [], "shutdown() and abort() after close do nothing");
});

// ---------------------------------------------------------------------------
// -t replyDelay and -f closeAfterFrames

test("Session holds each ACK for replyDelay", async () => {
  const h = running(demoAgent(), { replyDelay: 50 });
  h.conn.feed(notify(1, 1, []));
  await settle();
  assert.equal(h.conn.writes.length, 0);
  assert.equal(h.timers.pending, 1);
  h.timers.advance(30);
  h.conn.feed(notify(3, 1, []));
  h.timers.advance(19);
  await settle();
  assert.equal(h.conn.writes.length, 0);
  h.timers.advance(1);
  await settle();
  assert.deepEqual(summary(wire(h)), ["ACK 1/1"]);
  h.timers.advance(30);
  await settle();
  assert.deepEqual(summary(wire(h)), ["ACK 1/1", "ACK 3/1"]);
  assert.equal(h.timers.pending, 0);
});

test("Session drops a delayed ACK when HAProxy disconnects first", async () => {
  const h = running(demoAgent(), { replyDelay: 50 });
  h.conn.feed(notify(1, 1, []));
  h.conn.feed(haproxyDisconnect(0));
  h.timers.advance(50);
  await settle();
  assert.deepEqual(summary(wire(h)), ["DISCONNECT 0"]);
});

test("Session closes with status 0 after closeAfterFrames NOTIFYs", async () => {
  const h = running(demoAgent(), { closeAfterFrames: 3 });
  h.conn.feed(notify(1, 1, []));
  h.conn.feed(notify(3, 1, []));
  assert.equal(h.conn.ended, false);
  h.conn.feed(concat(notify(5, 1, []), notify(7, 1, [])));
  await assertClosedWith(h, Status.NORMAL);
  assert.deepEqual(summary(wire(h)), ["ACK 1/1", "ACK 3/1", "ACK 5/1", "DISCONNECT 0"]);
  assert.equal(h.conn.writes.length, 3, "the last ACK and the DISCONNECT leave together");
});

test("Session waits for in-flight ACKs before closing after closeAfterFrames", async () => {
  const gates = new Gates();
  const h = running(gatedAgent(gates), { closeAfterFrames: 2 });
  h.conn.feed(work(1, 0));
  h.conn.feed(work(3, 1));
  assert.deepEqual(h.conn.events, ["pause"]);
  gates.open(1);
  await settle();
  assert.deepEqual(summary(wire(h)), ["ACK 3/1"]);
  assert.equal(h.conn.ended, false);
  gates.open(0);
  await settle();
  await assertClosedWith(h, Status.NORMAL);
  assert.deepEqual(summary(wire(h)), ["ACK 3/1", "ACK 1/1", "DISCONNECT 0"]);
});

test("Session counts closeAfterFrames with replyDelay", async () => {
  const h = running(demoAgent(), { closeAfterFrames: 1, replyDelay: 10 });
  h.conn.feed(notify(1, 1, []));
  assert.equal(h.conn.writes.length, 0);
  h.timers.advance(10);
  await settle();
  await assertClosedWith(h, Status.NORMAL);
  assert.deepEqual(summary(wire(h)), ["ACK 1/1", "DISCONNECT 0"]);
});

// ---------------------------------------------------------------------------
// shutdown() and abort()

test("Session.shutdown() during HELLO sends DISCONNECT 0 and closes", async () => {
  const h = startSession(new Agent());
  const closed = h.session.shutdown();
  const last = await assertClosedWith(h, Status.NORMAL);
  assert.equal(last.disconnect!.message, "agent is stopping");
  assert.equal(h.timers.pending, 0);
  await closed;
  assertDeaf(h);
});

test("Session.shutdown() sends in-flight ACKs, then DISCONNECT 0, then closes", async () => {
  const gates = new Gates();
  const h = running(gatedAgent(gates));
  h.conn.feed(concat(work(1, 0), work(3, 1)));
  let done = false;
  const closed = h.session.shutdown().then(() => void (done = true));
  assert.deepEqual(h.conn.events, ["pause"]);
  h.conn.feed(work(5, 2));
  gates.open(2);
  gates.open(1);
  await settle();
  assert.deepEqual(summary(wire(h)), ["ACK 3/1"], "a NOTIFY read after shutdown() is ignored");
  assert.equal(done, false);
  assert.equal(h.conn.ended, false);
  gates.open(0);
  await settle();
  await assertClosedWith(h, Status.NORMAL);
  await closed;
  assert.deepEqual(summary(wire(h)), ["ACK 3/1", "ACK 1/1", "DISCONNECT 0"]);
  assert.deepEqual(h.conn.events, ["pause", "write", "write", "close"]);
});

test("Session.shutdown() with nothing in flight closes at once", async () => {
  const h = running(new Agent());
  const closed = h.session.shutdown();
  assert.deepEqual(h.conn.events, ["pause", "write", "close"]);
  await assertClosedWith(h, Status.NORMAL);
  await closed;
});

test("Session.shutdown() twice sends one DISCONNECT", async () => {
  const gates = new Gates();
  const h = running(gatedAgent(gates));
  h.conn.feed(work(1, 0));
  const a = h.session.shutdown();
  const b = h.session.shutdown();
  assert.equal(a, b);
  gates.open(0);
  await settle();
  await a;
  assert.equal(h.session.shutdown(), a);
  assert.deepEqual(summary(wire(h)), ["ACK 1/1", "DISCONNECT 0"]);
  assert.equal(h.conn.count("close"), 1);
});

test("Session.abort() destroys the connection and writes nothing more", async () => {
  const gates = new Gates();
  const h = running(gatedAgent(gates));
  h.conn.feed(concat(work(1, 0), work(3, 1)));
  h.session.abort();
  assert.deepEqual(h.conn.events, ["destroy"]);
  gates.open(0);
  gates.open(1);
  await settle();
  await h.session.closed;
  const closed = h.session.shutdown();
  h.session.abort();
  await closed;
  assert.equal(h.conn.writes.length, 0);
  assert.equal(h.conn.count("close"), 0);
  assert.equal(h.session.inFlight, 0);

  const early = startSession(new Agent());
  early.session.abort();
  assert.equal(early.timers.pending, 0, "the hello timer is cancelled");
  early.timers.advance(60_000);
  assert.deepEqual(early.conn.events, ["destroy"]);
});

test("Session.abort() drops an ACK made but not yet written", async () => {
  const h = running(demoAgent(), { replyDelay: 10 });
  h.conn.autoClose = false;
  h.conn.feed(notify(1, 1, []));
  h.timers.advance(10); // The ACK is encoded; its write waits for a microtask.
  h.session.abort();
  await settle();
  assert.equal(h.conn.writes.length, 0);
  assert.deepEqual(h.conn.events, ["destroy"]);
});

// ---------------------------------------------------------------------------
// Every status, every frame

const DEFAULT_HELLO_TIMEOUT = 5000;

function feedFirst(bytes: Uint8Array): Harness {
  const h = startSession(new Agent(), {}, Level.ERROR);
  h.conn.feed(bytes);
  return h;
}

test("Session closes with status 99 when looking up a handler throws", async () => {
  // An object that only looks like an Agent: reading its registry throws.
  const broken = Object.create(Agent.prototype) as Agent;
  const h = running(broken, {}, {}, Level.INFO);
  h.conn.feed(notify(1, 1, [{ name: "m" }]));
  const last = await assertClosedWith(h, Status.UNKNOWN);
  assert.equal(last.disconnect!.message, "internal error");
  assert.equal(wire(h).length, 1);
  const errors = linesAt(h.lines, "error");
  assert.equal(errors.length, 1);
  assert.match(errors[0]!, /internal error, closing with status 99: TypeError/);
});

test("Session sends every disconnect status it can", async () => {
  const triggers: [status: number, run: () => Harness][] = [
    [0, () => {
      const h = running(new Agent());
      void h.session.shutdown();
      return h;
    }],
    [2, () => {
      const h = startSession(new Agent());
      h.timers.advance(DEFAULT_HELLO_TIMEOUT);
      return h;
    }],
    [3, () => feedFirst(hex("00 01 00 00"))],
    [4, () => feedFirst(notify(1, 1, []))],
    [5, () => feedFirst(helloWith([SIZE, CAPS]))],
    [6, () => feedFirst(helloWith([VERSIONS, CAPS]))],
    [7, () => feedFirst(helloWith([VERSIONS, SIZE]))],
    [8, () => feedFirst(haproxyHello({ supportedVersions: "1.0" }))],
    [9, () => feedFirst(haproxyHello({ maxFrameSize: 100 }))],
    [10, () => feedFirst(helloWith([VERSIONS, SIZE, CAPS], { flags: NO_FIN }))],
    [11, () => {
      const h = running(new Agent(), { fragmentation: true });
      h.conn.feed(concat(fragmentedNotify(1, 1)[0]!, fragmentedNotify(3, 1)[0]!));
      return h;
    }],
    [99, () => {
      const h = running(Object.create(Agent.prototype) as Agent, {}, {}, Level.ERROR);
      h.conn.feed(notify(1, 1, [{ name: "m" }]));
      return h;
    }],
  ];
  const seen: number[] = [];
  for (const [status, run] of triggers) {
    const h = run();
    const last = await assertClosedWith(h, status);
    assert.equal(last.disconnect!.status, status);
    seen.push(last.disconnect!.status);
  }
  assert.deepEqual(seen, [0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 99]);
});

test("Session cuts a long DISCONNECT reason to fit a 256-byte frame", async () => {
  for (const text of ["9".repeat(1000), "é".repeat(300), "\u{1F600}".repeat(200)]) {
    const h = startSession(new Agent(), {}, Level.ERROR);
    h.conn.feed(haproxyHello({ supportedVersions: text }));
    const last = await assertClosedWith(h, Status.BAD_VERSION);
    assert.ok(last.length <= 256, `LENGTH ${last.length} fits any max-frame-size`);
    assert.match(last.disconnect!.message, /^Cannot start session: no 2\.x version in /);
  }
});

test("Session sets FIN and nothing else on every frame it writes", async () => {
  const outputs: Uint8Array[] = [];
  const gates = new Gates();
  const runs: Harness[] = [
    runScenario("concatenated"),
    feedFirst(haproxyHello({ healthcheck: true, capabilities: "" })),
    feedFirst(notify(1, 1, [])),
  ];
  const r = running(gatedAgent(gates), { emptyAcks: true, fragmentation: true });
  r.conn.feed(concat(work(1, 0), ...fragmentedNotify(3, 1), notify(5, 1, [])));
  void r.session.shutdown();
  gates.open(0);
  await settle();
  runs.push(r);
  for (const h of runs) {
    outputs.push(h.conn.output());
    wire(h);
  }
  let frames = 0;
  for (const output of outputs) {
    // Walk the raw bytes independently of the decoder.
    for (let at = 0; at < output.length;) {
      const view = new DataView(output.buffer, output.byteOffset + at);
      const length = view.getUint32(0);
      assert.equal(view.getUint32(5), 1, `flags of frame at ${at}`);
      const type = output[at + 4]!;
      if (type !== FrameType.ACK) assert.equal(toHex(output.subarray(at + 9, at + 11)), "00 00");
      at += 4 + length;
      frames++;
    }
  }
  assert.ok(frames >= 12, `${frames} frames checked`);
});

// ---------------------------------------------------------------------------
// The IP-reputation agent (lib/iprep/mod.ts)

const IPV4 = "192.168.1.10";
const IPV4_BYTES = new Uint8Array([192, 168, 1, 10]);
const IPV6 = "2001:db8::1";
const IPV6_BYTES = hex("20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01");

function checkIp(args: readonly Item[]): MessageSpec {
  return { name: "check-client-ip", args };
}

function ipScore(agent: Agent, args: readonly Item[]): Action[] {
  const h = running(agent);
  h.conn.feed(notify(1, 1, [checkIp(args)]));
  return onlyAck(wire(h)).actions!;
}

test("ipReputation() scores IPv4 and IPv6, named or not, as UINT32 0..100", () => {
  const agent = ipReputation();
  for (
    const args of [
      [["", DataType.IPV4, IPV4]],
      [["ip", DataType.IPV4, IPV4]],
      [["", DataType.IPV6, IPV6]],
      [["src", DataType.IPV6, IPV6]],
    ] as Item[][]
  ) {
    for (let i = 0; i < 20; i++) {
      const actions = ipScore(agent, args);
      assert.equal(actions.length, 1);
      const [action] = actions;
      assert.equal(action!.action, "set-var");
      assert.equal(action!.scope, VarScope.SESS);
      assert.equal(action!.name, "ip_score");
      assert.equal(action!.type, DataType.UINT32);
      const score = action!.value as number;
      assert.ok(Number.isInteger(score) && score >= 0 && score <= 100, `score ${score}`);
    }
  }
});
test("seededScore() reads the address in place between start and end", () => {
  const padded = new Uint8Array([0xff, 0xee, ...IPV6_BYTES, 0xdd]);
  for (const seed of [0, 7, 0xffffffff]) {
    assert.equal(seededScore(seed, padded, 2, 18), seededScore(seed, IPV6_BYTES));
    assert.equal(seededScore(seed, padded, 2, 6), seededScore(seed, IPV6_BYTES.subarray(0, 4)));
  }
  // The surrounding bytes matter when they are inside the range.
  const whole = [0, 7, 0xffffffff].map((seed) => seededScore(seed, padded));
  const inner = [0, 7, 0xffffffff].map((seed) => seededScore(seed, padded, 2, 18));
  assert.notDeepEqual(whole, inner);
});

test("ipReputation() with a seed gives seededScore()", () => {
  for (const seed of [0, 7, 0xffffffff]) {
    const agent = ipReputation({ seed });
    const cases: [Item, Uint8Array][] = [
      [["", DataType.IPV4, IPV4], IPV4_BYTES],
      [["ip", DataType.IPV4, "10.0.0.1"], new Uint8Array([10, 0, 0, 1])],
      [["", DataType.IPV6, IPV6], IPV6_BYTES],
    ];
    for (const [arg, bytes] of cases) {
      const expected = seededScore(seed, bytes);
      assert.deepEqual(ipScore(agent, [arg]), [
        setVar(VarScope.SESS, "ip_score", DataType.UINT32, expected),
      ]);
      assert.deepEqual(ipScore(agent, [arg]), ipScore(agent, [arg]), "stable");
    }
  }
});

test("ipReputation() maps random 0 and 0.999999 to 0 and 100", () => {
  for (const [random, score] of [[0, 0], [0.999999, 100], [0.5, 50]] as const) {
    const agent = ipReputation({ random: () => random });
    for (const arg of [["", DataType.IPV4, IPV4], ["", DataType.IPV6, IPV6]] as Item[]) {
      assert.deepEqual(ipScore(agent, [arg]), [
        setVar(VarScope.SESS, "ip_score", DataType.UINT32, score),
      ]);
    }
  }
});

test("ipReputation() answers the §12.2 NOTIFY with the §12.3 ACK bytes", () => {
  const h = running(ipReputation({ random: () => 0.42 }));
  h.conn.feed(hex(
    "00 00 00 1e 03 00 00 00 01 01 01 0f 63 68 65 63 6b 2d 63 6c 69 65 6e 74 2d 69 70 01 00 06 c0 a8 01 0a",
  ));
  h.conn.feed(hex(
    "00 00 00 1f 03 00 00 00 01 fc 03 01 0f 63 68 65 63 6b 2d 63 6c 69 65 6e 74 2d 69 70 01 00 06 c0 a8 01 0a",
  ));
  assert.equal(
    toHex(h.conn.writes[0]!),
    "00 00 00 15 67 00 00 00 01 01 01 01 03 01 08 69 70 5f 73 63 6f 72 65 03 2a",
  );
  assert.equal(
    toHex(h.conn.writes[1]!),
    "00 00 00 16 67 00 00 00 01 fc 03 01 01 03 01 08 69 70 5f 73 63 6f 72 65 03 2a",
  );
});

test("ipReputation() leaves other messages and arguments without ip_score", () => {
  const agent = ipReputation({ seed: 1 });
  const cases: [string, MessageSpec][] = [
    ["another message", { name: "check-client", args: [["", DataType.IPV4, IPV4]] }],
    ["no argument", checkIp([])],
    [
      "two arguments",
      checkIp([["", DataType.IPV4, IPV4], ["", DataType.IPV4, IPV4]]),
    ],
    ["a string", checkIp([["", DataType.STRING, IPV4]])],
    ["a binary", checkIp([["", DataType.BINARY, IPV4_BYTES]])],
    ["a NULL (failed fetch)", checkIp([["", DataType.NULL, null]])],
    ["an integer", checkIp([["", DataType.INT64, 3232235786]])],
  ];
  for (const [name, message] of cases) {
    const h = running(agent);
    h.conn.feed(notify(1, 1, [message]));
    assert.deepEqual(onlyAck(wire(h)).actions, [PAD], name);
  }
  // Several messages in one NOTIFY: only check-client-ip with one address scores.
  const h = running(agent);
  h.conn.feed(notify(1, 1, [cases[0]![1], checkIp([["", DataType.IPV4, IPV4]]), cases[3]![1]]));
  assert.deepEqual(onlyAck(wire(h)).actions, [
    setVar(VarScope.SESS, "ip_score", DataType.UINT32, seededScore(1, IPV4_BYTES)),
  ]);
});
