/**
 * An agent module's `setup` and `routes` exports: what `setup` shares reaches
 * every worker, a reload replaces it everywhere, and routes answer on the
 * metrics endpoint with the latest value. On this thread and on workers.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { AgentModuleError, createLogger, serve } from "../lib/mod.ts";
import { FrameType } from "../lib/spop.ts";
import { SpopClient } from "./_spop_client.ts";

const DIR = mkdtempSync(path.join(tmpdir(), "spoa-setup-"));
after(() => rmSync(DIR, { recursive: true, force: true }));
const quiet = createLogger({ sink: () => {} });
/** `deno test` type-checks each new Worker's module: loads take seconds there. */
const LOAD_MS = 30_000;

function module(name: string, source: string): URL {
  const file = path.join(DIR, name);
  writeFileSync(file, source);
  return pathToFileURL(file);
}

/**
 * Shares `{ version, hits }`: `hits` is shared memory every worker counts
 * into; a reload publishes the next version (and keeps the memory).
 */
const VERSIONED = module(
  "versioned.mjs",
  `export async function setup(context) {
    let version = 1;
    const hits = new Int32Array(new SharedArrayBuffer(4));
    context.onReload(() => context.publish({ version: ++version, hits, label: context.args[0] }));
    return { version, hits, label: context.args[0] };
  }
  export const routes = {
    "/version": (request, shared) => Response.json({
      version: shared.version,
      hits: Atomics.load(shared.hits, 0),
      q: new URL(request.url).searchParams.get("q"),
    }),
    "/teapot": () => new Response("short and stout\\n", { status: 418 }),
    "/broken": () => { throw new Error("route failed"); },
  };
  export default (context) => ({
    which(message, reply) {
      Atomics.add(context.shared.hits, 0, 1);
      reply.setVar("txn", "version", context.shared.version, context.DataType.UINT32);
      reply.setVar("txn", "label", context.shared.label);
    },
  });`,
);

async function which(port: number, streamId: number): Promise<Map<string, unknown>> {
  const client = await SpopClient.connect(port);
  try {
    await client.hello();
    const ack = await client.notify(streamId, 1, [{ name: "which", args: [] }]);
    assert.equal(ack.type, FrameType.ACK);
    return new Map((ack.actions ?? []).map((a) => [a.name, a.value]));
  } finally {
    await client.close();
  }
}

for (const workers of [0, 2]) {
  test(`serve(module) with workers: ${workers} shares setup's value, reloads it and serves routes`, async () => {
    const server = await serve(VERSIONED, {
      workers,
      hostname: "127.0.0.1",
      port: 0,
      args: ["blue"],
      log: quiet,
      metrics: { port: 0 },
    });
    const http = `http://127.0.0.1:${server.metricsPort}`;
    try {
      // Every connection (spread over the workers) sees version 1.
      for (let i = 1; i <= 4; i++) {
        const vars = await which(server.port, i);
        assert.equal(vars.get("version"), 1);
        assert.equal(vars.get("label"), "blue");
      }
      server.reload!();
      // Once the new value reached every worker, every connection sees version 2.
      const deadline = Date.now() + LOAD_MS;
      let inARow = 0;
      for (let id = 10; inARow < 8; id++) {
        assert.ok(Date.now() < deadline, "every worker on version 2");
        inARow = (await which(server.port, id)).get("version") === 2 ? inARow + 1 : 0;
      }
      const answer = await (await fetch(`${http}/version?q=x`)).json();
      assert.equal(answer.version, 2);
      assert.equal(answer.q, "x");
      // The shared memory is one: every worker's hits are in it.
      assert.ok(answer.hits >= 8, `hits ${answer.hits}`);
      const teapot = await fetch(`${http}/teapot`);
      assert.equal(teapot.status, 418);
      assert.equal(await teapot.text(), "short and stout\n");
      const broken = await fetch(`${http}/broken`);
      assert.equal(broken.status, 500);
      await broken.body?.cancel();
      const post = await fetch(`${http}/version`, { method: "POST", body: "x" });
      assert.equal(post.status, 405);
      await post.body?.cancel();
      assert.equal((await fetch(`${http}/metrics`)).status, 200);
    } finally {
      await server.shutdown();
    }
  });
}

test("serve() refuses a module whose setup or routes cannot be used", async () => {
  const cases: [string, string, string][] = [
    [
      "setup-throws.mjs",
      `export function setup() { throw new Error("no config"); }
       export default { m() {} };`,
      "its setup failed: no config",
    ],
    [
      "setup-rejects.mjs",
      `export async function setup() { throw new Error("list missing"); }
       export default { m() {} };`,
      "its setup failed: list missing",
    ],
    [
      "setup-value.mjs",
      "export const setup = 5; export default { m() {} };",
      "its setup export is a number",
    ],
    [
      "setup-clone.mjs",
      "export const setup = () => ({ f() {} }); export default { m() {} };",
      "its setup failed: Cannot share the value setup returned: workers cannot get a copy of it",
    ],
    [
      "routes-own.mjs",
      'export const routes = { "/metrics": () => new Response("") }; export default { m() {} };',
      'its route "/metrics" is not a path of its own',
    ],
    [
      "routes-value.mjs",
      'export const routes = { "/x": 1 }; export default { m() {} };',
      'its route "/x" is a number, not a function',
    ],
    [
      "routes-array.mjs",
      "export const routes = []; export default { m() {} };",
      "its routes export is an array",
    ],
  ];
  for (const [name, source, reason] of cases) {
    const url = module(name, source);
    for (const workers of [0, 2]) {
      await assert.rejects(
        serve(url, { workers, hostname: "127.0.0.1", port: 0, log: quiet }),
        (err: unknown) => {
          assert.ok(err instanceof AgentModuleError, String(err));
          assert.ok(err.message.includes(reason), `${name}: ${err.message}`);
          return true;
        },
      );
    }
  }
});

test("a module's publish of a value workers cannot get is refused where it is made", async () => {
  const url = module(
    "publish-bad.mjs",
    `export function setup(context) {
      context.onReload(() => {
        try {
          context.publish({ handler() {} });
          globalThis.publishOutcome = "published";
        } catch (err) {
          globalThis.publishOutcome = err.name;
        }
      });
      return { ok: true };
    }
    export default (context) => ({ m(message, reply) { reply.setVar("txn", "ok", context.shared.ok); } });`,
  );
  const server = await serve(url, { hostname: "127.0.0.1", port: 0, log: quiet });
  try {
    server.reload!();
    assert.equal((globalThis as Record<string, unknown>).publishOutcome, "DataCloneError");
  } finally {
    await server.shutdown();
  }
});
