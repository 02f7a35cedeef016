/**
 * Agent throughput across runtimes, dispatch modes and worker counts.
 *
 * For each agent runtime (deno, bun), dispatch mode (reuseport, streams) and
 * `-n` (1, 2, 4): starts `main.ts` on a free port, runs `bench/load.ts` under
 * Bun against it, samples the agent's CPU (utime+stime of the whole process,
 * `/proc/<pid>/stat`) and peak RSS (`VmRSS`, `/proc/<pid>/status`) over the
 * measured window, then stops the agent with SIGTERM. Prints a markdown table.
 * The load generator runs on the same cores as the agent.
 *
 * ```sh
 * node_modules/deno/deno run -A bench/pool.ts [--runtime deno,bun] [--dispatch reuseport,streams]
 *   [--workers 1,2,4] [--seconds 4] [--warmup 1] [-c 16] [-d 16] [--ids 3x|2x]
 *   [--agent main.ts] [--deno-flag <flag>]... [--wait-idle <seconds>]
 * ```
 *
 * Other processes on the machine disturb the figures: the notes name each cell
 * during which others used more than 15 % of a core. `--wait-idle N` waits up
 * to N seconds before each cell for the machine to be idle.
 *
 * A dispatch mode the agent does not know (it exits 2 naming `--dispatch`) is
 * skipped; when the agent knows none of the requested modes, the cells run
 * once without `--dispatch` (shown as "(none)"). `--dispatch none` asks for
 * that run explicitly.
 *
 * @module
 */

import process from "node:process";
import {
  BUN,
  cpuSeconds,
  DENO,
  exitUsage,
  fmt,
  list,
  live,
  machineBusySeconds,
  parseFlags,
  rssBytes,
  type Runtime,
  type Server,
  StartError,
  startProc,
  startServer,
  stopServer,
  waitIdle,
} from "./_bench.ts";

const USAGE =
  `Usage: pool.ts [--runtime deno,bun] [--dispatch reuseport,streams,none] [--workers 1,2,4]
               [--seconds 4] [--warmup 1] [-c 16] [-d 16] [--ids 3x|2x] [--agent main.ts]
               [--deno-flag <flag>]... [--wait-idle <seconds>]`;

const LOAD = "bench/load.ts";
/** Permissions of the agent under Deno; `--deno-flag` adds more. */
const DENO_AGENT_FLAGS = ["--allow-net", "--allow-read", "--allow-env"];
const RSS_SAMPLE_MS = 100;
/** Above this much CPU (% of one core) used by others during a window, the cell gets a note. */
const OTHER_CPU_WARN_PCT = 15;
/** With --wait-idle, the busy CPU (% of one core) under which the machine counts as idle. */
const IDLE_PCT = 20;

interface Options {
  runtimes: Runtime[];
  dispatches: string[];
  workers: number[];
  seconds: number;
  warmup: number;
  connections: number;
  depth: number;
  ids: string;
  agent: string;
  denoFlags: string[];
  waitIdle: number;
}

function usage(message: string): never {
  return exitUsage("pool", USAGE, message);
}

function parseOptions(argv: string[]): Options {
  const values = parseFlags("pool", USAGE, {
    args: argv,
    allowPositionals: false,
    options: {
      runtime: { type: "string", default: "deno,bun" },
      dispatch: { type: "string", default: "reuseport,streams" },
      workers: { type: "string", default: "1,2,4" },
      seconds: { type: "string", default: "4" },
      warmup: { type: "string", default: "1" },
      connections: { type: "string", short: "c", default: "16" },
      depth: { type: "string", short: "d", default: "16" },
      ids: { type: "string", default: "3x" },
      agent: { type: "string", default: "main.ts" },
      "deno-flag": { type: "string", multiple: true, default: [] },
      "wait-idle": { type: "string", default: "0" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const runtimes = list(values.runtime);
  for (const r of runtimes) if (r !== "deno" && r !== "bun") usage(`unknown runtime "${r}"`);
  const dispatches = list(values.dispatch);
  for (const d of dispatches) {
    if (!/^[a-z-]+$/.test(d)) usage(`bad dispatch mode "${d}"`);
  }
  const workers = list(values.workers).map(Number);
  for (const n of workers) if (!Number.isInteger(n) || n < 0) usage(`bad --workers "${n}"`);
  const num = (name: string, text: string, min: number): number => {
    const n = Number(text);
    if (!Number.isFinite(n) || n < min) usage(`--${name} must be a number >= ${min}`);
    return n;
  };
  if (values.ids !== "3x" && values.ids !== "2x") usage("--ids must be 3x or 2x");
  if (runtimes.length === 0 || dispatches.length === 0 || workers.length === 0) {
    usage("--runtime, --dispatch and --workers need at least one value");
  }
  return {
    runtimes: runtimes as Runtime[],
    dispatches,
    workers,
    seconds: num("seconds", values.seconds, 0.1),
    warmup: num("warmup", values.warmup, 0),
    connections: num("connections", values.connections, 1),
    depth: num("depth", values.depth, 1),
    ids: values.ids,
    agent: values.agent,
    denoFlags: values["deno-flag"],
    waitIdle: num("wait-idle", values["wait-idle"], 0),
  };
}

type Agent = Server;

type Started = { agent: Agent } | { exited: Deno.CommandStatus; log: string };

function agentCommand(runtime: Runtime, args: string[], opts: Options): [string, string[]] {
  return runtime === "deno"
    ? [DENO, ["run", ...DENO_AGENT_FLAGS, ...opts.denoFlags, opts.agent, ...args]]
    : [BUN, [opts.agent, ...args]];
}

/** Starts the agent and waits for "listening on HOST:PORT", or for its exit. */
async function startAgent(runtime: Runtime, args: string[], opts: Options): Promise<Started> {
  try {
    return { agent: await startServer(agentCommand(runtime, args, opts)) };
  } catch (err) {
    if (!(err instanceof StartError)) throw err;
    return { exited: err.status, log: err.log };
  }
}

interface LoadResult {
  msgsPerSec: number;
  acks: number;
  errors: number;
  p50us: number;
  p99us: number;
  p999us: number;
  loadCpuPct: number;
  acksPerRead?: number;
  firstError?: string;
}

interface Cell {
  runtime: Runtime;
  dispatch: string;
  workers: number;
  load?: LoadResult;
  agentCpuPct?: number;
  agentRssMb?: number;
  /** Machine-wide busy CPU over the window, as % of one core. */
  machineCpuPct?: number;
  /** This script's own CPU over the window, as % of one core. */
  selfCpuPct?: number;
  problem?: string;
}

/** Runs the load generator against `agent`, sampling the agent over the measured window. */
async function measure(agent: Agent, opts: Options, cell: Cell): Promise<void> {
  let stdout = "";
  const load = startProc([BUN, [
    LOAD,
    "--port",
    String(agent.port),
    "-c",
    String(opts.connections),
    "-d",
    String(opts.depth),
    "--seconds",
    String(opts.seconds),
    "--warmup",
    String(opts.warmup),
    "--ids",
    opts.ids,
  ]], {
    stdout: true,
    onLine: (line, stream) => {
      if (stream === "stdout") {
        if (line.trim() !== "") stdout = line;
      } else onProgress(line);
    },
  });
  let cpu0 = 0;
  let busy0 = 0;
  let self0 = process.cpuUsage();
  let t0 = 0;
  let peakRss = 0;
  let sampler: ReturnType<typeof setInterval> | undefined;
  let loadLog = "";
  const sampleRss = () => {
    try {
      peakRss = Math.max(peakRss, rssBytes(agent.pid));
    } catch {
      // The agent died; the cell reports it.
    }
  };
  function onProgress(line: string): void {
    if (line === "# measuring") {
      try {
        cpu0 = cpuSeconds(agent.pid);
        busy0 = machineBusySeconds();
        self0 = process.cpuUsage();
        t0 = performance.now();
        sampleRss();
        sampler = setInterval(sampleRss, RSS_SAMPLE_MS);
      } catch {
        // The agent died.
      }
    } else if (line === "# measured") {
      clearInterval(sampler);
      sampler = undefined;
      try {
        const cpu = cpuSeconds(agent.pid) - cpu0;
        const busy = machineBusySeconds() - busy0;
        const elapsed = (performance.now() - t0) / 1000;
        const self = process.cpuUsage(self0);
        if (t0 > 0) {
          cell.machineCpuPct = (busy / elapsed) * 100;
          cell.selfCpuPct = (self.user + self.system) / 1e4 / elapsed;
        }
        sampleRss();
        if (t0 > 0) cell.agentCpuPct = (cpu / elapsed) * 100;
        cell.agentRssMb = peakRss / (1024 * 1024);
      } catch {
        // The agent died.
      }
    } else if (line !== "") {
      loadLog += `${line}\n`;
    }
  }
  const status = await load.exited;
  clearInterval(sampler);
  try {
    cell.load = JSON.parse(stdout) as LoadResult;
  } catch {
    cell.problem = `load generator exited ${status.code} without a result: ${loadLog.trim()}`;
    return;
  }
  if (cell.load.errors > 0) {
    cell.problem = `${cell.load.errors} error(s), first: ${cell.load.firstError ?? "?"}`;
  }
}

const opts = parseOptions(Deno.args);
const cells: Cell[] = [];
const notes: string[] = [];

for (const runtime of opts.runtimes) {
  let ran = false;
  const modes: (string | undefined)[] = opts.dispatches.map((d) => d === "none" ? undefined : d);
  for (let m = 0; m < modes.length; m++) {
    const dispatch = modes[m];
    let skipped = false;
    for (const workers of opts.workers) {
      const args = ["-p", "0", "-a", "127.0.0.1", "-n", String(workers)];
      if (dispatch !== undefined) args.push("--dispatch", dispatch);
      const cell: Cell = { runtime, dispatch: dispatch ?? "(none)", workers };
      console.error(`pool: ${runtime} ${cell.dispatch} -n ${workers} ...`);
      if (opts.waitIdle > 0 && !await waitIdle(opts.waitIdle, IDLE_PCT, 0.5)) {
        console.error(`pool:   the machine is still busy after ${opts.waitIdle} s; going on`);
      }
      const started = await startAgent(runtime, args, opts);
      if (!("agent" in started)) {
        if (dispatch !== undefined && started.exited.code === 2 && /--dispatch/.test(started.log)) {
          notes.push(
            `${runtime}: the agent does not know \`--dispatch ${dispatch}\` ` +
              `(exit 2: ${firstLine(started.log)}); skipped.`,
          );
          skipped = true;
          break;
        }
        cell.problem = `agent exited ${started.exited.code} before listening: ${
          firstLine(started.log)
        }`;
        cells.push(cell);
        continue;
      }
      await runCell(started.agent, cell);
    }
    if (!skipped) ran = true;
    // When the agent knows none of the requested modes, run once without --dispatch.
    if (m === modes.length - 1 && !ran && dispatch !== undefined) {
      notes.push(`${runtime}: the agent knows no requested dispatch mode; ran without it.`);
      modes.push(undefined);
    }
  }
}

/** Measures one cell on a started agent, then stops the agent. */
async function runCell(agent: Agent, cell: Cell): Promise<void> {
  try {
    await measure(agent, opts, cell);
  } finally {
    const status = await stopServer(agent);
    if (status.code !== 0) {
      const why = status.signal === null ? `exit ${status.code}` : `signal ${status.signal}`;
      cell.problem = [cell.problem, `agent stopped with ${why}`].filter(Boolean).join("; ");
    }
    if (agent.ports.size > 1) {
      notes.push(
        `${cell.runtime} ${cell.dispatch} -n ${cell.workers}: the agent logged several ports ` +
          `(${[...agent.ports].join(", ")}); the load went to ${agent.port} only.`,
      );
    }
  }
  cells.push(cell);
  const l = cell.load;
  console.error(
    l === undefined
      ? `pool:   failed: ${cell.problem}`
      : `pool:   ${l.msgsPerSec} msgs/s, p99 ${l.p99us} us, agent CPU ${
        fmt(cell.agentCpuPct, 0)
      } %, load CPU ${l.loadCpuPct} %${cell.problem ? ` (${cell.problem})` : ""}`,
  );
}

function firstLine(text: string): string {
  return text.split("\n").find((l) => l.trim() !== "")?.trim() ?? "(no output)";
}

/** CPU (% of one core) that processes other than ours used during the cell's window. */
function otherCpuPct(c: Cell): number {
  if (c.machineCpuPct === undefined || c.agentCpuPct === undefined || c.load === undefined) {
    return 0;
  }
  return c.machineCpuPct - c.agentCpuPct - c.load.loadCpuPct - (c.selfCpuPct ?? 0);
}

const cores = navigator.hardwareConcurrency;
const rows = [
  "| runtime | dispatch | -n | msgs/s | p99 µs | agent CPU % | agent RSS MB | load-gen CPU % |",
  "|---|---|---:|---:|---:|---:|---:|---:|",
];
let marked = false;
for (const c of cells) {
  const l = c.load;
  const other = otherCpuPct(c);
  const disturbed = other > OTHER_CPU_WARN_PCT;
  if (disturbed) {
    notes.push(
      `${c.runtime} ${c.dispatch} -n ${c.workers}: other processes used ~${
        fmt(other, 0)
      } % of a core during the window (machine busy ${fmt(c.machineCpuPct, 0)} % of ${
        cores * 100
      } %): figures are disturbed.`,
    );
  }
  if (c.problem !== undefined) {
    notes.push(`${c.runtime} ${c.dispatch} -n ${c.workers}: ${c.problem}`);
  }
  const mark = disturbed || c.problem !== undefined ? " *" : "";
  if (mark !== "") marked = true;
  rows.push(
    `| ${c.runtime} | ${c.dispatch} | ${c.workers} | ${fmt(l?.msgsPerSec, 0)}${mark} | ${
      fmt(l?.p99us, 0)
    } | ${fmt(c.agentCpuPct, 0)} | ${fmt(c.agentRssMb, 1)} | ${fmt(l?.loadCpuPct, 0)} |`,
  );
}
console.log(rows.join("\n"));
console.log();
console.log(
  `Load: bench/load.ts under Bun, ${opts.connections} connections x ${opts.depth} NOTIFYs ` +
    `in flight, ids ${opts.ids}, ${opts.seconds} s measured after ${opts.warmup} s warm-up. ` +
    `The load generator shares the ${cores} cores with the agent. CPU % is of one core ` +
    `(agent: utime+stime of all its threads; RSS: peak VmRSS sampled every ${RSS_SAMPLE_MS} ms).` +
    (marked ? " * = see the notes." : ""),
);
for (const note of notes) console.log(`- ${note}`);
if (live.size > 0) console.error(`pool: still running: ${[...live].join(", ")}`);
if (cells.some((c) => c.problem !== undefined)) Deno.exit(1);
