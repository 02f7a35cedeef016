import { test } from "node:test";
import assert from "node:assert/strict";
import { createLogger, Level } from "../lib/agent/log.ts";

const FIXED = new Date("2026-11-26T10:00:00.000Z");

function capture(level?: Level, name?: string) {
  const lines: string[] = [];
  const log = createLogger({
    sink: (line) => lines.push(line),
    now: () => FIXED,
    ...(level === undefined ? {} : { level }),
    ...(name === undefined ? {} : { name }),
  });
  return { log, lines };
}

test("createLogger() writes time, level, name and message on one line", () => {
  const { log, lines } = capture(Level.DEBUG, "worker 1");
  log.error("a");
  log.warn("b");
  log.info("c");
  log.debug("d");
  assert.deepEqual(lines, [
    "2026-11-26T10:00:00.000Z error [worker 1] a",
    "2026-11-26T10:00:00.000Z warn [worker 1] b",
    "2026-11-26T10:00:00.000Z info [worker 1] c",
    "2026-11-26T10:00:00.000Z debug [worker 1] d",
  ]);
});

test("createLogger() leaves out levels above the one chosen, info by default", () => {
  const { log, lines } = capture();
  log.debug("hidden");
  log.info("shown");
  assert.equal(log.debugEnabled, false);
  assert.deepEqual(lines, ["2026-11-26T10:00:00.000Z info shown"]);
  const quiet = capture(Level.ERROR);
  quiet.log.warn("hidden");
  quiet.log.error("shown");
  assert.deepEqual(quiet.lines, ["2026-11-26T10:00:00.000Z error shown"]);
});

test("Logger.child() appends to the name and keeps level and sink", () => {
  const { log, lines } = capture(Level.DEBUG, "main");
  const conn = log.child("#7");
  assert.equal(conn.debugEnabled, true);
  conn.debug("frame");
  assert.deepEqual(lines, ["2026-11-26T10:00:00.000Z debug [main #7] frame"]);
  const bare = capture(Level.INFO);
  bare.log.child("#1").info("x");
  assert.deepEqual(bare.lines, ["2026-11-26T10:00:00.000Z info [#1] x"]);
});
