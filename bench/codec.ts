/**
 * Codec micro-benchmark: nanoseconds per NOTIFY decode and per ACK encode, on
 * the frames the IP-reputation service handles (`check-client-ip` with an IPv4
 * argument, ACK setting `sess.ip_score`). Runs under Deno and Bun:
 * `deno task bench` runs both.
 *
 * Each figure is the median of 7 timed rounds after a warm-up.
 *
 * @module
 */

import {
  DataType,
  encodeName,
  FrameScanner,
  FrameType,
  FrameWriter,
  MessageReader,
  VarScope,
} from "../lib/spop.ts";

const ROUNDS = 7;
const PER_ROUND = 1_000_000;
const CHECK_CLIENT_IP = encodeName("check-client-ip");
const IP_SCORE = encodeName("ip_score");

/** Times `body(n)` over `n` operations and returns the median ns per operation. */
function measure(body: (n: number) => number): { ns: number; sink: number } {
  let sink = body(PER_ROUND / 10); // warm-up
  const samples: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = performance.now();
    sink += body(PER_ROUND);
    samples.push(((performance.now() - t0) * 1e6) / PER_ROUND);
  }
  samples.sort((a, b) => a - b);
  return { ns: samples[ROUNDS >> 1]!, sink };
}

/** One chunk holding `count` NOTIFYs (3.x ids), as a pipelining HAProxy sends them. */
function notifies(count: number): Uint8Array {
  const w = new FrameWriter();
  for (let i = 0; i < count; i++) {
    w.begin(FrameType.NOTIFY, 2 * i + 1, 1)
      .message("check-client-ip", 1)
      .arg("", DataType.IPV4, new Uint8Array([10, 0, i >> 8, i & 0xff]))
      .end();
  }
  return w.bytes().slice();
}

const scanner = new FrameScanner();
const messages = new MessageReader();

/** Decodes `n` NOTIFYs, `batch` frames per chunk; returns a checksum. */
function decode(chunk: Uint8Array, batch: number, n: number): number {
  let sum = 0;
  for (let done = 0; done < n; done += batch) {
    scanner.push(chunk);
    for (let frame = scanner.next(); frame !== null; frame = scanner.next()) {
      messages.reset(frame.buf, frame.payloadStart, frame.end);
      while (messages.next()) {
        if (!messages.nameIs(CHECK_CLIENT_IP)) continue;
        const ip = messages.arg(0);
        if (ip !== undefined && ip.type === DataType.IPV4) sum += ip.buf[ip.start + 3]!;
      }
      sum += frame.streamId as number;
    }
  }
  return sum;
}

const writer = new FrameWriter(65536);

/** Encodes `n` ACKs, `batch` per flushed buffer; returns a checksum. */
function encode(batch: number, n: number): number {
  let sum = 0;
  for (let done = 0; done < n; done += batch) {
    writer.reset();
    for (let i = 0; i < batch; i++) {
      writer.begin(FrameType.ACK, 2 * i + 1, 1)
        .setVar(VarScope.SESS, IP_SCORE, DataType.UINT32, (done + i) % 101)
        .end();
    }
    sum += writer.bytes().length;
  }
  return sum;
}

const runtime = navigator.userAgent;
const one = notifies(1);
const sixteen = notifies(16);
const rows: [string, { ns: number; sink: number }][] = [
  ["NOTIFY decode, 1 frame per chunk", measure((n) => decode(one, 1, n))],
  ["NOTIFY decode, 16 frames per chunk", measure((n) => decode(sixteen, 16, n))],
  ["ACK encode, 1 frame per buffer", measure((n) => encode(1, n))],
  ["ACK encode, 16 frames per buffer", measure((n) => encode(16, n))],
];
console.log(`codec benchmark on ${runtime} (median of ${ROUNDS} × ${PER_ROUND} ops)`);
for (const [label, { ns, sink }] of rows) {
  console.log(`  ${label.padEnd(36)} ${ns.toFixed(1).padStart(7)} ns/frame  (checksum ${sink})`);
}
