/**
 * `serve()` from `lib/mod.ts` runs an agent module by URL, on this thread or
 * on worker threads, with the same checks as the command line.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { Agent, AgentModuleError, createLogger, serve } from "../lib/mod.ts";
import { DataType, FrameType } from "../lib/spop.ts";
import { SpopClient } from "./_spop_client.ts";

const DIR = mkdtempSync(path.join(tmpdir(), "spoa-serve-"));
after(() => rmSync(DIR, { recursive: true, force: true }));
const quiet = createLogger({ sink: () => {} });

function module(name: string, source: string): URL {
  const file = path.join(DIR, name);
  writeFileSync(file, source);
  return pathToFileURL(file);
}

const WORKER_ID = module(
  "worker-id.mjs",
  `export default (context) => ({
    whoami(message, reply) {
      reply.setVar("txn", "worker", context.workerId, context.DataType.UINT32);
      reply.setVar("txn", "arg", context.args.join(","));
    },
  });`,
);

async function whoami(port: number): Promise<Map<string, unknown>> {
  const client = await SpopClient.connect(port);
  try {
    await client.hello();
    const ack = await client.notify(1, 1, [{ name: "whoami", args: [] }]);
    assert.equal(ack.type, FrameType.ACK);
    return new Map((ack.actions ?? []).map((a) => [a.name, a.value]));
  } finally {
    await client.close();
  }
}

test("serve(url) runs an agent module on this thread", async () => {
  const server = await serve(WORKER_ID, {
    hostname: "127.0.0.1",
    port: 0,
    args: ["a"],
    log: quiet,
  });
  try {
    const vars = await whoami(server.port);
    assert.equal(vars.get("worker"), 0);
    assert.equal(vars.get("arg"), "a");
    assert.equal(typeof server.connections, "number");
  } finally {
    await server.shutdown();
  }
});

test("serve(url, { workers: 3 }) runs the module in every worker, in both dispatch modes", async () => {
  for (const dispatch of ["streams", "reuseport"] as const) {
    const server = await serve(WORKER_ID, {
      workers: 3,
      dispatch,
      hostname: "127.0.0.1",
      port: 0,
      args: ["x", "y"],
      log: quiet,
    });
    try {
      const seen = new Set<number>();
      for (let i = 0; i < 12; i++) {
        const vars = await whoami(server.port);
        assert.equal(vars.get("arg"), "x,y");
        seen.add(Number(vars.get("worker")));
      }
      if (dispatch === "streams") assert.deepEqual([...seen].sort(), [1, 2, 3]);
      else assert.ok([...seen].every((id) => id >= 1 && id <= 3), [...seen].join());
      assert.equal(server.connections, undefined);
    } finally {
      await server.shutdown(1000);
    }
  }
});

test("serve() rejects a module that cannot be used, on this thread and in workers", async () => {
  const bad = module("bad.mjs", "export default 7;");
  for (const workers of [1, 2]) {
    await assert.rejects(
      serve(bad, { workers, hostname: "127.0.0.1", port: 0, log: quiet }),
      (err: Error) => {
        assert.match(
          err.message,
          /^Cannot load agent module .*bad\.mjs: its default export is a number/,
        );
        if (workers === 1) assert.ok(err instanceof AgentModuleError);
        return true;
      },
    );
  }
});

test("serve() checks workers, dispatch and args, and refuses an Agent object on workers", async () => {
  const agent = new Agent().on("m", () => {});
  await assert.rejects(serve(WORKER_ID, { workers: -1 }), /Cannot use workers -1/);
  await assert.rejects(serve(WORKER_ID, { workers: 1.5 }), RangeError);
  // @ts-expect-error: a dispatch mode that does not exist
  await assert.rejects(serve(WORKER_ID, { dispatch: "fork" }), /Cannot use dispatch "fork"/);
  // @ts-expect-error: args must be strings
  await assert.rejects(serve(WORKER_ID, { args: [1] }), /Cannot use args/);
  await assert.rejects(serve(agent, { workers: 2 }), /pass its module's URL instead/);
  await assert.rejects(serve(WORKER_ID, { workers: 2, maxFrameSize: 10 }), /maxFrameSize 10/);
  // @ts-expect-error: neither an Agent nor a URL
  await assert.rejects(serve(42), /pass an Agent, or an agent module's URL or path/);
  assert.equal(typeof DataType.UINT32, "number");
});
