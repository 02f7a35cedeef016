import { test } from "node:test";
import assert from "node:assert/strict";
import {
  DataType,
  FrameWriter,
  readTypedData,
  SpopError,
  Status,
  TypedData,
  type Value,
} from "../lib/spop.ts";
import { hex, toHex } from "./_hex.ts";

/** Encodes one TYPED-DATA item. */
function encode(type: DataType, value: Value): Uint8Array {
  return new FrameWriter(16).typed(type, value).bytes();
}

/** Decodes one item that must span all of `bytes`. */
function decode(bytes: Uint8Array): TypedData {
  const out = new TypedData();
  assert.equal(readTypedData(bytes, 0, bytes.length, out), bytes.length, toHex(bytes));
  return out;
}

function roundTrip(type: DataType, value: Value): TypedData {
  const bytes = encode(type, value);
  assert.equal(bytes[0], type === DataType.BOOL && value === true ? 0x11 : type, "type byte");
  const out = decode(bytes);
  assert.equal(out.type, type);
  return out;
}

function invalid(err: unknown): boolean {
  return err instanceof SpopError && err.status === Status.INVALID_FRAME;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
const SAFE = Number.MAX_SAFE_INTEGER;

test("FrameWriter.typed() round-trips BOOL in the flag bit", () => {
  assert.equal(toHex(encode(DataType.BOOL, true)), "11");
  assert.equal(toHex(encode(DataType.BOOL, false)), "01");
  assert.equal(roundTrip(DataType.BOOL, true).bool, true);
  assert.equal(roundTrip(DataType.BOOL, false).bool, false);
});

test("FrameWriter.typed() round-trips INT32 boundaries", () => {
  for (const v of [-(2 ** 31), -1, 0, 1, 239, 240, 2 ** 31 - 1]) {
    assert.equal(roundTrip(DataType.INT32, v).int, v);
  }
  assert.equal(toHex(encode(DataType.INT32, 0)), "02 00");
  assert.equal(toHex(encode(DataType.INT32, 2 ** 31 - 1)), "02 ff f0 fe fe 3e");
  // Negative values travel as their 64-bit two's complement.
  assert.equal(toHex(encode(DataType.INT32, -1)), "02 ff f0 fe fe fe fe fe fe fe 0e");
  assert.equal(toHex(encode(DataType.INT32, -(2 ** 31))), "02 f0 f1 fe fe be fe fe fe fe 0e");
});

test("FrameWriter.typed() round-trips UINT32 boundaries", () => {
  for (const v of [0, 239, 240, 2 ** 32 - 1]) assert.equal(roundTrip(DataType.UINT32, v).int, v);
  assert.equal(toHex(encode(DataType.UINT32, 239)), "03 ef");
  assert.equal(toHex(encode(DataType.UINT32, 240)), "03 f0 00");
  assert.equal(toHex(encode(DataType.UINT32, 2 ** 32 - 1)), "03 ff f0 fe fe 7e");
});

test("FrameWriter.typed() round-trips INT64 boundaries", () => {
  const cases: [number | bigint, number | bigint][] = [
    [INT64_MIN, INT64_MIN],
    [INT64_MIN + 1n, INT64_MIN + 1n],
    [-(2n ** 53n), -(2n ** 53n)],
    [-SAFE, -SAFE],
    [-1, -1],
    [0, 0],
    [SAFE, SAFE],
    [2n ** 53n, 2n ** 53n],
    [INT64_MAX, INT64_MAX],
  ];
  for (const [given, read] of cases) {
    assert.equal(roundTrip(DataType.INT64, given).int, read, String(given));
  }
  assert.equal(toHex(encode(DataType.INT64, -1)), "04 ff f0 fe fe fe fe fe fe fe 0e");
  assert.equal(toHex(encode(DataType.INT64, -1n)), "04 ff f0 fe fe fe fe fe fe fe 0e");
  assert.equal(toHex(encode(DataType.INT64, INT64_MIN)), "04 f0 f1 fe fe fe fe fe fe fe 06");
  assert.equal(toHex(encode(DataType.INT64, INT64_MAX)), "04 ff f0 fe fe fe fe fe fe fe 06");
});

test("FrameWriter.typed() round-trips UINT64 boundaries", () => {
  const cases: [number | bigint, number | bigint][] = [
    [0, 0],
    [SAFE, SAFE],
    [2n ** 53n, 2n ** 53n],
  ];
  for (const [given, read] of cases) {
    assert.equal(roundTrip(DataType.UINT64, given).int, read, String(given));
  }
  assert.equal(toHex(encode(DataType.UINT64, 2n ** 53n)), "05 f0 f1 fe fe fe fe fe 7e");
  assert.equal(decode(hex("05 ff f0 fe fe fe fe fe fe fe 0e")).int, UINT64_MAX);
});

test("FrameWriter.typed() writes UINT64 values from 2^63 to 2^64-1", () => {
  for (const v of [2n ** 63n, UINT64_MAX]) assert.equal(roundTrip(DataType.UINT64, v).int, v);
  assert.equal(toHex(encode(DataType.UINT64, 2n ** 63n)), "05 f0 f1 fe fe fe fe fe fe fe 06");
  assert.equal(toHex(encode(DataType.UINT64, UINT64_MAX)), "05 ff f0 fe fe fe fe fe fe fe 0e");
});

test("readTypedData() returns safe integers as numbers even when written as bigints", () => {
  for (const type of [DataType.INT32, DataType.UINT32, DataType.INT64, DataType.UINT64]) {
    assert.equal(roundTrip(type, 5n).int, 5);
  }
  assert.equal(roundTrip(DataType.INT32, -(2n ** 31n)).int, -(2 ** 31));
  assert.equal(roundTrip(DataType.UINT32, 2n ** 32n - 1n).int, 2 ** 32 - 1);
  assert.equal(roundTrip(DataType.INT64, -(2n ** 53n) + 1n).int, -SAFE);
  assert.equal(roundTrip(DataType.UINT64, BigInt(SAFE)).int, SAFE);
});

test("FrameWriter.typed() round-trips IPV4 from bytes and from text", () => {
  assert.equal(toHex(encode(DataType.IPV4, hex("c0 00 02 01"))), "06 c0 00 02 01");
  assert.equal(toHex(encode(DataType.IPV4, "192.0.2.1")), "06 c0 00 02 01");
  assert.equal(roundTrip(DataType.IPV4, "0.0.0.0").text(), "0.0.0.0");
  assert.equal(roundTrip(DataType.IPV4, hex("ff ff ff ff")).text(), "255.255.255.255");
  assert.equal(toHex(roundTrip(DataType.IPV4, "10.1.2.3").bytes()), "0a 01 02 03");
});

test("FrameWriter.typed() round-trips IPV6 from bytes and from text", () => {
  const bytes = hex("20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01");
  assert.equal(toHex(encode(DataType.IPV6, bytes)), `07 ${toHex(bytes)}`);
  assert.equal(toHex(encode(DataType.IPV6, "2001:db8::1")), `07 ${toHex(bytes)}`);
  assert.equal(roundTrip(DataType.IPV6, bytes).text(), "2001:db8::1");
  assert.equal(roundTrip(DataType.IPV6, "::ffff:1.2.3.4").text(), "::ffff:1.2.3.4");
  assert.equal(roundTrip(DataType.IPV6, "::").text(), "::");
  assert.equal(toHex(roundTrip(DataType.IPV6, "::1").bytes()), "00 ".repeat(15) + "01");
});

test("FrameWriter.typed() round-trips STRING as UTF-8", () => {
  const cases: [string, string][] = [
    ["", "08 00"],
    ["abc", "08 03 61 62 63"],
    ["é", "08 02 c3 a9"],
    ["€", "08 03 e2 82 ac"],
    ["😀", "08 04 f0 9f 98 80"],
    ["a😀b", "08 06 61 f0 9f 98 80 62"],
  ];
  for (const [text, bytes] of cases) {
    assert.equal(toHex(encode(DataType.STRING, text)), bytes, text);
    assert.equal(roundTrip(DataType.STRING, text).text(), text);
  }
});

test("FrameWriter.typed() encodes a lone surrogate in a STRING as U+FFFD", () => {
  const cases: [string, string, string][] = [
    ["\ud800", "08 03 ef bf bd", "\ufffd"],
    ["\udc00", "08 03 ef bf bd", "\ufffd"],
    ["a\ud83db", "08 05 61 ef bf bd 62", "a\ufffdb"],
    ["x\ud83d", "08 04 78 ef bf bd", "x\ufffd"],
    ["\udc00\ud800", "08 06 ef bf bd ef bf bd", "\ufffd\ufffd"],
  ];
  for (const [text, bytes, read] of cases) {
    assert.equal(toHex(encode(DataType.STRING, text)), bytes, JSON.stringify(text));
    assert.equal(roundTrip(DataType.STRING, text).text(), read);
  }
});

test("FrameWriter.typed() writes a multi-byte length for long STRINGs", () => {
  for (const text of ["x".repeat(239), "x".repeat(240), "é".repeat(200), "😀".repeat(3000)]) {
    const bytes = encode(DataType.STRING, text);
    const size = new TextEncoder().encode(text).length;
    assert.equal(bytes.length, 1 + (size < 240 ? 1 : size < 2288 ? 2 : 3) + size);
    assert.equal(roundTrip(DataType.STRING, text).text(), text);
  }
});

test("FrameWriter.typed() round-trips BINARY with every byte value", () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  const bytes = encode(DataType.BINARY, all);
  assert.equal(toHex(bytes.subarray(0, 5)), "09 f0 01 00 01");
  assert.equal(bytes.length, 3 + 256);
  assert.deepEqual(roundTrip(DataType.BINARY, all).value(), all);
  assert.equal(toHex(encode(DataType.BINARY, new Uint8Array())), "09 00");
  assert.equal(toHex(encode(DataType.BINARY, "é")), "09 02 c3 a9");
  assert.equal(toHex(encode(DataType.STRING, hex("ff 00"))), "08 02 ff 00");
});

test("FrameWriter.typed() writes NULL as one byte whatever the value", () => {
  for (const v of [null, 5, "x", true]) assert.equal(toHex(encode(DataType.NULL, v)), "00");
  assert.equal(roundTrip(DataType.NULL, null).value(), null);
});

test("FrameWriter.typed() throws RangeError for integers out of range", () => {
  const cases: [DataType, number | bigint][] = [
    [DataType.INT32, 2 ** 31],
    [DataType.INT32, -(2 ** 31) - 1],
    [DataType.INT32, 2n ** 31n],
    [DataType.UINT32, -1],
    [DataType.UINT32, 2 ** 32],
    [DataType.UINT32, -1n],
    [DataType.INT64, 2n ** 63n],
    [DataType.INT64, INT64_MIN - 1n],
    [DataType.UINT64, -1],
    [DataType.UINT64, -1n],
    [DataType.UINT64, 2n ** 64n],
    [DataType.INT32, 1.5],
    [DataType.INT64, 1.5],
    [DataType.UINT64, 2 ** 53],
    [DataType.INT64, 2 ** 53],
    [DataType.INT64, -(2 ** 53)],
    [DataType.INT64, NaN],
    [DataType.UINT64, Infinity],
  ];
  for (const [type, value] of cases) {
    const w = new FrameWriter(16);
    assert.throws(() => w.typed(type, value), RangeError, `${type} ${value}`);
    assert.equal(w.size, 0, "nothing written");
  }
});

test("FrameWriter.typed() throws TypeError for a value of the wrong JS type", () => {
  const cases: [DataType, Value][] = [
    [DataType.BOOL, 1],
    [DataType.BOOL, null],
    [DataType.INT32, "1"],
    [DataType.INT64, true],
    [DataType.UINT64, null],
    [DataType.IPV4, hex("01 02 03 04 05")],
    [DataType.IPV4, "1.2.3"],
    [DataType.IPV4, "::1"],
    [DataType.IPV4, 0x01020304],
    [DataType.IPV6, hex("01 02 03 04")],
    [DataType.IPV6, "1.2.3.4"],
    [DataType.IPV6, "fe80::1%eth0"],
    [DataType.STRING, 5],
    [DataType.STRING, null],
    [DataType.BINARY, true],
    [10 as DataType, 1],
  ];
  for (const [type, value] of cases) {
    const w = new FrameWriter(16);
    assert.throws(() => w.typed(type, value), TypeError, `${type} ${String(value)}`);
    assert.equal(w.size, 0, "nothing written");
  }
});

test("readTypedData() rejects reserved types 10 to 15 with status 4", () => {
  for (let type = 10; type <= 15; type++) {
    for (const flags of [0x00, 0x10, 0xf0]) {
      assert.throws(() => decode(new Uint8Array([flags | type, 0, 0, 0, 0])), invalid, `${type}`);
    }
  }
  assert.throws(() => decode(hex("1a")), invalid);
});

test("readTypedData() rejects an item truncated at every offset with status 4", () => {
  const items = [
    encode(DataType.BOOL, true),
    encode(DataType.INT32, -1),
    encode(DataType.UINT32, 2 ** 32 - 1),
    encode(DataType.INT64, INT64_MIN),
    encode(DataType.UINT64, 300),
    encode(DataType.IPV4, "1.2.3.4"),
    encode(DataType.IPV6, "2001:db8::1"),
    encode(DataType.STRING, "héllo"),
    encode(DataType.STRING, "x".repeat(300)),
    encode(DataType.BINARY, hex("00 01 02")),
  ];
  for (const item of items) {
    // The bytes stay in the buffer; only `end` says where the frame stops.
    const buf = new Uint8Array([0xee, ...item, 0xee, 0xee, 0xee]);
    const out = new TypedData();
    assert.equal(readTypedData(buf, 1, 1 + item.length, out), 1 + item.length);
    for (let cut = 0; cut < item.length; cut++) {
      assert.throws(
        () => readTypedData(buf, 1, 1 + cut, out),
        invalid,
        `${toHex(item)} cut ${cut}`,
      );
    }
  }
});

test("readTypedData() rejects malformed lengths and addresses with status 4", () => {
  const cases = [
    "08 05 61 62 63 64", // STRING length past the end
    "09 01", // BINARY with no bytes
    "07 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01", // IPV6 with 15 bytes
    "06 01 02 03", // IPV4 with 3 bytes
    "04 f0", // varint cut short
    "05 ff 80 80", // varint cut short after continuation bytes
    "04 ff ff ff ff ff ff ff ff ff ff 00", // varint longer than 10 bytes
    "05 ff ff ff ff ff ff ff ff ff 7f", // varint above 2^64-1
    "08 ff f0 fe fe fe fe fe fe fe 0e 61", // STRING length 2^64-1
    "",
  ];
  for (const item of cases) assert.throws(() => decode(hex(item)), invalid, item);
});

test("readTypedData() reads items back to back at offsets", () => {
  const w = new FrameWriter(16);
  w.typed(DataType.STRING, "ab").typed(DataType.NULL, null).typed(DataType.BOOL, true)
    .typed(DataType.INT64, -2).typed(DataType.IPV4, "1.2.3.4");
  const buf = w.bytes();
  assert.equal(toHex(buf), "08 02 61 62 00 11 04 fe f0 fe fe fe fe fe fe fe 0e 06 01 02 03 04");
  const out = new TypedData();
  let pos = readTypedData(buf, 0, buf.length, out);
  assert.deepEqual([pos, out.type, out.text()], [4, DataType.STRING, "ab"]);
  pos = readTypedData(buf, pos, buf.length, out);
  assert.deepEqual([pos, out.type, out.bytes().length], [5, DataType.NULL, 0]);
  pos = readTypedData(buf, pos, buf.length, out);
  assert.deepEqual([pos, out.type, out.bool], [6, DataType.BOOL, true]);
  pos = readTypedData(buf, pos, buf.length, out);
  assert.deepEqual([pos, out.type, out.int], [17, DataType.INT64, -2]);
  pos = readTypedData(buf, pos, buf.length, out);
  assert.deepEqual([pos, out.type, out.text()], [22, DataType.IPV4, "1.2.3.4"]);
});

test("TypedData.text() and value() give each type's JS form", () => {
  const cases: [DataType, Value, string, Value][] = [
    [DataType.NULL, null, "", null],
    [DataType.BOOL, true, "true", true],
    [DataType.BOOL, false, "false", false],
    [DataType.INT32, -5, "-5", -5],
    [DataType.UINT32, 4294967295, "4294967295", 4294967295],
    [DataType.INT64, INT64_MIN, "-9223372036854775808", INT64_MIN],
    [DataType.INT64, -1, "-1", -1],
    [DataType.UINT64, 2n ** 53n, "9007199254740992", 2n ** 53n],
    [DataType.IPV4, "192.0.2.1", "192.0.2.1", "192.0.2.1"],
    [DataType.IPV6, "2001:DB8:0:0:0:0:0:1", "2001:db8::1", "2001:db8::1"],
    [DataType.STRING, "héllo", "héllo", "héllo"],
    [DataType.BINARY, hex("68 c3 a9"), "hé", hex("68 c3 a9")],
  ];
  for (const [type, given, text, value] of cases) {
    const td = roundTrip(type, given);
    assert.equal(td.text(), text, `${type} text`);
    assert.deepEqual(td.value(), value, `${type} value`);
  }
  const max = decode(hex("05 ff f0 fe fe fe fe fe fe fe 0e"));
  assert.equal(max.text(), "18446744073709551615");
  assert.equal(max.value(), UINT64_MAX);
});

test("TypedData.value() copies BINARY bytes while bytes() is a view", () => {
  const buf = encode(DataType.BINARY, hex("01 02 03"));
  const td = decode(buf);
  const copy = td.value();
  const view = td.bytes();
  buf[2] = 0xff;
  assert.deepEqual(copy, hex("01 02 03"));
  assert.deepEqual(view, hex("ff 02 03"));
});

test("TypedData.bytes() is empty for types without bytes", () => {
  const td = new TypedData();
  const buf = hex("08 02 61 62 00 04 05 11");
  let pos = readTypedData(buf, 0, buf.length, td);
  assert.equal(td.bytes().length, 2);
  for (const type of [DataType.NULL, DataType.INT64, DataType.BOOL]) {
    pos = readTypedData(buf, pos, buf.length, td);
    assert.equal(td.type, type);
    assert.equal(td.bytes().length, 0);
  }
});
