import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ActionReader,
  ActionType,
  DataType,
  encodeName,
  Frame,
  FrameType,
  FrameWriter,
  KVReader,
  MAX_ARGS,
  MessageReader,
  readFrame,
  SpopError,
  Status,
  type Value,
  VarScope,
} from "../lib/spop.ts";
import { ascii, hex, toHex } from "./_hex.ts";

function invalid(err: unknown): boolean {
  return err instanceof SpopError && err.status === Status.INVALID_FRAME;
}

/** Payload bytes written by `build` outside any frame. */
function payload(build: (w: FrameWriter) => void): Uint8Array {
  const w = new FrameWriter(16);
  build(w);
  return w.bytes();
}

/** Reads the single frame in `bytes`. */
function frameOf(bytes: Uint8Array): Frame {
  const frame = new Frame();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  assert.equal(readFrame(bytes, view, 0, bytes.length, 2 ** 31, frame), bytes.length);
  return frame;
}

/** One sample value of every data type. */
const SAMPLES: [DataType, Value][] = [
  [DataType.NULL, null],
  [DataType.BOOL, true],
  [DataType.BOOL, false],
  [DataType.INT32, -7],
  [DataType.UINT32, 4294967295],
  [DataType.INT64, -(2n ** 63n)],
  [DataType.UINT64, 2n ** 53n],
  [DataType.IPV4, "192.0.2.1"],
  [DataType.IPV6, "2001:db8::1"],
  [DataType.STRING, "héllo"],
  [DataType.BINARY, hex("00 ff 10")],
];

// KVReader

test("KVReader iterates items with their names and values", () => {
  const buf = payload((w) =>
    w.kv("version", DataType.STRING, "2.0").kv("max-frame-size", DataType.UINT32, 16380)
      .kv("healthcheck", DataType.BOOL, true)
  );
  const kv = new KVReader().reset(buf, 0, buf.length);
  const seen: [string, Value][] = [];
  while (kv.next()) seen.push([kv.name(), kv.value.value()]);
  assert.deepEqual(seen, [["version", "2.0"], ["max-frame-size", 16380], ["healthcheck", true]]);
  assert.equal(kv.next(), false);
});

test("KVReader reads only between start and end", () => {
  const inner = payload((w) => w.kv("a", DataType.INT32, 1).kv("b", DataType.INT32, 2));
  const buf = new Uint8Array([0xee, 0xee, ...inner, 0x0e, 0xee]);
  const kv = new KVReader().reset(buf, 2, 2 + inner.length);
  const names: string[] = [];
  while (kv.next()) names.push(kv.name());
  assert.deepEqual(names, ["a", "b"]);
  assert.equal(new KVReader().reset(buf, 3, 3).next(), false);
});

test("KVReader.nameIs() compares names as bytes", () => {
  const buf = payload((w) =>
    w.kv("max-frame-size", DataType.UINT32, 1).kv("é", DataType.NULL, null)
  );
  const kv = new KVReader().reset(buf, 0, buf.length);
  assert.ok(kv.next());
  assert.equal(kv.nameIs(encodeName("max-frame-size")), true);
  assert.equal(kv.nameIs(encodeName("max-frame-siz")), false);
  assert.equal(kv.nameIs(encodeName("max-frame-size-x")), false);
  assert.equal(kv.nameIs(encodeName("MAX-FRAME-SIZE")), false);
  assert.equal(kv.nameIs(new Uint8Array()), false);
  assert.ok(kv.next());
  assert.equal(kv.nameIs(hex("c3 a9")), true);
  assert.equal(kv.nameIs(encodeName("e")), false);
});

test("KVReader rejects an empty name with status 4", () => {
  const kv = new KVReader().reset(hex("00 08 00"), 0, 3);
  assert.throws(() => kv.next(), invalid);
  const after = payload((w) => w.kv("ok", DataType.NULL, null).raw("").typed(DataType.NULL, null));
  const kv2 = new KVReader().reset(after, 0, after.length);
  assert.ok(kv2.next());
  assert.throws(() => kv2.next(), invalid);
});

test("KVReader skips unknown items of every type", () => {
  const buf = payload((w) => {
    SAMPLES.forEach(([type, value], i) => w.kv(`x-unknown-${i}`, type, value));
    w.kv("capabilities", DataType.STRING, "pipelining");
  });
  const kv = new KVReader().reset(buf, 0, buf.length);
  const CAPABILITIES = encodeName("capabilities");
  let found: string | undefined;
  let count = 0;
  while (kv.next()) {
    count++;
    if (kv.nameIs(CAPABILITIES)) found = kv.value.text();
  }
  assert.equal(count, SAMPLES.length + 1);
  assert.equal(found, "pipelining");
});

test("KVReader rejects an item truncated at every offset with status 4", () => {
  for (const [type, value] of SAMPLES) {
    const item = payload((w) => w.kv("name", type, value));
    for (let cut = 1; cut < item.length; cut++) {
      const kv = new KVReader().reset(item, 0, cut);
      assert.throws(() => kv.next(), invalid, `${toHex(item)} cut ${cut}`);
    }
  }
});

// MessageReader

test("MessageReader reads named and unnamed arguments", () => {
  const buf = payload((w) =>
    w.message("check-client-ip", 3).arg("", DataType.IPV4, "192.168.1.10")
      .arg("id", DataType.STRING, "abc").arg("", DataType.INT64, -1)
  );
  assert.equal(
    toHex(buf.subarray(0, 23)),
    `0f ${ascii("check-client-ip")} 03 00 06 c0 a8 01 0a`,
  );
  const m = new MessageReader().reset(buf, 0, buf.length);
  assert.ok(m.next());
  assert.equal(m.name(), "check-client-ip");
  assert.equal(m.nameIs(encodeName("check-client-ip")), true);
  assert.equal(m.nameIs(encodeName("check-client")), false);
  assert.equal(m.argCount, 3);
  assert.deepEqual(
    [0, 1, 2].map((i) => [m.arg(i)?.name(), m.arg(i)?.type, m.arg(i)?.value()]),
    [["", DataType.IPV4, "192.168.1.10"], ["id", DataType.STRING, "abc"], ["", DataType.INT64, -1]],
  );
  assert.equal(m.arg(1)?.nameIs(encodeName("id")), true);
  assert.equal(m.arg(0)?.nameIs(new Uint8Array()), true);
  assert.equal(m.next(), false);
});

test("MessageReader reads several messages in one payload", () => {
  const buf = payload((w) => {
    w.message("first", 1).arg("a", DataType.INT32, 1);
    w.message("second", 0);
    w.message("third", 2).arg("b", DataType.BOOL, true).arg("c", DataType.NULL, null);
  });
  const m = new MessageReader().reset(buf, 0, buf.length);
  const seen: [string, number, Value[]][] = [];
  while (m.next()) {
    const values: Value[] = [];
    for (let i = 0; i < m.argCount; i++) values.push(m.arg(i)!.value());
    seen.push([m.name(), m.argCount, values]);
  }
  assert.deepEqual(seen, [["first", 1, [1]], ["second", 0, []], ["third", 2, [true, null]]]);
});

test("MessageReader reads a message with 0 arguments", () => {
  const buf = payload((w) => w.message("ping", 0));
  assert.equal(toHex(buf), `04 ${ascii("ping")} 00`);
  const m = new MessageReader().reset(buf, 0, buf.length);
  assert.ok(m.next());
  assert.equal(m.argCount, 0);
  assert.equal(m.arg(0), undefined);
  assert.equal(m.next(), false);
});

test("MessageReader reads a message with 255 arguments", () => {
  assert.equal(MAX_ARGS, 255);
  const buf = payload((w) => {
    w.message("many", 255);
    for (let i = 0; i < 255; i++) w.arg(`a${i}`, DataType.UINT32, i);
  });
  const m = new MessageReader().reset(buf, 0, buf.length);
  assert.ok(m.next());
  assert.equal(m.argCount, 255);
  for (let i = 0; i < 255; i++) {
    assert.equal(m.arg(i)?.name(), `a${i}`);
    assert.equal(m.arg(i)?.int, i);
  }
  assert.equal(m.arg(255), undefined);
  assert.equal(m.argNamed(encodeName("a254"))?.int, 254);
  assert.equal(m.next(), false);
});

test("MessageReader.arg() returns undefined outside 0..argCount-1", () => {
  const buf = payload((w) =>
    w.message("m", 2).arg("", DataType.NULL, null).arg("", DataType.NULL, null)
  );
  const m = new MessageReader().reset(buf, 0, buf.length);
  assert.equal(m.arg(0), undefined, "before next()");
  assert.ok(m.next());
  assert.ok(m.arg(0));
  assert.ok(m.arg(1));
  for (const i of [-1, 2, 3, 255, 0.5, NaN]) assert.equal(m.arg(i), undefined, String(i));
  m.reset(buf, 0, buf.length);
  assert.equal(m.argCount, 0);
  assert.equal(m.arg(0), undefined, "after reset()");
});

test("MessageReader.argNamed() finds the first argument with the name", () => {
  const buf = payload((w) =>
    w.message("m", 4).arg("", DataType.INT32, 0).arg("ip", DataType.INT32, 1)
      .arg("ip", DataType.INT32, 2).arg("ipx", DataType.INT32, 3)
  );
  const m = new MessageReader().reset(buf, 0, buf.length);
  assert.ok(m.next());
  assert.equal(m.argNamed(encodeName("ip"))?.int, 1);
  assert.equal(m.argNamed(encodeName("ipx"))?.int, 3);
  assert.equal(m.argNamed(encodeName(""))?.int, 0);
  assert.equal(m.argNamed(encodeName("i")), undefined);
  assert.equal(m.argNamed(encodeName("missing")), undefined);
});

test("MessageReader rejects a message without NB-ARGS with status 4", () => {
  const buf = hex(`04 ${ascii("ping")}`);
  assert.throws(() => new MessageReader().reset(buf, 0, buf.length).next(), invalid);
  // The byte is there, but past `end`.
  const longer = hex(`04 ${ascii("ping")} 00`);
  assert.throws(() => new MessageReader().reset(longer, 0, longer.length - 1).next(), invalid);
});

test("MessageReader rejects an argument count above the arguments present with status 4", () => {
  const buf = payload((w) =>
    w.raw("m").byte(3).arg("a", DataType.INT32, 1).arg("b", DataType.INT32, 2)
  );
  assert.throws(() => new MessageReader().reset(buf, 0, buf.length).next(), invalid);
  const none = hex(`01 ${ascii("m")} 01`);
  assert.throws(() => new MessageReader().reset(none, 0, none.length).next(), invalid);
});

test("MessageReader rejects a message truncated at every offset with status 4", () => {
  const msg = payload((w) => {
    w.message("check", SAMPLES.length);
    for (const [type, value] of SAMPLES) w.arg("n", type, value);
  });
  for (let cut = 1; cut < msg.length; cut++) {
    const m = new MessageReader().reset(msg, 0, cut);
    assert.throws(() => m.next(), invalid, `cut ${cut}`);
  }
});

test("FrameWriter.message() rejects argument counts outside 0..255", () => {
  for (const n of [-1, 256, 1.5, NaN]) {
    assert.throws(() => new FrameWriter().message("m", n), RangeError, String(n));
  }
});

// ActionReader and setVar/unsetVar

test("FrameWriter.setVar() writes the §12.3 ACK byte for byte", () => {
  const w = new FrameWriter();
  w.begin(FrameType.ACK, 1, 1).setVar(VarScope.SESS, "ip_score", DataType.UINT32, 42).end();
  assert.equal(
    toHex(w.bytes()),
    `00 00 00 15 67 00 00 00 01 01 01 01 03 01 08 ${ascii("ip_score")} 03 2a`,
  );
});

test("FrameWriter.unsetVar() writes type 2, NB-ARGS 2, scope and raw name", () => {
  assert.equal(toHex(payload((w) => w.unsetVar(VarScope.TXN, "_"))), "02 02 02 01 5f");
  assert.equal(toHex(payload((w) => w.unsetVar(VarScope.RES, hex("61 62")))), "02 02 04 02 61 62");
});

test("ActionReader reads setVar and unsetVar for every scope and value type", () => {
  const scopes = [VarScope.PROC, VarScope.SESS, VarScope.TXN, VarScope.REQ, VarScope.RES];
  assert.deepEqual(scopes, [0, 1, 2, 3, 4]);
  const buf = payload((w) => {
    for (const scope of scopes) {
      for (const [type, value] of SAMPLES) w.setVar(scope, `v${scope}_${type}`, type, value);
      w.unsetVar(scope, `u${scope}`);
    }
  });
  const a = new ActionReader().reset(buf, 0, buf.length);
  for (const scope of scopes) {
    for (const [type, value] of SAMPLES) {
      assert.ok(a.next());
      assert.equal(a.type, ActionType.SET_VAR);
      assert.equal(a.scope, scope);
      assert.equal(a.name(), `v${scope}_${type}`);
      assert.equal(a.value.type, type);
      assert.deepEqual(a.value.value(), value);
    }
    assert.ok(a.next());
    assert.equal(a.type, ActionType.UNSET_VAR);
    assert.equal(a.scope, scope);
    assert.equal(a.name(), `u${scope}`);
  }
  assert.equal(a.next(), false);
});

test("ActionReader reads an empty action list", () => {
  assert.equal(new ActionReader().reset(new Uint8Array(), 0, 0).next(), false);
});

test("ActionReader rejects an unknown action type with status 4", () => {
  for (const type of [0, 3, 0xff]) {
    const buf = hex(`${type.toString(16).padStart(2, "0")} 02 00 01 61`);
    assert.throws(() => new ActionReader().reset(buf, 0, buf.length).next(), invalid, String(type));
  }
});

test("ActionReader rejects a wrong NB-ARGS with status 4", () => {
  const cases = [
    "01 02 00 01 61 00", // set-var with 2
    "01 04 00 01 61 00", // set-var with 4
    "02 03 00 01 61", // unset-var with 3
    "02 01 00 01 61", // unset-var with 1
  ];
  for (const c of cases) {
    assert.throws(() => new ActionReader().reset(hex(c), 0, hex(c).length).next(), invalid, c);
  }
});

test("ActionReader rejects scope 5 and above with status 4", () => {
  for (const c of ["01 03 05 01 61 00", "02 02 05 01 61", "02 02 ff 01 61"]) {
    assert.throws(() => new ActionReader().reset(hex(c), 0, hex(c).length).next(), invalid, c);
  }
});

test("ActionReader rejects an action truncated at every offset with status 4", () => {
  const actions = [
    payload((w) => w.setVar(VarScope.TXN, "name", DataType.STRING, "value")),
    payload((w) => w.setVar(VarScope.REQ, "ip", DataType.IPV6, "::1")),
    payload((w) => w.setVar(VarScope.SESS, "n", DataType.INT64, -1)),
    payload((w) => w.unsetVar(VarScope.PROC, "name")),
  ];
  for (const action of actions) {
    for (let cut = 1; cut < action.length; cut++) {
      const a = new ActionReader().reset(action, 0, cut);
      assert.throws(() => a.next(), invalid, `${toHex(action)} cut ${cut}`);
    }
  }
});

test("ActionReader reads the actions before a bad one", () => {
  const buf = new Uint8Array([
    ...payload((w) => w.unsetVar(VarScope.TXN, "a")),
    ...hex("03 02 00 01 61"),
  ]);
  const a = new ActionReader().reset(buf, 0, buf.length);
  assert.ok(a.next());
  assert.equal(a.name(), "a");
  assert.throws(() => a.next(), invalid);
});

// FrameWriter

test("FrameWriter grows past its initial capacity", () => {
  const big = Uint8Array.from({ length: 100_000 }, (_, i) => (i * 7) & 0xff);
  const w = new FrameWriter(16);
  w.begin(FrameType.ACK, 3, 1).setVar(VarScope.TXN, "body", DataType.BINARY, big).end();
  w.begin(FrameType.ACK, 5, 1).unsetVar(VarScope.TXN, "x").end();
  const bytes = w.bytes();
  const frame = frameOf(bytes.subarray(0, bytes.length - 16));
  assert.equal(frame.streamId, 3);
  const a = new ActionReader().reset(frame.buf, frame.payloadStart, frame.end);
  assert.ok(a.next());
  assert.deepEqual(a.value.bytes(), big);
  assert.equal(a.next(), false);
  assert.equal(
    toHex(bytes.subarray(bytes.length - 16)),
    "00 00 00 0c 67 00 00 00 01 05 01 02 02 02 01 78",
  );
});

test("FrameWriter.end() accepts a frame of exactly maxLength", () => {
  const w = new FrameWriter();
  w.begin(FrameType.ACK, 1, 1).unsetVar(VarScope.TXN, "ab");
  assert.equal(w.end(13), 13);
  assert.equal(toHex(w.bytes()), "00 00 00 0d 67 00 00 00 01 01 01 02 02 02 02 61 62");
  w.begin(FrameType.ACK, 1, 1).unsetVar(VarScope.TXN, "ab");
  assert.throws(() => w.end(12), RangeError);
});

test("FrameWriter.end() throws RangeError above maxLength and drops only that frame", () => {
  const w = new FrameWriter(16);
  w.begin(FrameType.ACK, 1, 1).end(7);
  const first = toHex(w.bytes());
  assert.equal(first, "00 00 00 07 67 00 00 00 01 01 01");
  w.begin(FrameType.ACK, 3, 1).setVar(VarScope.TXN, "v", DataType.STRING, "x".repeat(300));
  assert.throws(() => w.end(256), RangeError);
  assert.equal(toHex(w.bytes()), first);
  assert.equal(w.size, 11);
  // The writer is usable again: no frame is left open.
  w.begin(FrameType.ACK, 5, 1).end(7);
  assert.equal(toHex(w.bytes()), `${first} 00 00 00 07 67 00 00 00 01 05 01`);
});

test("FrameWriter.begin() throws TypeError while a frame is open", () => {
  const w = new FrameWriter();
  w.begin(FrameType.ACK, 1, 1);
  assert.throws(() => w.begin(FrameType.ACK, 3, 1), TypeError);
  assert.throws(() => w.bytes(), TypeError);
  assert.throws(() => w.take(), TypeError);
  w.end();
  assert.equal(toHex(w.bytes()), "00 00 00 07 67 00 00 00 01 01 01");
  assert.throws(() => w.end(), TypeError, "end() without an open frame");
});

test("FrameWriter.take() returns bytes that stay intact after more writes", () => {
  const w = new FrameWriter(32);
  w.begin(FrameType.ACK, 1, 1).setVar(VarScope.SESS, "a", DataType.UINT32, 1).end();
  const taken = w.take();
  const expected = "00 00 00 0e 67 00 00 00 01 01 01 01 03 01 01 61 03 01";
  assert.equal(toHex(taken), expected);
  assert.equal(w.size, 0);
  for (let i = 0; i < 10; i++) {
    w.begin(FrameType.ACK, 9, 9).setVar(VarScope.RES, "zz", DataType.UINT32, 0xff).end();
  }
  w.reset();
  w.begin(FrameType.AGENT_DISCONNECT).kv("status-code", DataType.UINT32, 99).end();
  assert.equal(toHex(taken), expected);
  assert.equal(w.bytes()[4], FrameType.AGENT_DISCONNECT);
});

test("FrameWriter.appendWriter() copies another writer's bytes, short and long", () => {
  for (const size of [0, 5, 64, 65, 300]) {
    const other = new FrameWriter(8).append(new Uint8Array(size).map((_, i) => i & 0xff));
    const w = new FrameWriter(4).byte(0xee).appendWriter(other);
    assert.equal(w.size, 1 + size);
    const bytes = w.bytes();
    assert.equal(bytes[0], 0xee);
    for (let i = 0; i < size; i++) assert.equal(bytes[1 + i], i & 0xff, `byte ${i} of ${size}`);
  }
});
