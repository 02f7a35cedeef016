import { test } from "node:test";
import assert from "node:assert/strict";
import { Frame, FrameScanner, FrameType, FrameWriter, SpopError, Status } from "../lib/spop.ts";
import { hex } from "./_hex.ts";

const ACK = hex("00 00 00 07 67 00 00 00 01 01 01");

function status(expected: number) {
  return (err: unknown) => err instanceof SpopError && err.status === expected;
}

/** A NOTIFY with ids 1/1 whose LENGTH is `length` (the payload is zeros). */
function frameOfLength(length: number): Uint8Array {
  const bytes = new Uint8Array(4 + length);
  new DataView(bytes.buffer).setUint32(0, length);
  bytes.set([FrameType.NOTIFY, 0, 0, 0, 1, 1, 1], 4);
  return bytes;
}

test("FrameScanner returns frames that lie wholly in a chunk as views of that chunk", () => {
  const chunk = hex("00 00 00 07 67 00 00 00 01 01 01 00 00 00 07 67 00 00 00 01 03 01");
  const scanner = new FrameScanner();
  scanner.push(chunk);
  const first = scanner.next();
  assert.equal(first?.buf, chunk);
  assert.equal(first?.start, 0);
  const second = scanner.next();
  assert.equal(second?.buf, chunk);
  assert.equal(second?.start, 11);
  assert.equal(second?.streamId, 3);
  assert.equal(scanner.next(), null);
  assert.equal(scanner.buffered, 0);
});

test("FrameScanner reads only the given length of a reused read buffer", () => {
  const readBuffer = new Uint8Array(64);
  readBuffer.set(ACK);
  readBuffer.fill(0xff, ACK.length);
  const scanner = new FrameScanner();
  scanner.push(readBuffer, ACK.length);
  assert.equal(scanner.next()?.type, FrameType.ACK);
  assert.equal(scanner.next(), null);
  readBuffer.set(ACK.subarray(0, 6));
  scanner.push(readBuffer, 6);
  assert.equal(scanner.next(), null);
  readBuffer.set(ACK.subarray(6));
  scanner.push(readBuffer, 5);
  assert.equal(scanner.next()?.frameId, 1);
});

test("FrameScanner accepts LENGTH equal to the limit and rejects limit+1 with status 3", () => {
  const scanner = new FrameScanner(300);
  scanner.push(frameOfLength(300));
  assert.equal(scanner.next()?.length, 300);
  const over = new FrameScanner(300);
  over.push(frameOfLength(301));
  assert.throws(() => over.next(), status(Status.FRAME_TOO_BIG));
});

test("FrameScanner rejects an oversized LENGTH from its 4 bytes alone, before buffering", () => {
  for (const prefix of ["7f ff ff ff", "ff ff ff ff", "00 00 40 00"]) {
    const scanner = new FrameScanner(16380);
    scanner.push(hex(prefix));
    assert.throws(() => scanner.next(), status(Status.FRAME_TOO_BIG), prefix);
  }
});

test("FrameScanner checks a LENGTH split across chunks as soon as its 4th byte arrives", () => {
  const scanner = new FrameScanner(16380);
  for (const b of [0x7f, 0xff, 0xff]) {
    scanner.push(new Uint8Array([b]));
    assert.equal(scanner.next(), null);
  }
  scanner.push(new Uint8Array([0xff]));
  assert.throws(() => scanner.next(), status(Status.FRAME_TOO_BIG));
  assert.ok(scanner.buffered <= 4);
});

test("FrameScanner rejects LENGTH 0 to 6 with status 4", () => {
  for (let length = 0; length < 7; length++) {
    const scanner = new FrameScanner();
    scanner.push(new Uint8Array([0, 0, 0, length]));
    assert.throws(() => scanner.next(), status(Status.INVALID_FRAME), `length ${length}`);
  }
});

test("FrameScanner rejects ids that run past the frame with status 4", () => {
  // LENGTH 7: type, flags, then a stream-id varint that needs a third byte.
  const scanner = new FrameScanner();
  scanner.push(hex("00 00 00 07 03 00 00 00 01 f0 80"));
  assert.throws(() => scanner.next(), status(Status.INVALID_FRAME));
});

test("FrameScanner rejects an 11-byte stream-id with status 4", () => {
  const scanner = new FrameScanner();
  scanner.push(hex("00 00 00 11 03 00 00 00 01 ff ff ff ff ff ff ff ff ff ff 00 01"));
  assert.throws(() => scanner.next(), status(Status.INVALID_FRAME));
});

test("FrameScanner keeps 64-bit ids exact", () => {
  const w = new FrameWriter();
  w.begin(FrameType.NOTIFY, 2n ** 64n - 1n, 2n ** 53n + 1n).end();
  const scanner = new FrameScanner();
  scanner.push(w.bytes());
  const frame = scanner.next();
  assert.equal(frame?.streamId, 2n ** 64n - 1n);
  assert.equal(frame?.frameId, 2n ** 53n + 1n);
});

test("FrameScanner keeps unknown frame types and reserved flag bits for the session to judge", () => {
  const scanner = new FrameScanner();
  scanner.push(hex("00 00 00 09 2a ff ff ff fd 00 00 be ef"));
  const frame = scanner.next();
  assert.equal(frame?.type, 42);
  assert.equal(frame?.fin, true);
  assert.equal(frame?.abort, false);
  assert.deepEqual(Array.from(frame?.payload() ?? []), [0xbe, 0xef]);
});

test("FrameScanner applies a lowered maxLength to the next frame", () => {
  const scanner = new FrameScanner(16380);
  scanner.push(frameOfLength(1000));
  assert.equal(scanner.next()?.length, 1000);
  scanner.maxLength = 256;
  scanner.push(frameOfLength(1000));
  assert.throws(() => scanner.next(), status(Status.FRAME_TOO_BIG));
});

test("FrameScanner refuses a new chunk before the previous one is drained", () => {
  const scanner = new FrameScanner();
  scanner.push(hex("00 00 00 07 67 00 00 00 01 01 01 00 00 00 07 67 00 00 00 01 03 01"));
  assert.ok(scanner.next());
  assert.throws(() => scanner.push(ACK), TypeError);
});

test("FrameScanner buffers a split frame in at most LENGTH+4 bytes", () => {
  const big = frameOfLength(16380);
  const scanner = new FrameScanner(16380);
  let seen = 0;
  for (let at = 0; at < big.length; at += 1000) {
    scanner.push(big.slice(at, at + 1000));
    const frame = scanner.next();
    assert.ok(scanner.buffered <= 16384);
    if (frame) {
      assert.equal(frame.length, 16380);
      assert.ok(frame.buf.length <= 16384, `stash grew to ${frame.buf.length}`);
      seen++;
    }
  }
  assert.equal(seen, 1);
});

test("FrameScanner reset() drops a partial frame", () => {
  const scanner = new FrameScanner();
  scanner.push(ACK.subarray(0, 5));
  assert.equal(scanner.next(), null);
  scanner.reset();
  assert.equal(scanner.buffered, 0);
  scanner.push(ACK);
  assert.equal(scanner.next()?.type, FrameType.ACK);
});

test("FrameScanner fills the frame it was given, which scanners may share", () => {
  const shared = new Frame();
  const a = new FrameScanner(16380, shared);
  const b = new FrameScanner(16380, shared);
  a.push(ACK);
  assert.equal(a.next(), shared);
  assert.equal(shared.frameId, 1);
  const other = new FrameWriter();
  other.begin(FrameType.ACK, 5, 9).end();
  const bytes = other.bytes().slice();
  b.push(bytes.subarray(0, 6));
  assert.equal(b.next(), null, "a split frame waits in b's own stash");
  assert.equal(a.next(), null);
  b.push(bytes.subarray(6));
  assert.equal(b.next(), shared);
  assert.equal(shared.streamId, 5);
  assert.equal(shared.frameId, 9);
  assert.notEqual(new FrameScanner().frame, shared, "a scanner has a frame of its own by default");
});
