/**
 * End to end: HTTP load from `wrk` (keep-alive connections) through HAProxy
 * with the per-request SPOE configuration, where every HTTP request waits for
 * the agent's score. For each HAProxy it is given (every build of
 * `SPOA_HAPROXY_BINS`, `tests/_builds.ts`; Debian's `haproxy` when unset),
 * it compares
 *
 * - HAProxy alone: the same frontend without the `filter spoe` line
 *   (`bench/e2e/alone.cfg`), answering the same small 200 response;
 * - HAProxy + spoa on Deno and + spoa on Bun (`-n 1`; with `--workers 1,2`
 *   also `-n 2`; with `--transport tcp,unix` each over TCP and over a Unix
 *   socket, `-a unix:PATH` and HAProxy's `server ... unix@PATH`);
 * - HAProxy + HAProxy's C example agent (`SPOA_C_AGENT_BIN`, `-n 1 -c
 *   pipelining`, over TCP), left out with a note when that is unset;
 * - on request only (`--runtime floor-c,floor-deno,floor-bun`), HAProxy + a
 *   floor agent (`bench/floor/`): fixed answers, no parsing, one read and one
 *   write per ready connection, in C (built with `cc`) or on a runtime: what
 *   any agent pays the kernel and the runtime, below spoa's own work.
 *
 * The cells with an agent use `bench/e2e/request.cfg` and
 * `bench/e2e/spoe-request.conf`: the shipped `haproxy/haproxy-request.cfg` and
 * `haproxy/spoe-iprep-request.conf` with `maxconn` (agent server) and
 * `timeout processing` as parameters (`--maxconn`, `--timeout-processing`);
 * `--shipped` uses the shipped files unchanged instead, and `--setup
 * NAME=CONFIG,SPOE` (repeatable) runs every agent cell with each given pair
 * of files (to compare configurations in one interleaved run; the files see
 * the same environment variables as `bench/e2e/request.cfg`).
 *
 * Each repetition starts every cell on a fresh HAProxy (and agent) on free
 * ports, then for each connection count runs wrk once to warm up and once
 * measured (`wrk --latency`). Cells are interleaved within a repetition so
 * that a disturbance spreads over all of them; tables show medians, and the
 * ratio to HAProxy alone also its range over the repetitions (each against
 * the same repetition alone).
 *
 * Responses are counted from HAProxy's stats (frontend `hrsp_2xx`, `hrsp_4xx`,
 * `hrsp_5xx`, others): in this frontend a 4xx is the 403 of a score below 20
 * (answered, not an error) and a 5xx the 500 "spoe_error=N" of a failed SPOE
 * exchange. `--lua` counts in wrk instead, by status and body
 * (`bench/e2e/status.lua`), which costs wrk CPU. wrk's own "Non-2xx or 3xx"
 * count and socket errors are checked against them.
 *
 * CPU: utime+stime of HAProxy, the agent and wrk (whole processes, all
 * threads, `/proc/<pid>/stat`) over the measured run minus its first second
 * and last half second, as % of one core, and per request HAProxy answered in
 * that window; "other" is the machine's busy time (`/proc/stat`, with irq and
 * softirq) minus those processes and this script: other work on the machine,
 * which disturbs the figures when large.
 *
 * ```sh
 * node_modules/deno/deno run -A bench/e2e.ts [--runtime deno,bun,c[,floor-c,floor-deno,floor-bun]] [--workers 1[,2]]
 *   [-c 50] [--reps 3] [--seconds 5] [--warmup 1] [--wrk-threads 2]
 *   [--maxconn 100] [--timeout-processing 1s] [--shipped] [--setup NAME=CONFIG,SPOE]...
 *   [--lua] [--no-alone] [--transport tcp[,unix]] [--nbthread N] [--agent-arg <arg>]...
 *   [--wait-idle <seconds>] [--retries 1] [--budget 900] [--json <file>]
 * ```
 *
 * A measured run during which other processes used more than 15 % of a core
 * is measured again up to `--retries` times (the least disturbed attempt is
 * kept) as long as the whole run still fits in `--budget` seconds (planned
 * runs are never cut), and `--wait-idle N` waits up to N seconds for a quiet
 * machine before each HAProxy start and each retry. Cells still disturbed are
 * marked and named in the notes. With two HAProxy builds the defaults take
 * about 4 minutes on a quiet machine.
 *
 * `--json FILE` writes the options, every run, the summaries (the rows
 * `bench/charts.ts` draws) and the notes.
 *
 * Needs `haproxy` and `wrk` (`apt-get install -y haproxy wrk`). Processes are
 * started and stopped by PID; Ctrl-C stops them too.
 *
 * @module
 */

import { exitUsage, fmt, list, live, parseFlags, waitIdle } from "./_bench.ts";
import { C_AGENT_ARGS, cAgentBin } from "./_bench.ts";
import { haproxyBuilds, usable } from "../tests/_builds.ts";
import { measure, type MeasureOptions, type Run, WINDOW_SKIP_MS } from "./e2e/measure.ts";
import { OTHER_CPU_WARN_PCT, summarize, tables } from "./e2e/report.ts";
import {
  AGENT_KINDS,
  type AgentKind,
  agentName,
  type Setup,
  type Stack,
  type StackOptions,
  startStack,
  stopStack,
  type Variant,
} from "./e2e/stack.ts";

const USAGE =
  `Usage: e2e.ts [--runtime deno,bun,c[,floor-c,floor-deno,floor-bun]] [--workers 1[,2]] [--transport tcp[,unix]] [-c 50] [--reps 3]
              [--seconds 5] [--warmup 1] [--wrk-threads 2] [--maxconn 100]
              [--timeout-processing 1s] [--shipped] [--setup NAME=CONFIG,SPOE]... [--lua]
              [--no-alone] [--nbthread N] [--agent-arg <arg>]... [--wait-idle <seconds>]
              [--retries 1] [--budget 900] [--json <file>]`;

const BENCH_SETUP: Setup = {
  name: "bench",
  config: "bench/e2e/request.cfg",
  spoe: "bench/e2e/spoe-request.conf",
};
const SHIPPED_SETUP: Setup = {
  name: "shipped",
  config: "haproxy/haproxy-request.cfg",
  spoe: "haproxy/spoe-iprep-request.conf",
};
/** With --wait-idle, the busy CPU (% of one core) under which the machine counts as idle. */
const IDLE_PCT = 20;

interface Options extends MeasureOptions, StackOptions {
  agents: AgentKind[];
  workers: number[];
  /** How HAProxy reaches spoa: TCP, a Unix socket, or both (one cell each). */
  transports: ("tcp" | "unix")[];
  connections: number[];
  reps: number;
  setups: Setup[];
  alone: boolean;
  waitIdle: number;
  retries: number;
  budget: number;
  json: string | undefined;
}

function usage(message: string): never {
  return exitUsage("e2e", USAGE, message);
}

function parseSetup(text: string): Setup {
  const m = /^([\w.-]+)=([^,]+),([^,]+)$/.exec(text);
  if (!m) usage(`--setup takes NAME=CONFIG,SPOE, not "${text}"`);
  for (const file of [m[2]!, m[3]!]) {
    try {
      Deno.statSync(file);
    } catch {
      usage(`--setup ${m[1]}: cannot read "${file}"`);
    }
  }
  return { name: m[1]!, config: m[2]!, spoe: m[3]! };
}

function parseOptions(argv: string[]): Options {
  const values = parseFlags("e2e", USAGE, {
    args: argv,
    allowPositionals: false,
    options: {
      runtime: { type: "string", default: "deno,bun,c" },
      workers: { type: "string", default: "1" },
      transport: { type: "string", default: "tcp" },
      connections: { type: "string", short: "c", default: "50" },
      reps: { type: "string", default: "3" },
      seconds: { type: "string", default: "5" },
      warmup: { type: "string", default: "1" },
      "wrk-threads": { type: "string", default: "2" },
      maxconn: { type: "string", default: "100" },
      "timeout-processing": { type: "string", default: "1s" },
      shipped: { type: "boolean", default: false },
      setup: { type: "string", multiple: true, default: [] },
      lua: { type: "boolean", default: false },
      "no-alone": { type: "boolean", default: false },
      nbthread: { type: "string" },
      "agent-arg": { type: "string", multiple: true, default: [] },
      "wait-idle": { type: "string", default: "0" },
      retries: { type: "string", default: "1" },
      budget: { type: "string", default: "900" },
      json: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const int = (name: string, text: string, min: number): number => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min) usage(`--${name} must be an integer >= ${min}`);
    return n;
  };
  const num = (name: string, text: string, min: number): number => {
    const n = Number(text);
    if (!Number.isFinite(n) || n < min) usage(`--${name} must be a number >= ${min}`);
    return n;
  };
  const agents = list(values.runtime);
  for (const r of agents) {
    if (!(AGENT_KINDS as readonly string[]).includes(r)) usage(`unknown runtime "${r}"`);
  }
  const workers = list(values.workers).map((w) => int("workers", w, 0));
  const transports = list(values.transport);
  for (const t of transports) if (t !== "tcp" && t !== "unix") usage(`unknown transport "${t}"`);
  if (transports.length === 0) usage("--transport needs tcp, unix or both");
  const wrkThreads = int("wrk-threads", values["wrk-threads"], 1);
  const connections = list(values.connections).map((c) => int("connections", c, wrkThreads));
  if (connections.length === 0) usage("-c needs at least one value");
  if (!/^\d+(us|ms|s|m)?$/.test(values["timeout-processing"])) {
    usage("--timeout-processing is an HAProxy time, e.g. 100ms or 1s");
  }
  if (values.shipped && values.setup.length > 0) usage("--shipped and --setup exclude each other");
  const setups = values.shipped
    ? [SHIPPED_SETUP]
    : values.setup.length > 0
    ? values.setup.map(parseSetup)
    : [BENCH_SETUP];
  if (new Set(setups.map((s) => s.name)).size < setups.length) usage("--setup names must differ");
  return {
    agents: agents as AgentKind[],
    workers,
    transports: transports as ("tcp" | "unix")[],
    connections,
    reps: int("reps", values.reps, 1),
    seconds: num("seconds", values.seconds, 2),
    warmup: num("warmup", values.warmup, 0),
    wrkThreads,
    maxconn: int("maxconn", values.maxconn, 1),
    timeoutProcessing: values["timeout-processing"],
    setups,
    lua: values.lua,
    alone: !values["no-alone"],
    nbthread: values.nbthread === undefined ? undefined : int("nbthread", values.nbthread, 1),
    agentArgs: values["agent-arg"],
    waitIdle: num("wait-idle", values["wait-idle"], 0),
    retries: int("retries", values.retries, 0),
    budget: num("budget", values.budget, 0),
    json: values.json,
  };
}

function requireTool(cmd: string, args: string[], hint: string): string {
  try {
    const out = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).outputSync();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    return text.split("\n").find((l) => l.trim() !== "")?.trim() ?? cmd;
  } catch {
    console.error(`e2e: \`${cmd}\` is not installed: ${hint}`);
    Deno.exit(1);
  }
}

// ---------------------------------------------------------------- the cells

const opts = parseOptions(Deno.args);
const builds = haproxyBuilds().map(usable);
const wrkVersion = requireTool("wrk", ["--version"], "apt-get install -y wrk");
const notes: string[] = [];
if (opts.agents.includes("c") && cAgentBin() === undefined) {
  opts.agents = opts.agents.filter((a) => a !== "c");
  notes.push("SPOA_C_AGENT_BIN is not set: the C agent's cells were left out.");
}

const variants: Variant[] = [];
for (const haproxy of builds) {
  const add = (agentLabel: string, extra: Omit<Variant, "label" | "agentLabel" | "haproxy">) =>
    variants.push({ label: `${haproxy.label} ${agentLabel}`, agentLabel, haproxy, ...extra });
  if (opts.alone) add("alone", {});
  for (const setup of opts.setups) {
    const named = opts.setups.length > 1 ? `, ${setup.name}` : "";
    for (const transport of opts.transports) {
      for (const workers of opts.workers) {
        for (const agent of opts.agents) {
          if (agent !== "deno" && agent !== "bun") continue;
          add(
            `${agentName(agent)} -n ${workers}${
              transport === "unix" ? ", Unix socket" : ""
            }${named}`,
            { agent, workers, transport, setup },
          );
        }
      }
    }
    // The C agent and the floor agents: TCP, one thread.
    for (const agent of opts.agents) {
      if (agent !== "deno" && agent !== "bun") add(`${agentName(agent)}${named}`, { agent, setup });
    }
  }
}

/** Seconds one measured run takes, with its warm-up and the stats reads. */
const perRun = opts.warmup + opts.seconds + 0.3;
/** Seconds one HAProxy (and agent) start and stop take. */
const perStack = 1.5;
const planned = variants.length * opts.reps * (perStack + opts.connections.length * perRun);
console.error(
  `e2e: ${variants.length} cell(s) x ${opts.connections.length} connection count(s) x ` +
    `${opts.reps} rep(s), about ${Math.ceil(planned)} s` +
    (opts.retries > 0 ? ` (retries of disturbed runs within ${opts.budget} s)` : ""),
);
const startedAt = performance.now();
let runsLeft = variants.length * opts.reps * opts.connections.length;
let stacksLeft = variants.length * opts.reps;

/** Whether a retry still fits in --budget, given what is left to run. */
function retryFits(): boolean {
  const elapsed = (performance.now() - startedAt) / 1000;
  return elapsed + (runsLeft + 1) * perRun + stacksLeft * perStack <= opts.budget;
}

function progress(run: Run): string {
  return `${fmt(run.rps, 0)} req/s, p50 ${fmt(run.p50ms, 2)} ms, p99 ${
    fmt(run.p99ms, 2)
  } ms, CPU haproxy ${fmt(run.haproxyCpu, 0)} % agent ${fmt(run.agentCpu, 0)} % wrk ${
    fmt(run.wrkCpu, 0)
  } % other ${fmt(run.otherCpu, 0)} %${
    run.problems.length > 0 ? ` (${run.problems.join("; ")})` : ""
  }`;
}

/** Measures one cell at every connection count on a started stack. */
async function measureCell(stack: Stack, variant: Variant, rep: number): Promise<Run[]> {
  const done: Run[] = [];
  for (const connections of opts.connections) {
    let run = await measure(stack, variant, rep, connections, opts);
    runsLeft--;
    // Other work on the machine (shared cores) spoils a run: measure it
    // again, keeping the least disturbed attempt.
    for (
      let retry = 1;
      retry <= opts.retries && run.otherCpu > OTHER_CPU_WARN_PCT && retryFits();
      retry++
    ) {
      console.error(
        `e2e: ${variant.label} rep ${rep} c=${connections}: other processes used ` +
          `${fmt(run.otherCpu, 0)} % of a core; measuring again (${retry}/${opts.retries})`,
      );
      if (opts.waitIdle > 0) await waitIdle(opts.waitIdle, IDLE_PCT, 0.5);
      const again = await measure(stack, variant, rep, connections, opts);
      if (again.otherCpu < run.otherCpu) run = again;
    }
    done.push(run);
    console.error(`e2e: ${variant.label} rep ${rep} c=${connections}: ${progress(run)}`);
  }
  return done;
}

const runs: Run[] = [];
/** A stack that did not start or a run that did not complete. */
let failed = false;
for (let rep = 1; rep <= opts.reps; rep++) {
  for (const variant of variants) {
    if (opts.waitIdle > 0 && !await waitIdle(opts.waitIdle, IDLE_PCT, 0.5)) {
      console.error(`e2e:   the machine is still busy after ${opts.waitIdle} s; going on`);
    }
    let stack: Stack;
    stacksLeft--;
    try {
      stack = await startStack(variant, opts);
    } catch (err) {
      notes.push(`${variant.label} rep ${rep}: ${err instanceof Error ? err.message : err}`);
      console.error(`e2e: ${variant.label} rep ${rep}: failed to start`);
      runsLeft -= opts.connections.length;
      failed = true;
      continue;
    }
    try {
      runs.push(...await measureCell(stack, variant, rep));
    } catch (err) {
      notes.push(`${variant.label} rep ${rep}: ${err instanceof Error ? err.message : err}`);
      console.error(`e2e: ${variant.label} rep ${rep}: failed`);
      failed = true;
    } finally {
      const problems = await stopStack(stack, variant);
      for (const p of problems) notes.push(`${variant.label} rep ${rep}: ${p}`);
    }
  }
}

// ---------------------------------------------------------------- the report

const cores = navigator.hardwareConcurrency;
const report = summarize(runs, variants, opts.connections, cores);
notes.push(...report.notes);
const setupText = opts.setups.map((s) =>
  s === BENCH_SETUP
    ? `${s.config} (agent server maxconn ${opts.maxconn}) + ${s.spoe} (timeout processing ${opts.timeoutProcessing})`
    : `${s.name}: ${s.config} + ${s.spoe}`
).join("; ");
console.log(tables(report.summaries));
console.log();
console.log(
  `${builds.map((b) => b.versionLine.replace(/ - https.*/, "")).join("; ")}; ` +
    `${wrkVersion.replace(/ Copyright.*/, "")}; ${cores} cores shared by wrk, HAProxy and the ` +
    `agent. Medians of ${opts.reps} interleaved round(s) of ${opts.seconds} s (wrk -t ` +
    `${opts.wrkThreads} --latency, keep-alive) after ${opts.warmup} s of warm-up each; error ` +
    `columns are totals over the rounds. Agent cells: ${setupText}${
      opts.nbthread === undefined ? "" : `, nbthread ${opts.nbthread}`
    }${opts.agentArgs.length > 0 ? `, spoa args ${opts.agentArgs.join(" ")}` : ""}${
      opts.agents.includes("c") ? `; C agent ${cAgentBin()} ${C_AGENT_ARGS.join(" ")}` : ""
    }. × alone = req/s ÷ the same HAProxy alone (medians), in brackets the lowest and ` +
    `highest ratio of one round to the same round alone. 403 % = denied (score < 20) of ` +
    `answered; SPOE err = 500 spoe_error=; other err = other statuses + wrk socket errors; ` +
    `counted ${
      opts.lua ? "by wrk (bench/e2e/status.lua, bodies read)" : "from HAProxy's stats"
    }. CPU % of one core over the measured run minus its first ${WINDOW_SKIP_MS / 1000} s ` +
    `(whole process, /proc/<pid>/stat); other = machine busy (/proc/stat) minus ours; ` +
    `µs/req = CPU time over the requests HAProxy answered in that window; CPU-bound ` +
    `req/s = ${cores} cores / the three processes' CPU per request, the rate they would reach ` +
    `with the cores to themselves (an estimate, robust to other load). ` +
    `agent conns = HAProxy's sessions on the agent server mid-run.` +
    (report.summaries.some((s) => s.marked) ? " * = see the notes." : ""),
);
for (const note of notes) console.log(`- ${note}`);
if (opts.json !== undefined) {
  const dump = {
    started: new Date(Date.now() - (performance.now() - startedAt)).toISOString(),
    opts,
    haproxy: builds.map((b) => b.versionLine),
    wrk: wrkVersion,
    summaries: report.summaries,
    runs,
    notes,
  };
  Deno.writeTextFileSync(opts.json, JSON.stringify(dump, null, 2) + "\n");
}
if (live.size > 0) console.error(`e2e: still running: ${[...live].join(", ")}`);
if (failed || runs.some((r) => r.problems.length > 0)) Deno.exitCode = 1;
