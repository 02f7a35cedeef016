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
import { parseArgs } from "node:util";

const USAGE =
  `Usage: pool.ts [--runtime deno,bun] [--dispatch reuseport,streams,none] [--workers 1,2,4]
               [--seconds 4] [--warmup 1] [-c 16] [-d 16] [--ids 3x|2x] [--agent main.ts]
               [--deno-flag <flag>]... [--wait-idle <seconds>]`;

const ROOT = new URL("../", import.meta.url).pathname;
const DENO = "node_modules/deno/deno";
const BUN = "node_modules/bun/bin/bun.exe";
const LOAD = "bench/load.ts";
/** Permissions of the agent under Deno; `--deno-flag` adds more. */
const DENO_AGENT_FLAGS = ["--allow-net", "--allow-read", "--allow-env"];
const READY_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 6_000;
const RSS_SAMPLE_MS = 100;
/** Above this much CPU (% of one core) used by others during a window, the cell gets a note. */
const OTHER_CPU_WARN_PCT = 15;
/** With --wait-idle, the busy CPU (% of one core) under which the machine counts as idle. */
const IDLE_PCT = 20;

type Runtime = "deno" | "bun";

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
  console.error(`pool: ${message}\n${USAGE}`);
  Deno.exit(2);
}

function list(text: string): string[] {
  return text.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

function parseOptions(argv: string[]): Options {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
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
    }));
  } catch (err) {
    usage(err instanceof Error ? err.message : String(err));
  }
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
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

/** Calls `onLine` for each line of a byte stream; resolves at its end. */
async function readLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  let rest = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    rest += text;
    let nl;
    while ((nl = rest.indexOf("\n")) >= 0) {
      onLine(rest.slice(0, nl));
      rest = rest.slice(nl + 1);
    }
  }
  if (rest !== "") onLine(rest);
}

let clockTicks = 100;
try {
  const out = await new Deno.Command("getconf", { args: ["CLK_TCK"], stderr: "null" }).output();
  const n = Number(new TextDecoder().decode(out.stdout).trim());
  if (out.success && Number.isInteger(n) && n > 0) clockTicks = n;
} catch {
  // No getconf: Linux's USER_HZ is 100.
}

/** CPU seconds (user + system, all threads) of a process so far. */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // Fields after "pid (comm) ": state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}

/**
 * CPU seconds that tasks of the whole machine ran (user + nice + system, all
 * cores), from /proc/stat. Interrupt time (loopback traffic is mostly softirq)
 * is left out: the kernel charges it to no process.
 */
function machineBusySeconds(): number {
  const line = Deno.readTextFileSync("/proc/stat").split("\n", 1)[0]!;
  // cpu user nice system idle iowait irq softirq steal ...
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  return (f[0]! + f[1]! + f[2]!) / clockTicks;
}

/** VmRSS of a process in bytes. */
function rssBytes(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  return match ? Number(match[1]) * 1024 : 0;
}

/** Children still running, to kill (by pid) on Ctrl-C. */
const live = new Set<number>();
Deno.addSignalListener("SIGINT", () => {
  for (const pid of live) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  Deno.exit(130);
});

/**
 * Waits until the machine's busy CPU over half a second stays under
 * IDLE_PCT of one core, for at most `seconds`.
 *
 * @returns Whether the machine was idle.
 */
async function waitIdle(seconds: number): Promise<boolean> {
  const deadline = performance.now() + seconds * 1000;
  for (;;) {
    const b0 = machineBusySeconds();
    await sleep(500);
    if ((machineBusySeconds() - b0) / 0.5 * 100 < IDLE_PCT) return true;
    if (performance.now() >= deadline) return false;
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

interface Agent {
  child: Deno.ChildProcess;
  pid: number;
  port: number;
  /** stderr so far (capped). */
  log: () => string;
  /** Every port the agent said it listens on. */
  ports: Set<number>;
  exited: Promise<Deno.CommandStatus>;
}

type Started = { agent: Agent } | { exited: Deno.CommandStatus; log: string };

function agentCommand(runtime: Runtime, args: string[], opts: Options): [string, string[]] {
  return runtime === "deno"
    ? [DENO, ["run", ...DENO_AGENT_FLAGS, ...opts.denoFlags, opts.agent, ...args]]
    : [BUN, [opts.agent, ...args]];
}

/** Starts the agent and waits for "listening on HOST:PORT", or for its exit. */
async function startAgent(runtime: Runtime, args: string[], opts: Options): Promise<Started> {
  const [cmd, cmdArgs] = agentCommand(runtime, args, opts);
  const child = new Deno.Command(cmd, {
    args: cmdArgs,
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const pid = child.pid;
  live.add(pid);
  const exited = child.status.then((s) => {
    live.delete(pid);
    return s;
  });
  let log = "";
  const ports = new Set<number>();
  let onReady: ((port: number) => void) | undefined;
  const ready = new Promise<number>((resolve) => onReady = resolve);
  // Keep draining stderr for the agent's whole life so that it never blocks.
  void readLines(child.stderr, (line) => {
    if (log.length < 64 * 1024) log += `${line}\n`;
    const match = /listening on (\S+):(\d+)/.exec(line);
    if (match) {
      const port = Number(match[2]);
      ports.add(port);
      onReady?.(port);
      onReady = undefined;
    }
  }).catch(() => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    ready.then((port) => ({ port })),
    exited.then((status) => ({ status })),
    new Promise<{ timeout: true }>((resolve) => {
      timer = setTimeout(() => resolve({ timeout: true }), READY_TIMEOUT_MS);
    }),
  ]);
  clearTimeout(timer);
  if ("port" in outcome) {
    return { agent: { child, pid, port: outcome.port, log: () => log, ports, exited } };
  }
  if ("status" in outcome) {
    await sleep(50); // Let the last stderr lines arrive.
    return { exited: outcome.status, log };
  }
  await stopAgent({ child, pid, port: 0, log: () => log, ports, exited });
  return { exited: { success: false, code: -1, signal: null }, log: `${log}(not ready in time)\n` };
}

/** SIGTERM by pid, then SIGKILL if it is still there after the grace period. */
async function stopAgent(agent: Agent): Promise<Deno.CommandStatus> {
  try {
    Deno.kill(agent.pid, "SIGTERM");
  } catch {
    // Already gone.
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const status = await Promise.race([
    agent.exited,
    new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), STOP_TIMEOUT_MS)),
  ]);
  clearTimeout(timer);
  if (status !== null) return status;
  console.error(`pool: agent ${agent.pid} ignored SIGTERM; sending SIGKILL`);
  try {
    Deno.kill(agent.pid, "SIGKILL");
  } catch {
    // Already gone.
  }
  return await agent.exited;
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
  const child = new Deno.Command(BUN, {
    args: [
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
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  live.add(child.pid);
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
  const stderrDone = readLines(child.stderr, (line) => {
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
  });
  let stdout = "";
  const stdoutDone = readLines(child.stdout, (line) => {
    if (line.trim() !== "") stdout = line;
  });
  const status = await child.status;
  live.delete(child.pid);
  clearInterval(sampler);
  await Promise.all([stderrDone, stdoutDone]);
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
      if (opts.waitIdle > 0 && !await waitIdle(opts.waitIdle)) {
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
    const status = await stopAgent(agent);
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

function fmt(value: number | undefined, digits: number): string {
  return value === undefined ? "—" : value.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
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
