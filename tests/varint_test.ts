import { test } from "node:test";
import assert from "node:assert/strict";
import { INCOMPLETE, readVarint, SpopError, Status, writeVarint } from "../lib/spop.ts";
import { hex, toHex } from "./_hex.ts";

/** `../shared/docs/spop.md` §2.1, every row of the worked-values table. */
const TABLE: [number | bigint, string][] = [
  [0, "00"],
  [42, "2a"],
  [239, "ef"],
  [240, "f0 00"],
  [256, "f0 01"],
  [300, "fc 03"],
  [1000, "f8 2f"],
  [2287, "ff 7f"],
  [2288, "f0 80 00"],
  [16380, "fc f0 06"],
  [16384, "f0 f1 06"],
  [65535, "ff f0 1e"],
  [264432, "f0 80 80 00"],
  [2 ** 32 - 1, "ff f0 fe fe 7e"],
  [2n ** 64n - 1n, "ff f0 fe fe fe fe fe fe fe 0e"],
];

function encode(value: number | bigint): Uint8Array {
  const buf = new Uint8Array(10);
  return buf.subarray(0, writeVarint(buf, 0, value));
}

function decode(bytes: Uint8Array): { value: number | bigint; next: number } {
  const out = { value: -1 as number | bigint };
  const next = readVarint(bytes, 0, bytes.length, out);
  return { value: out.value, next };
}

test("writeVarint() encodes every value of the spec table byte for byte", () => {
  for (const [value, bytes] of TABLE) assert.equal(toHex(encode(value)), bytes, `${value}`);
});

test("readVarint() decodes every value of the spec table and reports its length", () => {
  for (const [value, bytes] of TABLE) {
    const { value: got, next } = decode(hex(bytes));
    assert.equal(got, value, bytes);
    assert.equal(next, hex(bytes).length, bytes);
  }
});

test("readVarint() returns numbers up to 2^53-1 and bigints above", () => {
  assert.equal(typeof decode(encode(2 ** 53 - 1)).value, "number");
  assert.equal(decode(encode(2 ** 53 - 1)).value, 2 ** 53 - 1);
  assert.equal(decode(encode(2n ** 53n)).value, 2n ** 53n);
  assert.equal(decode(encode(2n ** 53n + 1n)).value, 2n ** 53n + 1n);
});

test("varint round trips boundaries of every length class and of 2^31, 2^32, 2^53, 2^63, 2^64", () => {
  const values: (number | bigint)[] = [
    0,
    1,
    239,
    240,
    2287,
    2288,
    264431,
    264432,
    33818863,
    33818864,
    4328786159,
    4328786160,
    2 ** 31 - 1,
    2 ** 31,
    2 ** 32 - 1,
    2 ** 32,
    2 ** 53 - 1,
  ];
  for (const big of [2n ** 53n, 2n ** 53n + 1n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 2n]) {
    values.push(big);
  }
  for (let shift = 0n; shift < 64n; shift++) values.push(1n << shift, (1n << shift) + 12345n);
  for (const value of values) {
    const bytes = encode(value);
    assert.ok(bytes.length <= 10, `${value} took ${bytes.length} bytes`);
    const got = decode(bytes).value;
    assert.equal(BigInt(got), BigInt(value), `${value} came back as ${got}`);
    const expectNumber = BigInt(value) <= BigInt(Number.MAX_SAFE_INTEGER);
    assert.equal(typeof got, expectNumber ? "number" : "bigint", `${value}`);
  }
});

test("varint length classes match the spec: 1 byte below 240, 10 bytes for 2^64-1", () => {
  assert.equal(encode(239).length, 1);
  assert.equal(encode(240).length, 2);
  assert.equal(encode(2287).length, 2);
  assert.equal(encode(2288).length, 3);
  assert.equal(encode(264431).length, 3);
  assert.equal(encode(264432).length, 4);
  assert.equal(encode(33818863).length, 4);
  assert.equal(encode(33818864).length, 5);
  assert.equal(encode(4328786159).length, 5);
  assert.equal(encode(4328786160).length, 6);
  assert.equal(encode(2n ** 64n - 1n).length, 10);
});

test("readVarint() reports INCOMPLETE at every truncation, never a value", () => {
  for (const [value, bytes] of TABLE) {
    const full = hex(bytes);
    for (let cut = 0; cut < full.length; cut++) {
      const out = { value: -7 as number | bigint };
      assert.equal(readVarint(full, 0, cut, out), INCOMPLETE, `${value} cut at ${cut}`);
      assert.equal(out.value, -7, "value left untouched");
    }
  }
});

test("readVarint() honours a start offset and an end inside the buffer", () => {
  const buf = hex("aa fc 03 bb");
  const out = { value: 0 as number | bigint };
  assert.equal(readVarint(buf, 1, 3, out), 3);
  assert.equal(out.value, 300);
  assert.equal(readVarint(buf, 1, 2, out), INCOMPLETE);
});

test("readVarint() rejects an 11-byte varint with status 4 even when the input ends there", () => {
  const eleven = hex("ff ff ff ff ff ff ff ff ff ff 00");
  for (const end of [10, 11]) {
    assert.throws(
      () => readVarint(eleven, 0, end, { value: 0 }),
      (err: unknown) => err instanceof SpopError && err.status === Status.INVALID_FRAME,
    );
  }
});

test("readVarint() rejects a 10-byte varint above 2^64-1 with status 4", () => {
  assert.throws(
    () => decode(hex("ff f0 fe fe fe fe fe fe fe 0f")),
    (err: unknown) => err instanceof SpopError && err.status === Status.INVALID_FRAME,
  );
});

test("writeVarint() rejects negative, fractional, unsafe and over-64-bit values", () => {
  for (const bad of [-1, 1.5, 2 ** 53, Number.NaN, Infinity, -1n, 2n ** 64n]) {
    assert.throws(() => encode(bad), RangeError, String(bad));
  }
});
