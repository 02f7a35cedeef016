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

test("createLogger({ format: 'json' }) writes objects with the name's and the call's fields", () => {
  const lines: string[] = [];
  const log = createLogger({
    format: "json",
    name: "worker 3",
    sink: (line) => lines.push(line),
    now: () => new Date(0),
  });
  const conn = log.child("#12", { peer: "10.0.0.5:41000" });
  conn.warn("closing", { status: 2, stream_id: 2n ** 63n });
  log.child("agent").info("ready");
  log.debug("not written");
  assert.deepEqual(lines.map((line) => JSON.parse(line)), [
    {
      time: "1970-01-01T00:00:00.000Z",
      level: "warn",
      worker: 3,
      connection: 12,
      peer: "10.0.0.5:41000",
      message: "closing",
      status: 2,
      stream_id: "9223372036854775808",
    },
    {
      time: "1970-01-01T00:00:00.000Z",
      level: "info",
      worker: 3,
      component: "agent",
      message: "ready",
    },
  ]);
});

test("createLogger() keeps text lines as they were and refuses an unknown format", () => {
  const lines: string[] = [];
  const log = createLogger({
    name: "main",
    sink: (line) => lines.push(line),
    now: () => new Date(0),
  });
  log.child("#1", { peer: "x" }).info("hello", { status: 0 });
  assert.deepEqual(lines, ["1970-01-01T00:00:00.000Z info [main #1] hello"]);
  // @ts-expect-error: not a format
  assert.throws(() => createLogger({ format: "xml" }), /Cannot use log format "xml"/);
});
