import { test } from "node:test";
import assert from "node:assert/strict";
import {
  DataType,
  decodeAgentHello,
  decodeDisconnect,
  decodeHaproxyHello,
  type Frame,
  FrameScanner,
  FrameType,
  FrameWriter,
  hasCapability,
  negotiateMaxFrameSize,
  pickVersion,
  SpopError,
  Status,
  statusMessage,
  writeHaproxyHello,
} from "../lib/spop.ts";

function status(expected: number) {
  return (err: unknown) => err instanceof SpopError && err.status === expected;
}

/** Writes a frame with `build` and reads it back. */
function frameOf(build: (w: FrameWriter) => void): Frame {
  const w = new FrameWriter();
  build(w);
  const scanner = new FrameScanner();
  scanner.push(w.bytes());
  const frame = scanner.next();
  assert.ok(frame);
  return frame;
}

function hello(items: [string, DataType, string | number | boolean][], flags = 1, ids = 0) {
  return frameOf((w) => {
    w.begin(FrameType.HAPROXY_HELLO, ids, ids, flags);
    for (const [name, type, value] of items) w.kv(name, type, value);
    w.end();
  });
}

const VERSIONS: [string, DataType, string] = ["supported-versions", DataType.STRING, "2.0"];
const SIZE: [string, DataType, number] = ["max-frame-size", DataType.UINT32, 16380];
const CAPS: [string, DataType, string] = ["capabilities", DataType.STRING, "pipelining"];

test("decodeHaproxyHello() reports missing items with status 5, 6 and 7", () => {
  assert.throws(() => decodeHaproxyHello(hello([SIZE, CAPS])), status(Status.NO_VERSION));
  assert.throws(() => decodeHaproxyHello(hello([VERSIONS, CAPS])), status(Status.NO_FRAME_SIZE));
  assert.throws(() => decodeHaproxyHello(hello([VERSIONS, SIZE])), status(Status.NO_CAPABILITIES));
});

test("decodeHaproxyHello() accepts items in any order, any integer type, and skips unknown items", () => {
  const frame = hello([
    ["x-future", DataType.BINARY, "abc"],
    CAPS,
    ["max-frame-size", DataType.INT64, 1024],
    ["x-flag", DataType.BOOL, true],
    VERSIONS,
    ["x-num", DataType.UINT64, 7],
  ]);
  assert.deepEqual(decodeHaproxyHello(frame), {
    supportedVersions: "2.0",
    maxFrameSize: 1024,
    capabilities: "pipelining",
    healthcheck: false,
  });
});

test("decodeHaproxyHello() matches item names exactly, not by prefix", () => {
  const frame = hello([["supported-versions-x", DataType.STRING, "2.0"], SIZE, CAPS]);
  assert.throws(() => decodeHaproxyHello(frame), status(Status.NO_VERSION));
});

test("decodeHaproxyHello() rejects items of the wrong type with status 4", () => {
  const cases: [string, DataType, string | number | boolean][][] = [
    [["supported-versions", DataType.BINARY, "2.0"], SIZE, CAPS],
    [VERSIONS, ["max-frame-size", DataType.STRING, "16380"], CAPS],
    [VERSIONS, SIZE, ["capabilities", DataType.BOOL, true]],
    [VERSIONS, SIZE, CAPS, ["healthcheck", DataType.STRING, "true"]],
  ];
  for (const items of cases) {
    assert.throws(() => decodeHaproxyHello(hello(items)), status(Status.INVALID_FRAME));
  }
});

test("decodeHaproxyHello() rejects another frame type, non-zero ids (4) and a missing FIN (10)", () => {
  const notify = frameOf((w) => w.begin(FrameType.NOTIFY, 1, 1).end());
  assert.throws(() => decodeHaproxyHello(notify), status(Status.INVALID_FRAME));
  assert.throws(() => decodeHaproxyHello(hello([VERSIONS, SIZE, CAPS], 1, 1)), status(4));
  assert.throws(
    () => decodeHaproxyHello(hello([VERSIONS, SIZE, CAPS], 0)),
    status(Status.FRAGMENTATION_NOT_SUPPORTED),
  );
});

test("decodeHaproxyHello() rejects an empty item name with status 4", () => {
  const bad = frameOf((w) => {
    w.begin(FrameType.HAPROXY_HELLO).kv("", DataType.NULL, null).end();
  });
  assert.throws(() => decodeHaproxyHello(bad), status(Status.INVALID_FRAME));
});

test("decodeAgentHello() reports missing version, max-frame-size and capabilities", () => {
  const agent = (items: [string, DataType, string | number][]) =>
    frameOf((w) => {
      w.begin(FrameType.AGENT_HELLO);
      for (const [name, type, value] of items) w.kv(name, type, value);
      w.end();
    });
  const v: [string, DataType, string] = ["version", DataType.STRING, "2.0"];
  assert.throws(() => decodeAgentHello(agent([SIZE, CAPS])), status(Status.NO_VERSION));
  assert.throws(() => decodeAgentHello(agent([v, CAPS])), status(Status.NO_FRAME_SIZE));
  assert.throws(() => decodeAgentHello(agent([v, SIZE])), status(Status.NO_CAPABILITIES));
});

test("decodeDisconnect() falls back to status 99 and HAProxy's text when items are missing", () => {
  const empty = frameOf((w) => w.begin(FrameType.HAPROXY_DISCONNECT).end());
  assert.deepEqual(decodeDisconnect(empty), { status: 99, message: "an unknown error occurred" });
  const codeOnly = frameOf((w) =>
    w.begin(FrameType.HAPROXY_DISCONNECT).kv("status-code", DataType.UINT32, 2).end()
  );
  assert.deepEqual(decodeDisconnect(codeOnly), { status: 2, message: "a timeout occurred" });
});

test("pickVersion() answers 2.0 for any offered 2.x version and nothing otherwise", () => {
  assert.equal(pickVersion("2.0"), "2.0");
  assert.equal(pickVersion(" 1.0 , 2.0 "), "2.0");
  assert.equal(pickVersion("2.1"), "2.0");
  assert.equal(pickVersion("1.0"), undefined);
  assert.equal(pickVersion("3.0,20.0"), undefined);
  assert.equal(pickVersion(""), undefined);
  assert.equal(pickVersion("2"), undefined);
  assert.equal(pickVersion("two.zero"), undefined);
});

test("hasCapability() matches whole tokens and ignores spaces", () => {
  assert.equal(hasCapability("pipelining,async", "async"), true);
  assert.equal(hasCapability(" pipelining , async", "pipelining"), true);
  assert.equal(hasCapability("", "pipelining"), false);
  assert.equal(hasCapability("pipelining-x", "pipelining"), false);
  assert.equal(hasCapability("fragmentation", "frag"), false);
});

test("negotiateMaxFrameSize() takes the smaller size and refuses HAProxy values below 256", () => {
  assert.equal(negotiateMaxFrameSize(16380, 16384), 16380);
  assert.equal(negotiateMaxFrameSize(65532, 16384), 16384);
  assert.equal(negotiateMaxFrameSize(256, 16384), 256);
  assert.throws(() => negotiateMaxFrameSize(255, 16384), status(Status.BAD_FRAME_SIZE));
});

test("statusMessage() gives HAProxy's text for every code and a fallback for the rest", () => {
  const texts = [
    "normal",
    "I/O error",
    "a timeout occurred",
    "frame is too big",
    "invalid frame received",
    "version value not found",
    "max-frame-size value not found",
    "capabilities value not found",
    "unsupported version",
    "max-frame-size too big or too small",
    "fragmentation not supported",
    "invalid interlaced frames",
    "frame-id not found",
    "resource allocation error",
  ];
  texts.forEach((text, code) => assert.equal(statusMessage(code), text));
  assert.equal(statusMessage(99), "an unknown error occurred");
  assert.equal(statusMessage(14), "an unknown error occurred");
  assert.equal(Status.UNKNOWN, 99);
});

test("writeHaproxyHello() leaves out healthcheck and engine-id unless given", () => {
  const frame = frameOf((w) => writeHaproxyHello(w, { maxFrameSize: 300, capabilities: "" }));
  assert.deepEqual(decodeHaproxyHello(frame), {
    supportedVersions: "2.0",
    maxFrameSize: 300,
    capabilities: "",
    healthcheck: false,
  });
});
