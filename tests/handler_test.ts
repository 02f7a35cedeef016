import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Agent,
  DataType,
  type Handler,
  Message,
  Reply,
  type Scope,
  type Value,
  VarScope,
} from "../lib/mod.ts";
import { findHandler } from "../lib/agent/handler.ts";
import { bindMessage, MessageSlot } from "../lib/agent/message.ts";
import { bindReply, ReplySlot, replySlot } from "../lib/agent/reply.ts";
import { ActionReader, ActionType, FrameWriter, MessageReader } from "../lib/spop.ts";
import { hex, toHex } from "./_hex.ts";

type ArgSpec = [name: string, type: DataType, value: Value];

/** Encodes a LIST-OF-MESSAGES. */
function messages(list: [name: string, args: ArgSpec[]][]): Uint8Array {
  const w = new FrameWriter(256);
  for (const [name, args] of list) {
    w.message(name, args.length);
    for (const [argName, type, value] of args) w.arg(argName, type, value);
  }
  return w.take();
}

/** Loads the first message of `buf` into a new slot, and a Message armed on it. */
function loadSlot(buf: Uint8Array): { message: Message; slot: MessageSlot } {
  const reader = new MessageReader().reset(buf, 0, buf.length);
  assert.ok(reader.next());
  const slot = new MessageSlot();
  slot.load(reader, buf);
  const message = new Message();
  bindMessage(message, slot);
  return { message, slot };
}

/** Loads the first message of `buf` into a new Message (armed, as during a handler call). */
function load(buf: Uint8Array): Message {
  return loadSlot(buf).message;
}

/** A Reply armed on a slot of its own, as during a handler call. */
function newReply(): Reply {
  const reply = new Reply();
  bindReply(reply, new ReplySlot());
  return reply;
}

interface Decoded {
  type: number;
  scope: number;
  name: string;
  dataType?: number;
  value?: Value;
}

/** Decodes a reply's actions with the codec's ActionReader. */
function actions(reply: Reply): Decoded[] {
  const buf = replySlot(reply)!.writer.bytes();
  const reader = new ActionReader().reset(buf, 0, buf.length);
  const out: Decoded[] = [];
  while (reader.next()) {
    const action: Decoded = { type: reader.type, scope: reader.scope, name: reader.name() };
    if (reader.type === ActionType.SET_VAR) {
      action.dataType = reader.value.type;
      action.value = reader.value.value();
    }
    out.push(action);
  }
  return out;
}

/** The one set-var of a reply: its value's type and value. */
function onlySetVar(reply: Reply): [number | undefined, Value | undefined] {
  const list = actions(reply);
  assert.equal(list.length, 1);
  assert.equal(list[0]!.type, ActionType.SET_VAR);
  return [list[0]!.dataType, list[0]!.value];
}

const ARGS: ArgSpec[] = [
  ["ip", DataType.IPV4, "192.168.1.10"],
  ["", DataType.IPV6, "2001:db8::1"],
  ["n", DataType.INT64, -42],
  ["big", DataType.UINT64, 2n ** 64n - 1n],
  ["i32", DataType.INT32, 7],
  ["s", DataType.STRING, "héllo"],
  ["b", DataType.BINARY, new Uint8Array([0, 1, 255])],
  ["t", DataType.BOOL, true],
  ["f", DataType.BOOL, false],
  ["nul", DataType.NULL, null],
  ["huge", DataType.INT64, 2n ** 53n],
];

function sample(): Message {
  return load(messages([["check", ARGS]]));
}

test("Agent.on() registers handlers by name and replaces an earlier one", () => {
  const first: Handler = () => {};
  const second: Handler = () => {};
  const other: Handler = () => {};
  const agent = new Agent();
  assert.equal(agent.on("check", first), agent);
  agent.on("other", other).on("check", second);
  assert.deepEqual(agent.messages, ["check", "other"]);

  const buf = messages([["check", []], ["other", []], ["unknown", []], ["chec", []]]);
  const reader = new MessageReader().reset(buf, 0, buf.length);
  const found: (Handler | undefined)[] = [];
  while (reader.next()) found.push(findHandler(agent, reader, buf)?.fn);
  assert.equal(found.length, 4);
  assert.equal(found[0], second);
  assert.equal(found[1], other);
  assert.equal(found[2], undefined);
  assert.equal(found[3], undefined, "names match exactly, not by prefix");
});

test("Agent.on() rejects an empty message name", () => {
  const agent = new Agent();
  assert.throws(() => agent.on("", () => {}), TypeError);
  assert.deepEqual(agent.messages, []);
});

test("Message reports its name and argument count", () => {
  const message = sample();
  assert.equal(message.name, "check");
  assert.equal(message.size, ARGS.length);
  assert.equal(load(messages([["empty", []]])).size, 0);
});

test("Message.ip() reads IPv4 and IPv6 by position and name", () => {
  const m = sample();
  assert.equal(m.ip(0), "192.168.1.10");
  assert.equal(m.ip("ip"), "192.168.1.10");
  assert.equal(m.ip(1), "2001:db8::1");
  assert.equal(m.ip(""), "2001:db8::1", "the empty name finds the unnamed argument");
  assert.equal(m.ip("s"), undefined);
  assert.equal(m.ip(2), undefined);
  assert.equal(m.ip("missing"), undefined);
  assert.equal(m.ip("i"), undefined, "names match exactly");
  assert.equal(m.ip(ARGS.length), undefined);
  assert.equal(m.ip(-1), undefined);
});

test("Message.int() reads every integer type as a number, bigint() beyond 2^53-1 too", () => {
  const m = sample();
  assert.equal(m.int(2), -42);
  assert.equal(m.int("n"), -42);
  assert.equal(m.int("big"), undefined, "not exact as a number");
  assert.equal(m.bigint("big"), 2n ** 64n - 1n);
  assert.equal(m.int("i32"), 7);
  assert.equal(m.bigint("i32"), 7n);
  assert.equal(m.bigint("n"), -42n);
  assert.equal(m.int("huge"), undefined);
  assert.equal(m.bigint("huge"), 2n ** 53n);
  assert.equal(m.bigint("s"), undefined);
  assert.equal(m.int("s"), undefined);
  assert.equal(m.int("t"), undefined);
  assert.equal(m.int("nul"), undefined);
  assert.equal(m.int(0), undefined);
  assert.equal(m.int("missing"), undefined);
});

test("Message.string() and Message.binary() tell STRING from BINARY", () => {
  const m = sample();
  assert.equal(m.string(5), "héllo");
  assert.equal(m.string("s"), "héllo");
  assert.equal(m.string("b"), undefined);
  assert.equal(m.string("ip"), undefined);
  assert.equal(m.string("missing"), undefined);
  assert.deepEqual(m.binary(6), new Uint8Array([0, 1, 255]));
  assert.deepEqual(m.binary("b"), new Uint8Array([0, 1, 255]));
  assert.equal(m.binary("s"), undefined);
  assert.equal(m.binary("missing"), undefined);
  const copy = m.binary("b")!;
  copy[0] = 99;
  assert.deepEqual(m.binary("b"), new Uint8Array([0, 1, 255]), "binary() returns a copy");
});

test("Message.boolean() and Message.isNull() read BOOL and NULL", () => {
  const m = sample();
  assert.equal(m.boolean(7), true);
  assert.equal(m.boolean("t"), true);
  assert.equal(m.boolean("f"), false);
  assert.equal(m.boolean("n"), undefined);
  assert.equal(m.boolean("nul"), undefined);
  assert.equal(m.boolean("missing"), undefined);
  assert.equal(m.isNull(9), true);
  assert.equal(m.isNull("nul"), true);
  assert.equal(m.isNull("f"), false);
  assert.equal(m.isNull("missing"), false);
  assert.equal(m.isNull(99), false);
});

test("Message.arg() exposes the type and the argument name", () => {
  const m = sample();
  assert.equal(m.arg("big")?.type, DataType.UINT64);
  assert.equal(m.arg(0)?.name, "ip");
  assert.equal(m.arg(1)?.name, "");
  assert.equal(m.arg("missing"), undefined);
});

test("MessageSlot.detach() keeps the values after the source buffer is overwritten", () => {
  const buf = messages([["check", ARGS]]);
  const shared = load(buf);
  const { message: detached, slot } = loadSlot(buf);
  slot.detach();
  buf.fill(0xee);
  // Without detach the message reads the overwritten bytes.
  assert.notEqual(shared.string("s"), "héllo");
  assert.equal(detached.name, "check");
  assert.equal(detached.size, ARGS.length);
  assert.equal(detached.ip("ip"), "192.168.1.10");
  assert.equal(detached.ip(1), "2001:db8::1");
  assert.equal(detached.int("n"), -42);
  assert.equal(detached.bigint("big"), 2n ** 64n - 1n);
  assert.equal(detached.string("s"), "héllo");
  assert.deepEqual(detached.binary("b"), new Uint8Array([0, 1, 255]));
  assert.equal(detached.boolean("t"), true);
  assert.equal(detached.boolean("f"), false);
  assert.equal(detached.isNull("nul"), true);
});

test("MessageSlot.detach() copies only the message, from a buffer holding others", () => {
  const buf = messages([["first", [["x", DataType.STRING, "one"]]], ["second", [[
    "y",
    DataType.STRING,
    "two",
  ]]]]);
  const reader = new MessageReader().reset(buf, 0, buf.length);
  assert.ok(reader.next());
  assert.ok(reader.next());
  const slot = new MessageSlot();
  slot.load(reader, buf);
  slot.detach();
  const message = new Message();
  bindMessage(message, slot);
  buf.fill(0);
  assert.equal(message.name, "second");
  assert.equal(message.string("y"), "two");
  assert.equal(message.string("x"), undefined);
});

test("Reply.setVar() infers the type from the value", () => {
  const cases: [Value, number, Value][] = [
    [null, DataType.NULL, null],
    [true, DataType.BOOL, true],
    [false, DataType.BOOL, false],
    [42, DataType.INT64, 42],
    [-1, DataType.INT64, -1],
    [-5n, DataType.INT64, -5],
    [2n ** 63n - 1n, DataType.INT64, 2n ** 63n - 1n],
    [2n ** 63n, DataType.UINT64, 2n ** 63n],
    [2n ** 64n - 1n, DataType.UINT64, 2n ** 64n - 1n],
    ["text", DataType.STRING, "text"],
    ["", DataType.STRING, ""],
    [new Uint8Array([1, 2, 3]), DataType.BINARY, new Uint8Array([1, 2, 3])],
  ];
  for (const [value, type, decoded] of cases) {
    const label = typeof value === "bigint" ? `${value}n` : String(value);
    const [dataType, got] = onlySetVar(newReply().setVar("txn", "v", value));
    assert.equal(dataType, type, label);
    assert.deepEqual(got, decoded, label);
  }
});

test("Reply.setVar() encodes an explicit type, addresses from text or bytes", () => {
  const cases: [Value, DataType, Value][] = [
    [42, DataType.UINT32, 42],
    [-7, DataType.INT32, -7],
    [5, DataType.UINT64, 5],
    [5n, DataType.INT64, 5],
    ["192.168.1.10", DataType.IPV4, "192.168.1.10"],
    [new Uint8Array([10, 0, 0, 1]), DataType.IPV4, "10.0.0.1"],
    ["2001:db8::1", DataType.IPV6, "2001:db8::1"],
    ["::ffff:1.2.3.4", DataType.IPV6, "::ffff:1.2.3.4"],
    [new Uint8Array([104, 105]), DataType.STRING, "hi"],
    ["hi", DataType.BINARY, new Uint8Array([104, 105])],
    [1, DataType.NULL, null],
  ];
  for (const [value, type, decoded] of cases) {
    const [dataType, got] = onlySetVar(newReply().setVar("sess", "v", value, type));
    assert.equal(dataType, type, `${value} as ${type}`);
    assert.deepEqual(got, decoded, `${value} as ${type}`);
  }
});

test("Reply.setVar() writes the bytes of spop.md §12.3", () => {
  const reply = newReply().setVar("sess", "ip_score", 42, DataType.UINT32);
  assert.equal(
    toHex(replySlot(reply)!.writer.bytes()),
    toHex(hex("01 03 01 08 69 70 5f 73 63 6f 72 65 03 2a")),
  );
  assert.equal(reply.size, 1);
});

test("Reply accepts all five scopes by name and by VarScope number", () => {
  const names = ["proc", "sess", "txn", "req", "res"] as const;
  const numbers = [VarScope.PROC, VarScope.SESS, VarScope.TXN, VarScope.REQ, VarScope.RES];
  const reply = newReply();
  for (const name of names) reply.setVar(name, `by_${name}`, 1);
  for (const n of numbers) reply.setVar(n, `by_${n}`, 1);
  for (const name of names) reply.unsetVar(name, `un_${name}`);
  assert.equal(reply.size, 15);
  const list = actions(reply);
  assert.deepEqual(list.map((a) => a.scope), [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
  assert.deepEqual(list.slice(10).map((a) => [a.type, a.name]), [
    [ActionType.UNSET_VAR, "un_proc"],
    [ActionType.UNSET_VAR, "un_sess"],
    [ActionType.UNSET_VAR, "un_txn"],
    [ActionType.UNSET_VAR, "un_req"],
    [ActionType.UNSET_VAR, "un_res"],
  ]);
});

test("ReplySlot.clear() removes every action", () => {
  const reply = newReply().setVar("txn", "a", 1).unsetVar("txn", "b");
  assert.equal(reply.size, 2);
  replySlot(reply)!.clear();
  assert.equal(reply.size, 0);
  assert.equal(replySlot(reply)!.writer.bytes().length, 0);
  reply.setVar("txn", "c", true);
  assert.deepEqual(actions(reply).map((a) => a.name), ["c"]);
});

test("Reply rejects a bad scope with a TypeError", () => {
  const bad: unknown[] = ["global", "PROC", "", 5, -1, 1.5, Number.NaN];
  for (const scope of bad) {
    assert.throws(
      () => newReply().setVar(scope as VarScope, "v", 1),
      TypeError,
      `setVar ${String(scope)}`,
    );
    assert.throws(
      () => newReply().unsetVar(scope as VarScope, "v"),
      TypeError,
      `unsetVar ${String(scope)}`,
    );
  }
});

test("Reply rejects a bad variable name with a TypeError", () => {
  for (const name of ["", "a-b", "ip score", "é", "a/b", "a:b"]) {
    assert.throws(() => newReply().setVar("txn", name, 1), TypeError, JSON.stringify(name));
    assert.throws(() => newReply().unsetVar("txn", name), TypeError, JSON.stringify(name));
  }
  assert.equal(newReply().setVar("txn", "Az09._", 1).size, 1);
});

test("Reply rejects a value that does not suit the type with a TypeError", () => {
  const cases: [Value, DataType][] = [
    [1, DataType.BOOL],
    ["1", DataType.INT64],
    [true, DataType.UINT32],
    ["300.1.1.1", DataType.IPV4],
    ["2001:db8::1", DataType.IPV4],
    ["192.168.1.10", DataType.IPV6],
    [new Uint8Array(3), DataType.IPV4],
    [5, DataType.STRING],
  ];
  for (const [value, type] of cases) {
    assert.throws(() => newReply().setVar("txn", "v", value, type), TypeError, `${value}/${type}`);
  }
});

test("Reply rejects an integer outside its type's range with a RangeError", () => {
  const cases: [Value, DataType | undefined][] = [
    [-1, DataType.UINT32],
    [2 ** 32, DataType.UINT32],
    [2 ** 31, DataType.INT32],
    [-(2 ** 31) - 1, DataType.INT32],
    [2n ** 63n, DataType.INT64],
    [-(2n ** 63n) - 1n, DataType.INT64],
    [-1n, DataType.UINT64],
    [2n ** 64n, DataType.UINT64],
    [2n ** 64n, undefined],
    [-(2n ** 63n) - 1n, undefined],
    [2 ** 53, undefined],
    [1.5, undefined],
  ];
  for (const [value, type] of cases) {
    assert.throws(
      () => newReply().setVar("txn", "v", value, type),
      RangeError,
      `${value} as ${type ?? "inferred"}`,
    );
  }
  // The limits themselves fit.
  assert.equal(newReply().setVar("txn", "v", 2 ** 32 - 1, DataType.UINT32).size, 1);
  assert.equal(newReply().setVar("txn", "v", -(2 ** 31), DataType.INT32).size, 1);
  assert.equal(newReply().setVar("txn", "v", -(2n ** 63n)).size, 1);
});

test("Reply.setVar() refuses object keys that are not scopes", () => {
  for (const scope of ["toString", "constructor", "hasOwnProperty", "__proto__", "SESS", ""]) {
    assert.throws(() => newReply().setVar(scope as Scope, "x", 1), TypeError, scope);
    assert.throws(() => newReply().unsetVar(scope as Scope, "x"), TypeError, scope);
  }
  assert.throws(() => newReply().setVar(5 as VarScope, "x", 1), TypeError);
});

test("Reply.setVar() leaves no partial action behind when a value is refused", () => {
  const reply = newReply().setVar("sess", "a", 1);
  assert.throws(() => reply.setVar("sess", "b", -1, DataType.UINT32), RangeError);
  assert.throws(() => reply.setVar("sess", "b", "1.2.3", DataType.IPV4), TypeError);
  reply.setVar("sess", "c", 2);
  assert.equal(reply.size, 2);
  assert.equal(
    toHex(replySlot(reply)!.writer.bytes()),
    "01 03 01 01 61 04 01 01 03 01 01 63 04 02",
  );
});
