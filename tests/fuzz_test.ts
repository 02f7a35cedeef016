import { test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import v8 from "node:v8";
import vm from "node:vm";
import {
  count,
  decodeVarint,
  describe,
  encodeVarint,
  failed,
  newTally,
  reproduce,
  Rng,
  runCase,
} from "./_fuzz.ts";

/**
 * 10,000 seeded cases of the session fuzzer (`./_fuzz.ts`), in tests of
 * 1,000. A failure prints the case (seed, index, options, reads, input in
 * hex, shrunk input) ready to paste into a regression test; replay it with
 * `deno run -A tools/fuzz.ts --seed <seed> --index <i>`.
 */
const SEED = 0x5eed_f022;
const CASES = 10_000;
const PER_TEST = 1_000;

const tally = newTally();

/** A full GC: Bun.gc, or V8's gc() exposed at run time (Deno). */
function findGc(): () => void {
  const bun = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun;
  if (bun !== undefined) return () => bun.gc(true);
  v8.setFlagsFromString("--expose-gc");
  return vm.runInNewContext("gc") as () => void;
}
const gc = findGc();
function heapAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}
let heapBaseline = 0;

test("Rng and the spec varint are deterministic and round-trip", () => {
  const a = new Rng(42);
  const b = new Rng(42);
  const seq = Array.from({ length: 8 }, () => a.u32());
  assert.deepEqual(Array.from({ length: 8 }, () => b.u32()), seq);
  assert.notDeepEqual(Array.from({ length: 8 }, () => new Rng(43).u32()), seq);
  for (const v of [0n, 239n, 240n, 2287n, 2288n, 16380n, 2n ** 53n, 2n ** 64n - 1n]) {
    const bytes = new Uint8Array(encodeVarint(v));
    const out = decodeVarint(bytes, 0, bytes.length);
    assert.ok(typeof out !== "string");
    assert.equal(BigInt(out.value), v);
    assert.equal(out.next, bytes.length);
  }
  assert.deepEqual(encodeVarint(16380), [0xfc, 0xf0, 0x06]);
  const over = new Uint8Array(encodeVarint(2n ** 64n));
  assert.equal(decodeVarint(over, 0, over.length), "invalid");
});

for (let k = 0; k < CASES / PER_TEST; k++) {
  const from = k * PER_TEST;
  const to = from + PER_TEST;
  test(`Session keeps every invariant on fuzz cases ${from}..${to - 1} (seed ${SEED})`, async () => {
    for (let i = from; i < to; i++) {
      const outcome = await runCase(SEED, i);
      count(tally, outcome);
      if (failed(outcome)) assert.fail(describe(outcome, await reproduce(outcome.case)));
    }
    if (k === 0) heapBaseline = heapAfterGc();
  });
}

test("The fuzz cases reach every ending and leave the heap flat", () => {
  assert.equal(tally.cases, CASES);
  assert.equal(tally.failures, 0);
  // The generator still produces every kind of case (a vacuous fuzzer passes too).
  for (
    const end of [
      "error",
      "drain",
      "peer",
      "healthcheck",
      "timeout",
      "frame-timeout",
      "abort",
      "peer-close",
    ]
  ) {
    assert.ok(
      (tally.ends[end] ?? 0) >= 10,
      `ending "${end}" reached ${tally.ends[end] ?? 0} times`,
    );
  }
  assert.ok(tally.levels.every((n) => n >= CASES / 10), `levels ${tally.levels}`);
  assert.ok(tally.acks >= CASES, `${tally.acks} ACKs`);
  for (const status of ["0", "2", "3", "4", "10", "11"]) {
    assert.ok((tally.statuses[status] ?? 0) > 0, `no AGENT-DISCONNECT with status ${status}`);
  }
  // 9,000 cases after the first 1,000 retain nothing (sessions, buffers, promises).
  const growth = heapAfterGc() - heapBaseline;
  assert.ok(growth < 16e6, `heap grew by ${(growth / 1e6).toFixed(1)} MB over 9,000 cases`);
});
