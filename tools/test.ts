/**
 * The whole test suite: static checks (fmt, lint, type check with JSDoc
 * examples), every test under Deno and under Bun, then the process-level
 * suites against the compiled executables. Output streams live;
 * the last line is `N passed, N failed` over everything (`, N skipped`
 * follows when scenarios of one HAProxy generation did not run against the
 * other). Exits 1 when anything failed.
 *
 * The interop suites run once per HAProxy of `SPOA_HAPROXY_BINS` (see
 * `tests/_builds.ts`; Debian's `haproxy` alone when unset); the first lines
 * name them.
 *
 * Run with `npm test` (or `deno task test`); extra arguments are passed to
 * both test runners, e.g. a test file path.
 *
 * @module
 */

import { haproxyBuilds } from "../tests/_builds.ts";

const root = new URL("..", import.meta.url).pathname;
const deno = Deno.execPath();
const bun = `${root}node_modules/bun/bin/bun.exe`;
const only = Deno.args;
const testPaths = only.length > 0 ? only : ["tests/"];

interface Tally {
  name: string;
  passed: number;
  failed: number;
  /** Tests that did not run: scenarios of one HAProxy generation only. */
  skipped: number;
}

/** Runs a command from the repository root, echoing its output as it comes. */
async function run(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; output: string }> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: root,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const decoder = new TextDecoder();
  let output = "";
  const pump = async (stream: ReadableStream<Uint8Array>, sink: typeof Deno.stdout) => {
    for await (const chunk of stream) {
      output += decoder.decode(chunk, { stream: true });
      await sink.write(chunk);
    }
  };
  const [status] = await Promise.all([
    child.status,
    pump(child.stdout, Deno.stdout),
    pump(child.stderr, Deno.stderr),
  ]);
  return { code: status.code, output };
}

function lastNumber(output: string, pattern: RegExp): number | undefined {
  const matches = [...output.matchAll(pattern)];
  const last = matches.at(-1);
  return last ? Number(last[1]) : undefined;
}

/** Turns a runner's summary into counts; a crash without a summary is a failure. */
function tally(
  name: string,
  code: number,
  passed?: number,
  failed?: number,
  skipped?: number,
): Tally {
  const t = { name, passed: passed ?? 0, failed: failed ?? 0, skipped: skipped ?? 0 };
  if (code !== 0 && t.failed === 0) {
    console.error(`${name}: exited with code ${code} without reporting a failed test`);
    t.failed = 1;
  }
  if (passed === undefined && code === 0) {
    console.error(`${name}: no test summary found`);
    t.failed += 1;
  }
  return t;
}

const tallies: Tally[] = [];

console.log("== HAProxy builds for the interop suites (SPOA_HAPROXY_BINS)");
for (const b of haproxyBuilds()) {
  console.log(`   ${b.bin}: ${b.error ?? `${b.label}${b.legacy ? "" : " (3.1+ SPOE engine)"}`}`);
}

const staticChecks: [string, string[]][] = [
  ["deno fmt --check", ["fmt", "--check"]],
  ["deno lint", ["lint"]],
  ["deno check --doc", ["check", "--doc", "."]],
  ["deno check --doc-only README.md", ["check", "--doc-only", "README.md"]],
  // Every exported symbol documented, every type a public signature names exported.
  ["deno doc --lint lib/mod.ts", ["doc", "--lint", "lib/mod.ts"]],
];
const statics: Tally = { name: "static checks", passed: 0, failed: 0, skipped: 0 };
for (const [label, args] of staticChecks) {
  console.log(`\n== ${label}`);
  const { code } = await run(deno, args);
  if (code === 0) statics.passed++;
  else {
    statics.failed++;
    console.error(`${label}: FAILED (exit ${code})`);
  }
}
tallies.push(statics);

console.log("\n== deno test");
{
  const { code, output } = await run(deno, ["test", "--allow-all", ...testPaths]);
  tallies.push(
    tally(
      "deno",
      code,
      lastNumber(output, /\|\s+(\d+) passed/g),
      lastNumber(output, /\|\s+(\d+) failed/g),
      lastNumber(output, /\|\s+(\d+) ignored/g),
    ),
  );
}

console.log("\n== bun test");
{
  const { code, output } = await run(bun, ["test", ...testPaths]);
  tallies.push(
    tally(
      "bun",
      code,
      lastNumber(output, /^\s*(\d+) pass$/gm),
      lastNumber(output, /^\s*(\d+) fail$/gm),
      lastNumber(output, /^\s*(\d+) skip$/gm),
    ),
  );
}

/**
 * The suites that start the agent as a process, run again against compiled
 * executables: the Bun one always (`bun build --compile` works offline), the
 * Deno one when a `denort` runtime is at hand (`DENORT_BIN`; `deno compile`
 * otherwise downloads it from Deno's server, which our machines cannot reach).
 */
const BINARY_SUITES = [
  "tests/interop_test.ts",
  "tests/cli_test.ts",
  "tests/pool_test.ts",
  "tests/hostile_test.ts",
  "tests/agent_module_test.ts",
  "tests/unix_test.ts",
  "tests/tls_test.ts",
  "tests/iprep_cli_test.ts",
  "tests/iprep_interop_test.ts",
];

async function binarySuite(name: string, task: string, binary: string): Promise<void> {
  console.log(`\n== ${name}: deno task ${task}`);
  const built = await run(deno, ["task", task]);
  if (built.code !== 0) {
    console.error(`${name}: the build failed (exit ${built.code})`);
    tallies.push({ name, passed: 0, failed: 1, skipped: 0 });
    return;
  }
  console.log(`\n== ${name}: bun test with SPOA_AGENT_BIN=${binary}`);
  const { code, output } = await run(bun, ["test", ...BINARY_SUITES], {
    SPOA_AGENT_BIN: `${root}${binary}`,
  });
  tallies.push(
    tally(
      name,
      code,
      lastNumber(output, /^\s*(\d+) pass$/gm),
      lastNumber(output, /^\s*(\d+) fail$/gm),
      lastNumber(output, /^\s*(\d+) skip$/gm),
    ),
  );
}

if (only.length === 0) {
  await binarySuite("bun binary", "compile:bun", "dist/spoa-bun");
  if (Deno.env.get("DENORT_BIN")) await binarySuite("deno binary", "compile", "dist/spoa");
  else {
    console.log(
      "\n== deno binary: not built: DENORT_BIN is not set and Deno's download server is " +
        "unreachable here; .github/workflows/release.yml builds and smoke-tests it",
    );
  }
}

/** `N passed, N failed`, with `, N skipped` when some tests did not run. */
function summary(t: { passed: number; failed: number; skipped: number }): string {
  const skipped = t.skipped > 0 ? `, ${t.skipped} skipped` : "";
  return `${t.passed} passed, ${t.failed} failed${skipped}`;
}

console.log("");
for (const t of tallies) console.log(`${t.name}: ${summary(t)}`);
console.log(summary({
  passed: tallies.reduce((n, t) => n + t.passed, 0),
  failed: tallies.reduce((n, t) => n + t.failed, 0),
  skipped: tallies.reduce((n, t) => n + t.skipped, 0),
}));
const failed = tallies.reduce((n, t) => n + t.failed, 0);
Deno.exitCode = failed > 0 ? 1 : 0;
