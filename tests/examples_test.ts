/**
 * Every byte example of `../shared/docs/spop.md` §10 and §12: encoded byte for
 * byte, decoded to the same values, and never mistaken for a frame when cut
 * short.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ActionReader,
  ActionType,
  DataType,
  decodeAgentHello,
  decodeDisconnect,
  decodeHaproxyHello,
  type Frame,
  FrameScanner,
  FrameType,
  FrameWriter,
  MessageReader,
  Status,
  VarScope,
  writeAgentHello,
  writeDisconnect,
  writeHaproxyHello,
} from "../lib/spop.ts";
import { ascii, hex, toHex } from "./_hex.ts";

const ENGINE_ID = "3f2e4d5c-6b7a-4980-8b1c-2d3e4f506172";
const CHECK = "0f " + ascii("check-client-ip");
const IP_SCORE = "08 " + ascii("ip_score");

interface Example {
  name: string;
  bytes: string;
  write(w: FrameWriter): void;
  check(frame: Frame): void;
}

function checkNotify(streamId: number, argName: string) {
  return (frame: Frame) => {
    assert.equal(frame.type, FrameType.NOTIFY);
    assert.equal(frame.streamId, streamId);
    assert.equal(frame.frameId, 1);
    const messages = new MessageReader().reset(frame.buf, frame.payloadStart, frame.end);
    assert.ok(messages.next());
    assert.equal(messages.name(), "check-client-ip");
    assert.equal(messages.argCount, 1);
    assert.equal(messages.arg(0)?.name(), argName);
    assert.equal(messages.arg(0)?.type, DataType.IPV4);
    assert.equal(messages.arg(0)?.text(), "192.168.1.10");
    assert.equal(messages.next(), false);
  };
}

function checkAck(streamId: number, actions: [number, number, string, DataType?, unknown?][]) {
  return (frame: Frame) => {
    assert.equal(frame.type, FrameType.ACK);
    assert.equal(frame.fin, true);
    assert.equal(frame.streamId, streamId);
    assert.equal(frame.frameId, 1);
    const reader = new ActionReader().reset(frame.buf, frame.payloadStart, frame.end);
    for (const [type, scope, name, valueType, value] of actions) {
      assert.ok(reader.next());
      assert.equal(reader.type, type);
      assert.equal(reader.scope, scope);
      assert.equal(reader.name(), name);
      if (valueType !== undefined) {
        assert.equal(reader.value.type, valueType);
        assert.equal(reader.value.value(), value);
      }
    }
    assert.equal(reader.next(), false);
  };
}

const HELLO_3X = `00 00 00 7b 01 00 00 00 01 00 00
  12 ${ascii("supported-versions")} 08 03 ${ascii("2.0")}
  0e ${ascii("max-frame-size")} 03 fc f0 06
  0c ${ascii("capabilities")} 08 0a ${ascii("pipelining")}
  09 ${ascii("engine-id")} 08 24 ${ascii(ENGINE_ID)}`;

const EXAMPLES: Example[] = [
  {
    name: "§12.1 HAPROXY-HELLO (3.x)",
    bytes: `
      00 00 00 7b 01 00 00 00 01 00 00 12 73 75 70 70
      6f 72 74 65 64 2d 76 65 72 73 69 6f 6e 73 08 03
      32 2e 30 0e 6d 61 78 2d 66 72 61 6d 65 2d 73 69
      7a 65 03 fc f0 06 0c 63 61 70 61 62 69 6c 69 74
      69 65 73 08 0a 70 69 70 65 6c 69 6e 69 6e 67 09
      65 6e 67 69 6e 65 2d 69 64 08 24 33 66 32 65 34
      64 35 63 2d 36 62 37 61 2d 34 39 38 30 2d 38 62
      31 63 2d 32 64 33 65 34 66 35 30 36 31 37 32`,
    write: (w) =>
      writeHaproxyHello(w, {
        maxFrameSize: 16380,
        capabilities: "pipelining",
        engineId: ENGINE_ID,
      }),
    check: (frame) =>
      assert.deepEqual(decodeHaproxyHello(frame), {
        supportedVersions: "2.0",
        maxFrameSize: 16380,
        capabilities: "pipelining",
        healthcheck: false,
        engineId: ENGINE_ID,
      }),
  },
  {
    name: "§12.1 HAPROXY-HELLO (2.x, issue #1736 capture shape)",
    bytes: HELLO_3X.replace("00 00 00 7b", "00 00 00 81").replace(
      `08 0a ${ascii("pipelining")}`,
      `08 10 ${ascii("pipelining,async")}`,
    ),
    write: (w) =>
      writeHaproxyHello(w, {
        maxFrameSize: 16380,
        capabilities: "pipelining,async",
        engineId: ENGINE_ID,
      }),
    check: (frame) => {
      const hello = decodeHaproxyHello(frame);
      assert.equal(hello.capabilities, "pipelining,async");
      assert.equal(frame.length, 129);
    },
  },
  {
    name: "§12.1 AGENT-HELLO with pipelining",
    bytes: `
      00 00 00 40 65 00 00 00 01 00 00 07 76 65 72 73
      69 6f 6e 08 03 32 2e 30 0e 6d 61 78 2d 66 72 61
      6d 65 2d 73 69 7a 65 03 fc f0 06 0c 63 61 70 61
      62 69 6c 69 74 69 65 73 08 0a 70 69 70 65 6c 69
      6e 69 6e 67`,
    write: (w) => writeAgentHello(w, { maxFrameSize: 16380, capabilities: "pipelining" }),
    check: (frame) =>
      assert.deepEqual(decodeAgentHello(frame), {
        version: "2.0",
        maxFrameSize: 16380,
        capabilities: "pipelining",
      }),
  },
  {
    name: "§10 health-check HAPROXY-HELLO (3.1+ tcp-check request)",
    bytes: `
      00 00 00 4e 01 00 00 00 01 00 00 12 73 75 70 70
      6f 72 74 65 64 2d 76 65 72 73 69 6f 6e 73 08 03
      32 2e 30 0e 6d 61 78 2d 66 72 61 6d 65 2d 73 69
      7a 65 03 fc f0 06 0c 63 61 70 61 62 69 6c 69 74
      69 65 73 08 00 0b 68 65 61 6c 74 68 63 68 65 63
      6b 11`,
    write: (w) =>
      writeHaproxyHello(w, { maxFrameSize: 16380, capabilities: "", healthcheck: true }),
    check: (frame) =>
      assert.deepEqual(decodeHaproxyHello(frame), {
        supportedVersions: "2.0",
        maxFrameSize: 16380,
        capabilities: "",
        healthcheck: true,
      }),
  },
  {
    name: "§10 health-check AGENT-HELLO reply (empty capabilities, 58 bytes)",
    bytes: `
      00 00 00 36 65 00 00 00 01 00 00 07 76 65 72 73 69 6f 6e 08 03 32 2e 30
      0e 6d 61 78 2d 66 72 61 6d 65 2d 73 69 7a 65 03 fc f0 06
      0c 63 61 70 61 62 69 6c 69 74 69 65 73 08 00`,
    write: (w) => writeAgentHello(w, { maxFrameSize: 16380, capabilities: "" }),
    check: (frame) =>
      assert.deepEqual(decodeAgentHello(frame), {
        version: "2.0",
        maxFrameSize: 16380,
        capabilities: "",
      }),
  },
  {
    name: "§12.2 NOTIFY check-client-ip, unnamed IPv4 argument, 3.x ids",
    bytes: "00 00 00 1e 03 00 00 00 01 01 01 0f 63 68 65 63 6b 2d 63 6c 69 65 6e 74 2d 69 70 " +
      "01 00 06 c0 a8 01 0a",
    write: (w) => {
      w.begin(FrameType.NOTIFY, 1, 1).message("check-client-ip", 1)
        .arg("", DataType.IPV4, "192.168.1.10").end();
    },
    check: checkNotify(1, ""),
  },
  {
    name: "§12.2 NOTIFY check-client-ip, named argument (args ip=src)",
    bytes: "00 00 00 20 03 00 00 00 01 01 01 0f 63 68 65 63 6b 2d 63 6c 69 65 6e 74 2d 69 70 " +
      "01 02 69 70 06 c0 a8 01 0a",
    write: (w) => {
      w.begin(FrameType.NOTIFY, 1, 1).message("check-client-ip", 1)
        .arg("ip", DataType.IPV4, new Uint8Array([192, 168, 1, 10])).end();
    },
    check: checkNotify(1, "ip"),
  },
  {
    name: "§12.2 NOTIFY check-client-ip, 2.x ids (stream-id 300)",
    bytes: `00 00 00 1f 03 00 00 00 01 fc 03 01 ${CHECK} 01 00 06 c0 a8 01 0a`,
    write: (w) => {
      w.begin(FrameType.NOTIFY, 300, 1).message("check-client-ip", 1)
        .arg("", DataType.IPV4, "192.168.1.10").end();
    },
    check: checkNotify(300, ""),
  },
  {
    name: "§12.3 ACK set-var(sess.ip_score) = UINT32 42",
    bytes: "00 00 00 15 67 00 00 00 01 01 01 01 03 01 08 69 70 5f 73 63 6f 72 65 03 2a",
    write: (w) => {
      w.begin(FrameType.ACK, 1, 1).setVar(VarScope.SESS, "ip_score", DataType.UINT32, 42).end();
    },
    check: checkAck(1, [[ActionType.SET_VAR, VarScope.SESS, "ip_score", DataType.UINT32, 42]]),
  },
  {
    name: "§12.3 ACK set-var with an INT64 value",
    bytes: `00 00 00 15 67 00 00 00 01 01 01 01 03 01 ${IP_SCORE} 04 2a`,
    write: (w) => {
      w.begin(FrameType.ACK, 1, 1).setVar(VarScope.SESS, "ip_score", DataType.INT64, 42).end();
    },
    check: checkAck(1, [[ActionType.SET_VAR, VarScope.SESS, "ip_score", DataType.INT64, 42]]),
  },
  {
    name: "§12.3 ACK for the 2.x NOTIFY (stream-id 300)",
    bytes: "00 00 00 16 67 00 00 00 01 fc 03 01 01 03 01 08 69 70 5f 73 63 6f 72 65 03 2a",
    write: (w) => {
      w.begin(FrameType.ACK, 300, 1).setVar(VarScope.SESS, "ip_score", DataType.UINT32, 42).end();
    },
    check: checkAck(300, [[ActionType.SET_VAR, VarScope.SESS, "ip_score", DataType.UINT32, 42]]),
  },
  {
    name: "§12.3 empty ACK",
    bytes: "00 00 00 07 67 00 00 00 01 01 01",
    write: (w) => {
      w.begin(FrameType.ACK, 1, 1).end();
    },
    check: checkAck(1, []),
  },
  {
    name: "§12.3 ACK unset-var(txn.ip_score)",
    bytes: "00 00 00 13 67 00 00 00 01 01 01 02 02 02 08 69 70 5f 73 63 6f 72 65",
    write: (w) => {
      w.begin(FrameType.ACK, 1, 1).unsetVar(VarScope.TXN, "ip_score").end();
    },
    check: checkAck(1, [[ActionType.UNSET_VAR, VarScope.TXN, "ip_score"]]),
  },
  {
    name: "§12.4 HAPROXY-DISCONNECT normal",
    bytes: `
      00 00 00 25 02 00 00 00 01 00 00 0b 73 74 61 74 75 73 2d 63 6f 64 65 03 00
      07 6d 65 73 73 61 67 65 08 06 6e 6f 72 6d 61 6c`,
    write: (w) => writeDisconnect(w, FrameType.HAPROXY_DISCONNECT, Status.NORMAL),
    check: (frame) => {
      assert.equal(frame.type, FrameType.HAPROXY_DISCONNECT);
      assert.deepEqual(decodeDisconnect(frame), { status: 0, message: "normal" });
    },
  },
  {
    name: "§12.4 AGENT-DISCONNECT normal",
    bytes: `
      00 00 00 25 66 00 00 00 01 00 00 0b 73 74 61 74 75 73 2d 63 6f 64 65 03 00
      07 6d 65 73 73 61 67 65 08 06 6e 6f 72 6d 61 6c`,
    write: (w) => writeDisconnect(w, FrameType.AGENT_DISCONNECT, Status.NORMAL),
    check: (frame) => {
      assert.equal(frame.type, FrameType.AGENT_DISCONNECT);
      assert.deepEqual(decodeDisconnect(frame), { status: 0, message: "normal" });
    },
  },
  {
    name: "§12.4 AGENT-DISCONNECT 8 unsupported version",
    bytes: `00 00 00 32 66 00 00 00 01 00 00 0b ${ascii("status-code")} 03 08
      07 ${ascii("message")} 08 13 ${ascii("unsupported version")}`,
    write: (w) => writeDisconnect(w, FrameType.AGENT_DISCONNECT, Status.BAD_VERSION),
    check: (frame) =>
      assert.deepEqual(decodeDisconnect(frame), { status: 8, message: "unsupported version" }),
  },
];

/** Frames fed to a scanner chunk by chunk, as a socket would deliver them. */
function scanAll(chunks: Uint8Array[], check: (frame: Frame) => void): number {
  const scanner = new FrameScanner(16380);
  let frames = 0;
  for (const chunk of chunks) {
    scanner.push(chunk);
    for (let frame = scanner.next(); frame !== null; frame = scanner.next()) {
      check(frame);
      frames++;
    }
  }
  return frames;
}

for (const ex of EXAMPLES) {
  test(`FrameWriter writes ${ex.name} byte for byte`, () => {
    const w = new FrameWriter(16);
    ex.write(w);
    assert.equal(toHex(w.bytes()), toHex(hex(ex.bytes)));
  });

  test(`FrameScanner decodes ${ex.name}`, () => {
    assert.equal(scanAll([hex(ex.bytes)], ex.check), 1);
  });

  test(`FrameScanner needs more bytes at every truncation of ${ex.name}`, () => {
    const bytes = hex(ex.bytes);
    for (let cut = 0; cut < bytes.length; cut++) {
      const scanner = new FrameScanner(16380);
      scanner.push(bytes.subarray(0, cut));
      assert.equal(scanner.next(), null, `cut at ${cut}`);
      assert.equal(scanner.buffered, cut);
    }
  });

  test(`FrameScanner decodes ${ex.name} split at every offset and byte by byte`, () => {
    const bytes = hex(ex.bytes);
    for (let cut = 1; cut < bytes.length; cut++) {
      const parts = [bytes.slice(0, cut), bytes.slice(cut)];
      assert.equal(scanAll(parts, ex.check), 1, `split at ${cut}`);
    }
    const single = Array.from(bytes, (b) => new Uint8Array([b]));
    assert.equal(scanAll(single, ex.check), 1);
  });
}

test("FrameScanner decodes every example back to back in one chunk and in 3-byte chunks", () => {
  const all = hex(EXAMPLES.map((ex) => ex.bytes).join(" "));
  let i = 0;
  const check = (frame: Frame) => EXAMPLES[i++]!.check(frame);
  assert.equal(scanAll([all], check), EXAMPLES.length);
  const chunks: Uint8Array[] = [];
  for (let at = 0; at < all.length; at += 3) chunks.push(all.slice(at, at + 3));
  i = 0;
  assert.equal(scanAll(chunks, check), EXAMPLES.length);
});

test("FrameWriter appends several frames for one write", () => {
  const w = new FrameWriter();
  for (const ex of EXAMPLES) ex.write(w);
  assert.equal(toHex(w.bytes()), toHex(hex(EXAMPLES.map((ex) => ex.bytes).join(" "))));
});
