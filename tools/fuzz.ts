/**
 * The session fuzzer at scale (`tests/_fuzz.ts`): runs many seeded cases,
 * prints progress, the seed, the rate and the heap at start and end, and on a
 * failure prints the reproducible case (seed, index, options, reads, input in
 * hex, and a shrunk input when the bytes alone reproduce it), then exits 1.
 *
 * Usage:
 *
 * ```sh
 * deno run -A --v8-flags=--expose-gc tools/fuzz.ts [--cases N] [--seed S] [--seconds T]
 * deno run -A tools/fuzz.ts --seed S --index I     # replay one case, with the session's log
 * bun tools/fuzz.ts --cases 100000
 * ```
 *
 * `--cases` defaults to 1,000,000; `--seed` to a random one (printed);
 * `--seconds` stops early; `--start` skips to a case index; `--keep-going`
 * reports every failure instead of stopping at the first; `--strict` counts
 * known lib issues as failures.
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import v8 from "node:v8";
import vm from "node:vm";
import {
  count,
  describe,
  execute,
  failed,
  generateCase,
  KNOWN_ISSUES,
  newTally,
  type Outcome,
  reproduce,
  runCase,
  STRICT,
  type Tally,
} from "../tests/_fuzz.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    cases: { type: "string", default: "1000000" },
    seed: { type: "string" },
    seconds: { type: "string" },
    start: { type: "string", default: "0" },
    index: { type: "string" },
    "keep-going": { type: "boolean", default: false },
    strict: { type: "boolean", default: false },
  },
});

function integer(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) {
    console.error(`--${name} must be a non-negative integer, got "${text}"`);
    process.exit(2);
  }
  return n;
}

const seed = integer("seed", values.seed, crypto.getRandomValues(new Uint32Array(1))[0]!) >>> 0;
const cases = integer("cases", values.cases, 1_000_000);
const seconds = integer("seconds", values.seconds, 0);
const start = integer("start", values.start, 0);
STRICT.knownIssuesFail = values.strict;

/** A full garbage collection, when the runtime lets us ask for one. */
function findGc(): (() => void) | undefined {
  const bun = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun;
  if (bun !== undefined) return () => bun.gc(true);
  const global = (globalThis as { gc?: () => void }).gc;
  if (typeof global === "function") return global;
  try {
    v8.setFlagsFromString("--expose-gc");
    return vm.runInNewContext("gc") as () => void;
  } catch {
    return undefined;
  }
}
const gc = findGc();

function heapMb(): string {
  gc?.();
  return (process.memoryUsage().heapUsed / 1e6).toFixed(1);
}

const runtime = (globalThis as { Bun?: unknown }).Bun !== undefined ? "bun" : "deno";

// Replay one case with the session's debug log.
if (values.index !== undefined) {
  const index = integer("index", values.index, 0);
  const c = generateCase(seed, index);
  c.logLevel = 3;
  const outcome = await execute(c, false, (line) => console.log(line));
  console.log(describe(outcome, failed(outcome) ? await reproduce(c) : undefined));
  console.log(
    `end: ${outcome.end}, ${outcome.frames} frames written, ${outcome.acks} ACKs, status ${
      outcome.status ?? "none"
    }`,
  );
  process.exit(failed(outcome) ? 1 : 0);
}

// Rejections nobody handled are failures of the case that was running.
let current = -1;
const unhandled: string[] = [];
process.on("unhandledRejection", (reason: unknown) => {
  unhandled.push(`case ${current}: unhandled rejection: ${String(reason)}`);
});
process.on("uncaughtException", (err: unknown) => {
  unhandled.push(
    `case ${current}: uncaught exception: ${err instanceof Error ? err.stack : String(err)}`,
  );
});

function summary(t: Tally, elapsed: number): string {
  const known = Object.entries(t.known).map(([k, n]) => `${k} ${n}`).join(", ") || "none";
  return `${t.cases} cases in ${elapsed.toFixed(1)} s (${(t.cases / elapsed).toFixed(0)}/s), ` +
    `${t.failures} failures, known issues: ${known}`;
}

console.log(
  `fuzz: ${runtime}, seed ${seed}, cases ${start}..${start + cases - 1}` +
    (seconds > 0 ? `, at most ${seconds} s` : "") + `, gc ${gc ? "on" : "off"}`,
);
const heapStart = heapMb();
console.log(`heap at start: ${heapStart} MB`);

const tally = newTally();
const began = performance.now();
let lastReport = began;
let failures = 0;
for (let i = start; i < start + cases; i++) {
  current = i;
  const outcome: Outcome = await runCase(seed, i);
  count(tally, outcome);
  if (unhandled.length > 0) {
    outcome.violations.push(
      ...unhandled.splice(0).map((detail) => ({ code: "unhandled", detail })),
    );
    if (!failed(outcome)) tally.failures++;
  }
  if (failed(outcome)) {
    failures++;
    console.log(describe(outcome, await reproduce(outcome.case)));
    if (!values["keep-going"]) break;
  }
  const now = performance.now();
  if (now - lastReport >= 5000) {
    lastReport = now;
    console.log(
      `  ${summary(tally, (now - began) / 1000)}, heap ${
        (process.memoryUsage().heapUsed / 1e6).toFixed(1)
      } MB`,
    );
  }
  if (seconds > 0 && now - began >= seconds * 1000) break;
}
const elapsed = (performance.now() - began) / 1000;
// Let a last unhandled rejection surface.
await new Promise((resolve) => setTimeout(resolve, 10));
if (unhandled.length > 0) {
  failures++;
  for (const u of unhandled) console.log(u);
}

console.log(summary(tally, elapsed));
console.log(`seed ${seed}; reproduce a case: deno run -A tools/fuzz.ts --seed ${seed} --index <i>`);
console.log(
  `coverage: levels ${tally.levels.join("/")} (valid/light/heavy), ends ${
    JSON.stringify(tally.ends)
  }, ` +
    `${tally.frames} frames written, ${tally.acks} ACKs, ${tally.handlerCalls} handler calls, ` +
    `${(tally.inputBytes / 1e6).toFixed(1)} MB of input`,
);
console.log(`agent DISCONNECT statuses: ${JSON.stringify(tally.statuses)}`);
for (const k of Object.keys(tally.known)) console.log(`known issue ${k}: ${KNOWN_ISSUES[k]}`);
console.log(
  `heap at start ${heapStart} MB, at end ${heapMb()} MB${gc ? " (after gc)" : " (no gc)"}`,
);
process.exit(failures > 0 ? 1 : 0);
