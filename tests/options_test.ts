/**
 * Options are checked where they enter: `serve()` refuses what the command
 * line would, with an error naming the option, before anything listens.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Agent, createLogger, Level, serve, type ServeOptions } from "../lib/mod.ts";
import { sessionConfig } from "../lib/agent/options.ts";
import { DEFAULT_REFERENCE_KNOBS, DEFAULT_SESSION_OPTIONS } from "../lib/agent/session.ts";

const quiet = createLogger({ level: Level.ERROR, sink: () => {} });

/** Options that would start a server, with one value changed. */
function withValue(extra: Record<string, unknown>): ServeOptions {
  return { hostname: "127.0.0.1", port: 0, log: quiet, ...extra } as ServeOptions;
}

const OUT_OF_RANGE: [option: string, value: unknown, message: RegExp][] = [
  [
    "maxFrameSize",
    100,
    /^Cannot use maxFrameSize 100: it must be an integer from 256 to 16777216$/,
  ],
  ["maxFrameSize", 16777217, /maxFrameSize 16777217/],
  ["maxFrameSize", 1000.5, /maxFrameSize 1000\.5: it must be an integer/],
  ["maxInFlight", 0, /^Cannot use maxInFlight 0: it must be an integer of at least 1$/],
  ["maxQueuedBytes", -1, /maxQueuedBytes -1/],
  ["maxReassembledSize", 10, /maxReassembledSize 10/],
  ["maxLateHandlers", 0, /maxLateHandlers 0/],
  ["handlerTimeout", -1, /^Cannot use handlerTimeout -1: it must be 0 or more milliseconds$/],
  ["handlerTimeout", Infinity, /handlerTimeout Infinity/],
  ["helloTimeout", 0, /^Cannot use helloTimeout 0: it must be at least 1 milliseconds$/],
  ["frameTimeout", NaN, /frameTimeout NaN/],
  ["maxConnections", 0, /^Cannot use maxConnections 0: it must be an integer of at least 1$/],
  ["port", 70000, /^Cannot use port 70000: it must be an integer from 0 to 65535$/],
  ["port", -1, /port -1/],
];

for (const [option, value, message] of OUT_OF_RANGE) {
  test(`serve() rejects ${option} ${String(value)} with a RangeError naming it`, async () => {
    await assert.rejects(serve(new Agent(), withValue({ [option]: value })), (err: unknown) => {
      assert.ok(err instanceof RangeError, String(err));
      assert.match(err.message, message);
      return true;
    });
  });
}

const WRONG_TYPE: [option: string, value: unknown, message: RegExp][] = [
  ["pipelining", "yes", /^Cannot use pipelining "yes": it must be a boolean$/],
  ["emptyAcks", 1, /emptyAcks 1: it must be a boolean/],
  ["maxFrameSize", "16384", /maxFrameSize "16384": it must be a number/],
  ["hostname", "", /^Cannot use hostname "": it must be a non-empty string$/],
  ["maxInflight", 5, /^Cannot use option "maxInflight": serve\(\) has no such option$/],
  ["replyDelay", 5, /option "replyDelay": serve\(\) has no such option/],
];

for (const [option, value, message] of WRONG_TYPE) {
  test(`serve() rejects ${option} ${JSON.stringify(value)} with a TypeError naming it`, async () => {
    await assert.rejects(serve(new Agent(), withValue({ [option]: value })), (err: unknown) => {
      assert.ok(err instanceof TypeError, String(err));
      assert.match(err.message, message);
      return true;
    });
  });
}

test("serve() takes the reference agent's test knobs apart, under `reference`", async () => {
  await assert.rejects(
    serve(new Agent(), withValue({ reference: { replyDelay: -5 } })),
    /^RangeError: Cannot use replyDelay -5: it must be 0 or more milliseconds$/,
  );
  await assert.rejects(
    serve(new Agent(), withValue({ reference: { closeAfter: 1 } })),
    /^TypeError: Cannot use option "closeAfter": reference has no such option$/,
  );
  const server = await serve(new Agent(), withValue({ reference: { closeAfterFrames: 3 } }));
  await server.shutdown(100);
});

test("serve() rejects an agent that is not an Agent", async () => {
  const handlers = { "check-client-ip": () => {} };
  await assert.rejects(
    serve(handlers as unknown as Agent, withValue({})),
    /^TypeError: Cannot serve: pass an Agent, or an agent module.s URL or path/,
  );
});

test("sessionConfig() fills in every default and keeps the knobs off", () => {
  assert.deepEqual(sessionConfig({}), { ...DEFAULT_SESSION_OPTIONS, ...DEFAULT_REFERENCE_KNOBS });
  assert.equal(sessionConfig({ maxFrameSize: 256 }).maxFrameSize, 256);
  assert.equal(sessionConfig({}, { replyDelay: 10 }).replyDelay, 10);
  assert.throws(() => sessionConfig({ maxInFlight: 0 }), RangeError);
});

test("Agent.on() rejects a handler that is not a function", () => {
  assert.throws(
    () => new Agent().on("m", "nope" as unknown as () => void),
    /^TypeError: Cannot register handler for message "m": it is not a function$/,
  );
});
