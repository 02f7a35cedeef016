/**
 * `spoa --agent MODULE`: every form of default export runs, on the main
 * thread and in workers of both dispatch modes, and every module that cannot
 * be used ends the command before it listens, with one line on stderr and
 * exit status 1. Runs against `main.ts` and against the compiled binary.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DataType, FrameType } from "../lib/spop.ts";
import { runMain, startAgent } from "./_process.ts";
import { SpopClient } from "./_spop_client.ts";

const DIR = mkdtempSync(path.join(tmpdir(), "spoa-agents-"));
after(() => rmSync(DIR, { recursive: true, force: true }));

const MOD = new URL("../lib/mod.ts", import.meta.url).href;

/** Writes a module into the temporary folder; returns its path. */
function module(name: string, source: string): string {
  const file = path.join(DIR, name);
  writeFileSync(file, source);
  return file;
}

const GREET = { name: "greet", args: [{ name: "who", type: DataType.STRING, value: "ann" }] };

/** Modules that serve `greet`: `txn.greeting`, and the worker id in `txn.worker`. */
const GOOD: Record<string, string> = {
  "an Agent": `
import { Agent, DataType } from ${JSON.stringify(MOD)};
export default new Agent().on("greet", (message, reply) => {
  reply.setVar("txn", "greeting", "hello " + message.string("who"));
});
`,
  "an object of handlers, without imports": `
export default {
  greet(message, reply) {
    reply.setVar("txn", "greeting", "hello " + message.string("who"));
  },
};
`,
  "a function of the context": `
export default (context) => new context.Agent().on("greet", (message, reply) => {
  reply.setVar("txn", "greeting", context.args[0] + " " + message.string("who"));
  reply.setVar("txn", "worker", context.workerId, context.DataType.UINT32);
});
`,
  "an async function returning handlers": `
export default async function (context) {
  await new Promise((resolve) => setTimeout(resolve, 10));
  return {
    greet: async (message, reply) => {
      await Promise.resolve();
      reply.setVar("txn", "greeting", context.args[0] + " " + message.string("who"));
      reply.setVar("txn", "worker", context.workerId, context.DataType.UINT32);
    },
  };
}
`,
};

/** Says HELLO, sends one `greet`, returns the ACK's variables by name. */
async function greet(port: number): Promise<Map<string, unknown>> {
  const client = await SpopClient.connect(port);
  try {
    await client.hello();
    const ack = await client.notify(1, 1, [GREET]);
    assert.equal(ack.type, FrameType.ACK);
    return new Map((ack.actions ?? []).map((a) => [a.name, a.value]));
  } finally {
    await client.close();
  }
}

let n = 0;
for (const [form, source] of Object.entries(GOOD)) {
  const file = module(`good${n++}.mjs`, source);
  const usesArgs = source.includes("context.args");
  for (const workers of ["1", "2"]) {
    for (const dispatch of workers === "1" ? ["reuseport"] : ["reuseport", "streams"]) {
      const where = workers === "1" ? "on the main thread" : `in 2 workers (${dispatch})`;
      test(`spoa --agent runs ${form} ${where}`, async () => {
        const extra = usesArgs ? ["--", "hi"] : [];
        const agent = await startAgent([
          "-n",
          workers,
          "--dispatch",
          dispatch,
          "--agent",
          file,
          ...extra,
        ]);
        try {
          const vars = await greet(agent.port);
          assert.equal(vars.get("greeting"), `${usesArgs ? "hi" : "hello"} ann`);
          if (vars.has("worker")) {
            const id = Number(vars.get("worker"));
            assert.ok(workers === "1" ? id === 0 : id === 1 || id === 2, `worker ${id}`);
          }
          const exit = await agent.stop();
          assert.equal(exit.code, 0, exit.stderr);
          assert.doesNotMatch(exit.stderr, / error /);
        } finally {
          await agent.stop("SIGKILL");
        }
      });
    }
  }
}

test("spoa --agent with -n 4 spreads connections over the workers", async () => {
  const file = module("spread.mjs", GOOD["a function of the context"]!);
  for (const dispatch of ["streams", "reuseport"]) {
    const agent = await startAgent([
      "-n",
      "4",
      "--dispatch",
      dispatch,
      "--agent",
      file,
      "--",
      "hi",
    ]);
    try {
      const seen = new Set<number>();
      for (let i = 0; i < 24; i++) seen.add(Number((await greet(agent.port)).get("worker")));
      // Streams hand connections out in turn; the kernel spreads reuseport by hash.
      if (dispatch === "streams") assert.deepEqual([...seen].sort(), [1, 2, 3, 4]);
      else assert.ok(seen.size >= 2, `reuseport: only workers ${[...seen]} were used`);
      assert.equal((await agent.stop()).code, 0);
    } finally {
      await agent.stop("SIGKILL");
    }
  }
});

test("spoa --agent logs an error thrown by agent code later, and keeps serving", async () => {
  const file = module(
    "throws-later.mjs",
    `export default {
      greet(message, reply) {
        setTimeout(() => reply.setVar("txn", "late", 1), 5);
        reply.setVar("txn", "greeting", "hello " + message.string("who"));
      },
    };`,
  );
  for (const workers of ["1", "2"]) {
    const agent = await startAgent(["-n", workers, "--agent", file]);
    try {
      assert.equal((await greet(agent.port)).get("greeting"), "hello ann");
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal((await greet(agent.port)).get("greeting"), "hello ann");
      const exit = await agent.stop();
      assert.equal(exit.code, 0, exit.stderr);
      assert.match(
        exit.stderr,
        /error .*uncaught error in agent code: .*Cannot set variable "late": its NOTIFY was already acknowledged/,
      );
      assert.doesNotMatch(exit.stderr, /died/);
    } finally {
      await agent.stop("SIGKILL");
    }
  }
});

/** Modules that cannot be used, and the reason each must give. */
const BAD: [name: string, source: string | undefined, reason: RegExp][] = [
  ["missing.mjs", undefined, /missing\.mjs|not found|Cannot find/i],
  ["syntax.mjs", "export default {{ nope", /./],
  ["no-default.mjs", "export const x = 1;", /it has no default export/],
  ["number.mjs", "export default 42;", /its default export is a number: use an Agent/],
  [
    "not-a-function.mjs",
    `export default { greet: "hello" };`,
    /the handler for message "greet" is a string, not a function/,
  ],
  ["empty.mjs", "export default {};", /its default export handles no message/],
  [
    "throws.mjs",
    `export default () => { throw new Error("no database"); };`,
    /its default export threw: .*no database/,
  ],
  [
    "rejects.mjs",
    `export default async () => { throw new Error("no token"); };`,
    /its default export rejected: .*no token/,
  ],
  [
    "returns-function.mjs",
    "export default () => () => {};",
    /its default export returned a function/,
  ],
];

for (const [name, source, reason] of BAD) {
  const file = source === undefined ? path.join(DIR, name) : module(name, source);
  for (const workers of ["0", "3"]) {
    test(`spoa --agent ${name} with -n ${workers} exits 1 with one line before listening`, async () => {
      const { code, stderr } = await runMain([
        "-p",
        "0",
        "-a",
        "127.0.0.1",
        "-n",
        workers,
        "--agent",
        file,
      ]);
      assert.equal(code, 1, stderr);
      const lines = stderr.trim().split("\n");
      assert.equal(lines.length, 1, stderr);
      assert.ok(lines[0]!.startsWith(`spoa: Cannot load agent module ${file}: `), lines[0]);
      assert.match(lines[0]!, reason);
    });
  }
}

test("spoa refuses --seed with --agent, and module arguments without --agent", async () => {
  const file = module("seedless.mjs", GOOD["an object of handlers, without imports"]!);
  const both = await runMain(["--agent", file, "--seed", "3"]);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /^spoa: Cannot use --seed with --agent/);
  const stray = await runMain(["-n", "0", "--", "x"]);
  assert.equal(stray.code, 2);
  assert.match(stray.stderr, /^spoa: Unexpected arguments after --/);
});

test("spoa runs the built-in service as a module too: --agent lib/iprep/agent.ts -- --seed", async () => {
  const builtin = await startAgent(["-n", "0", "--seed", "7"]);
  const explicit = await startAgent([
    "-n",
    "0",
    "--agent",
    "lib/iprep/agent.ts",
    "--",
    "--seed",
    "7",
  ]);
  try {
    const scores: unknown[] = [];
    for (const agent of [builtin, explicit]) {
      const client = await SpopClient.connect(agent.port);
      await client.hello();
      const ack = await client.notify(1, 1);
      scores.push(ack.actions?.[0]?.value);
      await client.close();
    }
    assert.equal(typeof scores[0], "number");
    assert.deepEqual(scores[0], scores[1]);
  } finally {
    await builtin.stop("SIGKILL");
    await explicit.stop("SIGKILL");
  }
  const bad = await runMain(["-n", "0", "--agent", "lib/iprep/agent.ts", "--", "--seed", "x"]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /Cannot load agent module lib\/iprep\/agent\.ts: .*--seed/);
});
