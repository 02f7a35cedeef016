/**
 * End to end: HTTP load from `wrk` (keep-alive connections) through Debian's
 * HAProxy with the per-request SPOE configuration, where every HTTP request
 * waits for the agent's score. Compares
 *
 * - (a) HAProxy alone: the same frontend without the `filter spoe` line
 *   (`bench/e2e/alone.cfg`), answering the same small 200 response;
 * - (b) HAProxy + spoa on Deno, (c) HAProxy + spoa on Bun (`-n 1`), and with
 *   `--workers 1,2` also the `-n 2` variants; with `--transport tcp,unix`
 *   each of them over TCP and over a Unix socket (`-a unix:PATH`, HAProxy
 *   `server ... unix@PATH`).
 *
 * The cells with the agent use `bench/e2e/request.cfg` and
 * `bench/e2e/spoe-request.conf`: the shipped `haproxy/haproxy-request.cfg` and
 * `haproxy/spoe-iprep-request.conf` with `maxconn` (agent server) and
 * `timeout processing` as parameters (`--maxconn`, `--timeout-processing`);
 * `--shipped` uses the shipped files unchanged instead.
 *
 * For each repetition, each variant gets a fresh HAProxy (and agent) on free
 * ports, then for each connection count a warm-up run of wrk and a measured
 * run (`wrk --latency`). Variants are interleaved within a repetition so that
 * a disturbance spreads over all of them; the table shows medians.
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
 * and last half second, as % of one core; the machine has
 * `navigator.hardwareConcurrency` cores (200 % on 2 cores) shared by all three.
 * "other" is the machine's busy time (`/proc/stat`, with irq and softirq)
 * minus those processes and this script: other work on the machine, which
 * disturbs the figures when large.
 *
 * ```sh
 * node_modules/deno/deno run -A bench/e2e.ts [--runtime deno,bun] [--workers 1[,2]]
 *   [-c 50,200] [--reps 3] [--seconds 10] [--warmup 2] [--wrk-threads 2]
 *   [--maxconn 100] [--timeout-processing 1s] [--shipped] [--lua] [--no-alone]
 *   [--transport tcp[,unix]] [--nbthread N] [--agent-arg <arg>]... [--wait-idle <seconds>] [--retries 1]
 *   [--budget 300] [--json <file>]
 * ```
 *
 * The cores are shared with whatever else runs: a measured run during which
 * other processes used more than 15 % of a core is measured again up to
 * `--retries` times (the least disturbed attempt is kept) as long as the whole
 * run still fits in `--budget` seconds (planned runs are never cut), and
 * `--wait-idle N` waits up to N seconds for a quiet machine before each
 * HAProxy start and each retry. Cells still disturbed are marked and named in
 * the notes. The defaults take about 4 minutes on a quiet machine.
 *
 * HAProxy is the first of `SPOA_HAPROXY_BINS` (`tests/_builds.ts`), Debian's
 * `haproxy` when unset.
 *
 * Needs `haproxy` and `wrk` (`apt-get install -y haproxy wrk`). Processes are
 * started and stopped by PID; Ctrl-C stops them too.
 *
 * @module
 */

import process from "node:process";
import {
  BUN,
  coreTimes,
  cpuSeconds,
  DENO,
  exitUsage,
  list,
  live,
  parseFlags,
  type Proc,
  ROOT,
  type Runtime,
  sleep,
  startProc,
  startServer,
  stopProc,
  waitIdle,
} from "./_bench.ts";
import { haproxyBuilds } from "../tests/_builds.ts";

const USAGE =
  `Usage: e2e.ts [--runtime deno,bun] [--workers 1[,2]] [--transport tcp[,unix]] [-c 50,200] [--reps 3]
              [--seconds 10] [--warmup 2] [--wrk-threads 2] [--maxconn 100]
              [--timeout-processing 1s] [--shipped] [--lua] [--no-alone] [--nbthread N]
              [--agent-arg <arg>]... [--wait-idle <seconds>] [--retries 1] [--budget 300]
              [--json <file>]`;

/** The agent's permissions under Deno, as `deno task start`. */
const DENO_AGENT_FLAGS = ["--allow-net", "--allow-read=lib"];
const ALONE_CFG = "bench/e2e/alone.cfg";
const BENCH_CFG = "bench/e2e/request.cfg";
const BENCH_SPOE = "bench/e2e/spoe-request.conf";
const SHIPPED_CFG = "haproxy/haproxy-request.cfg";
const SHIPPED_SPOE = "haproxy/spoe-iprep-request.conf";
const LUA = "bench/e2e/status.lua";
const START_TIMEOUT_MS = 15_000;
/** The CPU window skips this much of the measured run's start (connections opening)... */
const WINDOW_SKIP_MS = 1_000;
/** ...and stops this long before its planned end. */
const WINDOW_TAIL_MS = 500;
/** Above this much CPU (% of one core) used by others during a window, the cell gets a mark. */
const OTHER_CPU_WARN_PCT = 15;
/** With --wait-idle, the busy CPU (% of one core) under which the machine counts as idle. */
const IDLE_PCT = 20;

interface Options {
  runtimes: Runtime[];
  workers: number[];
  /** How HAProxy reaches the agent: TCP, a Unix socket, or both (one variant each). */
  transports: ("tcp" | "unix")[];
  connections: number[];
  reps: number;
  seconds: number;
  warmup: number;
  wrkThreads: number;
  maxconn: number;
  timeoutProcessing: string;
  shipped: boolean;
  lua: boolean;
  alone: boolean;
  nbthread: number | undefined;
  agentArgs: string[];
  waitIdle: number;
  retries: number;
  budget: number;
  json: string | undefined;
}

function usage(message: string): never {
  return exitUsage("e2e", USAGE, message);
}

function parseOptions(argv: string[]): Options {
  const values = parseFlags("e2e", USAGE, {
    args: argv,
    allowPositionals: false,
    options: {
      runtime: { type: "string", default: "deno,bun" },
      workers: { type: "string", default: "1" },
      transport: { type: "string", default: "tcp" },
      connections: { type: "string", short: "c", default: "50,200" },
      reps: { type: "string", default: "3" },
      seconds: { type: "string", default: "10" },
      warmup: { type: "string", default: "2" },
      "wrk-threads": { type: "string", default: "2" },
      maxconn: { type: "string", default: "100" },
      "timeout-processing": { type: "string", default: "1s" },
      shipped: { type: "boolean", default: false },
      lua: { type: "boolean", default: false },
      "no-alone": { type: "boolean", default: false },
      nbthread: { type: "string" },
      "agent-arg": { type: "string", multiple: true, default: [] },
      "wait-idle": { type: "string", default: "0" },
      retries: { type: "string", default: "1" },
      budget: { type: "string", default: "300" },
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
  const runtimes = list(values.runtime);
  for (const r of runtimes) if (r !== "deno" && r !== "bun") usage(`unknown runtime "${r}"`);
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
  const seconds = num("seconds", values.seconds, 2);
  return {
    runtimes: runtimes as Runtime[],
    workers,
    transports: transports as ("tcp" | "unix")[],
    connections,
    reps: int("reps", values.reps, 1),
    seconds,
    warmup: num("warmup", values.warmup, 0),
    wrkThreads,
    maxconn: int("maxconn", values.maxconn, 1),
    timeoutProcessing: values["timeout-processing"],
    shipped: values.shipped,
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

// ---------------------------------------------------------------- processes

/** A free TCP port on 127.0.0.1 (bound, then released). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function waitForPort(port: number, proc: Proc, what: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      // Not yet.
    }
    if (proc.done()) throw new Error(`${what} exited:\n${proc.log()}`);
    if (Date.now() > deadline) throw new Error(`${what} not listening on ${port}:\n${proc.log()}`);
    await sleep(50);
  }
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

// ---------------------------------------------------------------- CPU from /proc

/** The machine's busy and softirq CPU seconds so far (all cores), from /proc/stat. */
function machineSeconds(): { busy: number; softirq: number } {
  // Without IRQ time accounting, ticks spent in (soft)irq context are charged
  // to both /proc/stat's irq/softirq and the interrupted task's stime.
  const t = coreTimes().all;
  return { busy: t.user + t.system + t.irq + t.softirq, softirq: t.irq + t.softirq };
}

interface CpuSample {
  t: number;
  haproxy: number;
  agent: number;
  wrk: number;
  self: number;
  busy: number;
  softirq: number;
}

function sampleCpu(haproxy: number, agent: number | undefined, wrk: number): CpuSample {
  const machine = machineSeconds();
  const self = process.cpuUsage();
  return {
    t: performance.now(),
    haproxy: cpuSeconds(haproxy),
    agent: cpuSeconds(agent),
    wrk: cpuSeconds(wrk),
    self: (self.user + self.system) / 1e6,
    busy: machine.busy,
    softirq: machine.softirq,
  };
}

// ---------------------------------------------------------------- the stack

interface Variant {
  /** E.g. "(a) HAProxy alone", "(b) + spoa on Deno -n 1". */
  label: string;
  runtime?: Runtime;
  workers?: number;
  /** How HAProxy reaches the agent (TCP by default). */
  transport?: "tcp" | "unix";
}

interface Stack {
  haproxy: Proc;
  agent?: Proc;
  port: number;
  statsPort: number;
  dir: string;
}

interface Stats {
  req: number;
  r2xx: number;
  r4xx: number;
  r5xx: number;
  rOther: number;
  /** The agent server's current sessions (SPOE connections) and queue. */
  agentCur?: number;
  agentQueue?: number;
  agentStatus?: string;
}

async function startAgent(
  variant: Variant,
  opts: Options,
  dir: string,
): Promise<{ proc: Proc; address: string }> {
  const unix = variant.transport === "unix" ? `${dir}/spoa.sock` : undefined;
  const listen = unix === undefined ? ["-p", "0", "-a", "127.0.0.1"] : ["-a", `unix:${unix}`];
  const args = [...listen, "-n", String(variant.workers), ...opts.agentArgs];
  // The socket's folder is read and written (a stale file is replaced, the file removed on exit).
  const denoFlags = unix === undefined
    ? DENO_AGENT_FLAGS
    : ["--allow-net", `--allow-read=lib,${dir}`, `--allow-write=${dir}`];
  const server = await startServer(
    variant.runtime === "deno"
      ? [DENO, ["run", ...denoFlags, "main.ts", ...args]]
      : [BUN, ["main.ts", ...args]],
  );
  return {
    proc: server,
    address: unix === undefined ? `127.0.0.1:${server.port}` : `unix@${unix}`,
  };
}

async function startStack(variant: Variant, opts: Options): Promise<Stack> {
  const dir = Deno.makeTempDirSync({ prefix: "spoa-e2e-" });
  let agent: { proc: Proc; address: string } | undefined;
  if (variant.runtime !== undefined) agent = await startAgent(variant, opts, dir);
  const port = freePort();
  const statsPort = freePort();
  const extra = [
    ...(opts.nbthread === undefined ? [] : ["global", `    nbthread ${opts.nbthread}`]),
    "listen e2e-stats",
    `    bind 127.0.0.1:${statsPort}`,
    "    stats enable",
    "    stats uri /stats",
  ];
  Deno.writeTextFileSync(`${dir}/e2e-extra.cfg`, extra.join("\n") + "\n");
  const config = agent === undefined ? ALONE_CFG : opts.shipped ? SHIPPED_CFG : BENCH_CFG;
  const env: Record<string, string> = {
    HAPROXY_BIND: `127.0.0.1:${port}`,
    SPOA_ADDR: agent?.address ?? "127.0.0.1:9",
    SPOE_CONF: `${ROOT}${opts.shipped ? SHIPPED_SPOE : BENCH_SPOE}`,
    AGENT_MAXCONN: String(opts.maxconn),
    SPOE_TIMEOUT_PROCESSING: opts.timeoutProcessing,
  };
  const haproxy = startProc([HAPROXY_BIN, ["-db", "-f", config, "-f", `${dir}/e2e-extra.cfg`]], {
    env,
    stdout: true,
  });
  const stack: Stack = { haproxy, port, statsPort, dir, ...(agent ? { agent: agent.proc } : {}) };
  try {
    await waitForPort(port, haproxy, "HAProxy");
    if (agent !== undefined) {
      // Until the first health check passes the server may still count as down.
      const deadline = Date.now() + START_TIMEOUT_MS;
      for (;;) {
        const status = (await readStats(stack)).agentStatus ?? "";
        if (status.startsWith("UP") || status === "no check") break;
        if (Date.now() > deadline) throw new Error(`agent server status ${status} in HAProxy`);
        await sleep(100);
      }
    }
  } catch (err) {
    await stopStack(stack);
    throw err;
  }
  return stack;
}

/** Stops HAProxy, then the agent (SIGTERM: it drains), by PID; returns problems. */
async function stopStack(stack: Stack): Promise<string[]> {
  const problems: string[] = [];
  await stopProc(stack.haproxy, "SIGTERM");
  if (stack.agent !== undefined) {
    const status = await stopProc(stack.agent, "SIGTERM");
    if (status.code !== 0) {
      problems.push(`agent stopped with ${status.signal ?? `exit ${status.code}`}`);
    }
    const bad = stack.agent.log().split("\n").filter((l) => /\b(warn|error|fatal)\b/i.test(l));
    if (bad.length > 0) problems.push(`agent logged ${bad.length} warning(s)/error(s): ${bad[0]}`);
  }
  Deno.removeSync(stack.dir, { recursive: true });
  return problems;
}

async function readStats(stack: Stack): Promise<Stats> {
  const res = await fetch(`http://127.0.0.1:${stack.statsPort}/stats;csv`);
  const lines = (await res.text()).split("\n");
  const header = lines[0]!.replace(/^# /, "").split(",");
  const col = (cells: string[], name: string) => Number(cells[header.indexOf(name)] || 0);
  const stats: Stats = { req: 0, r2xx: 0, r4xx: 0, r5xx: 0, rOther: 0 };
  for (const line of lines.slice(1)) {
    const cells = line.split(",");
    if (cells[0] === "www" && cells[1] === "FRONTEND") {
      stats.req = col(cells, "req_tot");
      stats.r2xx = col(cells, "hrsp_2xx");
      stats.r4xx = col(cells, "hrsp_4xx");
      stats.r5xx = col(cells, "hrsp_5xx");
      stats.rOther = col(cells, "hrsp_1xx") + col(cells, "hrsp_3xx") + col(cells, "hrsp_other");
    } else if (cells[0] === "iprep-backend" && cells[1] === "iprep-srv") {
      stats.agentCur = col(cells, "scur");
      stats.agentQueue = col(cells, "qcur");
      stats.agentStatus = cells[header.indexOf("status")] ?? "";
    }
  }
  return stats;
}

// ---------------------------------------------------------------- wrk

interface Run {
  variant: string;
  rep: number;
  connections: number;
  rps: number;
  p50ms: number;
  p99ms: number;
  requests: number;
  ok: number;
  denied: number;
  spoeErrors: number;
  otherStatus: number;
  /** wrk's "Non-2xx or 3xx responses". */
  wrkNon2xx: number;
  socketErrors: number;
  haproxyCpu: number;
  agentCpu: number;
  wrkCpu: number;
  softirqCpu: number;
  otherCpu: number;
  /** HAProxy's request rate over the CPU window (for CPU per request). */
  windowRps: number;
  agentConns?: number;
  agentQueue?: number;
  problems: string[];
}

function toMs(value: string, unit: string): number {
  const n = Number(value);
  return unit === "us" ? n / 1000 : unit === "s" ? n * 1000 : unit === "m" ? n * 60_000 : n;
}

function wrkArgs(opts: Options, connections: number, seconds: number, stack: Stack): string[] {
  return [
    "-t",
    String(Math.min(opts.wrkThreads, connections)),
    "-c",
    String(connections),
    "-d",
    `${seconds}s`,
    "--timeout",
    "5s",
    `http://127.0.0.1:${stack.port}/`,
  ];
}

/** Starts wrk; `output` resolves with what it printed, and rejects when it failed. */
function startWrk(args: string[], limitMs: number): { proc: Proc; output: Promise<string> } {
  const proc = startProc(["wrk", args], { stdout: true });
  const timer = setTimeout(() => {
    try {
      Deno.kill(proc.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }, limitMs);
  const output = proc.exited.then((status) => {
    clearTimeout(timer);
    if (!status.success) throw new Error(`wrk exited ${status.code}:\n${proc.log()}`);
    return proc.log();
  });
  return { proc, output };
}

async function measure(
  stack: Stack,
  variant: Variant,
  rep: number,
  connections: number,
  opts: Options,
): Promise<Run> {
  if (opts.warmup > 0) {
    await startWrk(wrkArgs(opts, connections, opts.warmup, stack), opts.warmup * 1000 + 15_000)
      .output;
  }
  const before = await readStats(stack);
  const args = [
    "--latency",
    ...(opts.lua ? ["-s", LUA] : []),
    ...wrkArgs(opts, connections, opts.seconds, stack),
  ];
  const wrk = startWrk(args, opts.seconds * 1000 + 15_000);
  // Not awaited yet: a failure before the end of the window must not go unhandled.
  wrk.output.catch(() => {});
  const wrkPid = wrk.proc.pid;
  const agentPid = stack.agent?.pid;
  const windowMs = opts.seconds * 1000 - WINDOW_SKIP_MS - WINDOW_TAIL_MS;
  await sleep(WINDOW_SKIP_MS);
  const c0 = sampleCpu(stack.haproxy.pid, agentPid, wrkPid);
  const s0 = await readStats(stack);
  await sleep(windowMs / 2);
  const mid = await readStats(stack);
  await sleep(Math.max(0, windowMs - (performance.now() - c0.t)));
  const c1 = sampleCpu(stack.haproxy.pid, agentPid, wrkPid);
  const s1 = await readStats(stack);
  const out = await wrk.output;
  const after = await readStats(stack);

  const problems: string[] = [];
  const elapsed = (c1.t - c0.t) / 1000;
  const pct = (a: number, b: number) => (b - a) / elapsed * 100;
  const haproxyCpu = pct(c0.haproxy, c1.haproxy);
  const agentCpu = agentPid === undefined ? 0 : pct(c0.agent, c1.agent);
  const wrkCpu = pct(c0.wrk, c1.wrk);
  if ([haproxyCpu, agentCpu, wrkCpu].some(Number.isNaN)) {
    problems.push("a process was gone before the end of the CPU window");
  }
  const ours = haproxyCpu + agentCpu + wrkCpu + pct(c0.self, c1.self);
  /** Requests HAProxy answered during the CPU window, per second. */
  const windowRps = (s1.req - s0.req) / elapsed;

  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const latency = (q: string) => {
    const m = new RegExp(`^\\s+${q}%\\s+([\\d.]+)(us|ms|s|m)\\b`, "m").exec(out);
    return m ? toMs(m[1]!, m[2]!) : NaN;
  };
  const requests = Number(/(\d+) requests in /.exec(out)?.[1] ?? NaN);
  const wrkNon2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const socketErrors = sock ? sock.slice(1).reduce((s, n) => s + Number(n), 0) : 0;
  if (Number.isNaN(rps) || Number.isNaN(requests)) problems.push(`unreadable wrk output:\n${out}`);

  let ok = after.r2xx - before.r2xx;
  let denied = after.r4xx - before.r4xx;
  let spoeErrors = after.r5xx - before.r5xx;
  let otherStatus = after.rOther - before.rOther;
  // HAProxy also counts the requests in flight when wrk stops: up to one per connection.
  if (Math.abs(denied + spoeErrors + otherStatus - wrkNon2xx) > connections) {
    problems.push(
      `wrk saw ${wrkNon2xx} non-2xx/3xx, HAProxy answered ${denied} 4xx + ${spoeErrors} 5xx + ` +
        `${otherStatus} other`,
    );
  }
  /** With --lua: the body of the last SPOE error, or the status of the last other response. */
  let lastOdd = "";
  if (opts.lua) {
    const m = /^E2E (\d+) (\d+) (\d+) (\d+) (\S+)/m.exec(out);
    if (m) {
      [ok, denied, spoeErrors, otherStatus] = m.slice(1, 5).map(Number) as [
        number,
        number,
        number,
        number,
      ];
      if (m[5] !== "-") lastOdd = `, last: ${m[5]}`;
    } else problems.push("no E2E line from the Lua script");
  }
  if (spoeErrors > 0) problems.push(`${spoeErrors} SPOE error(s) (500 spoe_error=${lastOdd})`);
  if (otherStatus > 0) {
    problems.push(`${otherStatus} response(s) neither 200, 403 nor 500 spoe_error=${lastOdd}`);
  }
  if (socketErrors > 0) problems.push(`wrk socket errors: ${sock![0]}`);
  if (
    stack.agent !== undefined && mid.agentStatus !== undefined && !mid.agentStatus.startsWith("UP")
  ) {
    problems.push(`agent server ${mid.agentStatus} in HAProxy mid-run`);
  }
  return {
    variant: variant.label,
    rep,
    connections,
    rps,
    p50ms: latency("50"),
    p99ms: latency("99"),
    requests,
    ok,
    denied,
    spoeErrors,
    otherStatus,
    wrkNon2xx,
    socketErrors,
    haproxyCpu,
    agentCpu,
    wrkCpu,
    softirqCpu: pct(c0.softirq, c1.softirq),
    otherCpu: pct(c0.busy, c1.busy) - ours,
    windowRps,
    ...(mid.agentCur === undefined ? {} : { agentConns: mid.agentCur }),
    ...(mid.agentQueue === undefined ? {} : { agentQueue: mid.agentQueue }),
    problems,
  };
}

// ---------------------------------------------------------------- main

const opts = parseOptions(Deno.args);
/** The first HAProxy of `SPOA_HAPROXY_BINS` (Debian's `haproxy` when unset). */
const HAPROXY_BIN = haproxyBuilds()[0]!.bin;
const haproxyVersion = requireTool(HAPROXY_BIN, ["-v"], "apt-get install -y haproxy");
const wrkVersion = requireTool("wrk", ["--version"], "apt-get install -y wrk");

const variants: Variant[] = [];
if (opts.alone) variants.push({ label: "(a) HAProxy alone" });
for (const transport of opts.transports) {
  for (const workers of opts.workers) {
    for (const runtime of opts.runtimes) {
      // (a) is HAProxy alone, even when it is left out: the agent variants are (b), (c), ...
      const letter = String.fromCharCode(98 + variants.filter((v) => v.runtime).length);
      variants.push({
        label: `(${letter}) + spoa ${runtime === "deno" ? "Deno" : "Bun"} -n ${workers}${
          transport === "unix" ? ", Unix socket" : ""
        }`,
        runtime,
        workers,
        transport,
      });
    }
  }
}

/** Seconds one measured run takes, with its warm-up and the stats reads. */
const perRun = opts.warmup + opts.seconds + 0.3;
/** Seconds one HAProxy (and agent) start and stop take. */
const perStack = 1.5;
const planned = variants.length * opts.reps * (perStack + opts.connections.length * perRun);
console.error(
  `e2e: ${variants.length} variant(s) x ${opts.connections.length} connection count(s) x ` +
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

const runs: Run[] = [];
const notes: string[] = [];
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
    const stackRuns: Run[] = [];
    try {
      for (const connections of opts.connections) {
        let run = await measure(stack, variant, rep, connections, opts);
        // Other work on the machine (shared cores) spoils a run: measure it
        // again, keeping the least disturbed attempt.
        runsLeft--;
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
        stackRuns.push(run);
        console.error(
          `e2e: ${variant.label} rep ${rep} c=${connections}: ${fmt(run.rps, 0)} req/s, ` +
            `p50 ${fmt(run.p50ms, 2)} ms, p99 ${fmt(run.p99ms, 2)} ms, CPU haproxy ${
              fmt(run.haproxyCpu, 0)
            } % agent ${fmt(run.agentCpu, 0)} % wrk ${fmt(run.wrkCpu, 0)} % other ${
              fmt(run.otherCpu, 0)
            } %${run.problems.length > 0 ? ` (${run.problems.join("; ")})` : ""}`,
        );
      }
    } catch (err) {
      notes.push(`${variant.label} rep ${rep}: ${err instanceof Error ? err.message : err}`);
      console.error(`e2e: ${variant.label} rep ${rep}: failed`);
      failed = true;
    } finally {
      const problems = await stopStack(stack);
      for (const p of problems) notes.push(`${variant.label} rep ${rep}: ${p}`);
    }
    runs.push(...stackRuns);
  }
}

function fmt(value: number | undefined, digits: number): string {
  return value === undefined || Number.isNaN(value) ? "—" : value.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

function median(values: number[]): number {
  const v = values.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

const sum = (values: number[]) => values.reduce((s, x) => s + x, 0);

const cores = navigator.hardwareConcurrency;
const rows = [
  "| variant | conns | req/s | vs (a) | p50 ms | p99 ms | 403 % | SPOE err | other err | " +
  "agent conns |",
  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
];
const cpuRows = [
  "| variant | conns | HAProxy CPU % | agent CPU % | wrk CPU % | other CPU % | " +
  "HAProxy µs/req | agent µs/req | wrk µs/req | CPU-bound req/s |",
  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
];
const aloneRps = new Map<number, number>();
let marked = false;
for (const connections of opts.connections) {
  for (const variant of variants) {
    const rs = runs.filter((r) => r.variant === variant.label && r.connections === connections);
    if (rs.length === 0) {
      rows.push(`| ${variant.label} | ${connections} | — (no run) | | | | | | | |`);
      continue;
    }
    const m = (f: (r: Run) => number) => median(rs.map(f));
    const rps = m((r) => r.rps);
    if (variant.runtime === undefined) aloneRps.set(connections, rps);
    const base = aloneRps.get(connections);
    const answered = sum(rs.map((r) => r.ok + r.denied));
    const denied = sum(rs.map((r) => r.denied));
    const disturbed = rs.some((r) => r.otherCpu > OTHER_CPU_WARN_PCT);
    const problem = rs.some((r) => r.problems.length > 0);
    const mark = disturbed || problem ? " *" : "";
    if (mark) marked = true;
    for (const r of rs) {
      if (r.otherCpu > OTHER_CPU_WARN_PCT) {
        notes.push(
          `${r.variant} c=${r.connections} rep ${r.rep}: other processes used ~${
            fmt(r.otherCpu, 0)
          } % of a core during the window: figures are disturbed.`,
        );
      }
      for (const p of r.problems) notes.push(`${r.variant} c=${r.connections} rep ${r.rep}: ${p}`);
    }
    const withAgent = variant.runtime !== undefined;
    rows.push(
      `| ${variant.label} | ${connections} | ${fmt(rps, 0)}${mark} | ${
        base === undefined ? "—" : `${fmt(rps / base, 2)}`
      } | ${fmt(m((r) => r.p50ms), 2)} | ${fmt(m((r) => r.p99ms), 2)} | ${
        answered > 0 && withAgent ? fmt((denied / answered) * 100, 1) : "—"
      } | ${sum(rs.map((r) => r.spoeErrors))} | ${
        sum(rs.map((r) => r.otherStatus + r.socketErrors))
      } | ${withAgent ? fmt(m((r) => r.agentConns ?? NaN), 0) : "—"} |`,
    );
    /** CPU µs per request: % of one core over the window / requests per second. */
    const perReq = (f: (r: Run) => number) => m((r) => f(r) / 100 * 1e6 / r.windowRps);
    /** The rate at which our three processes alone would fill every core. */
    const bound = m((r) => cores * r.windowRps * 100 / (r.haproxyCpu + r.agentCpu + r.wrkCpu));
    cpuRows.push(
      `| ${variant.label} | ${connections} | ${fmt(m((r) => r.haproxyCpu), 0)} | ${
        withAgent ? fmt(m((r) => r.agentCpu), 0) : "—"
      } | ${fmt(m((r) => r.wrkCpu), 0)} | ${fmt(m((r) => r.otherCpu), 0)} | ${
        fmt(perReq((r) => r.haproxyCpu), 1)
      } | ${withAgent ? fmt(perReq((r) => r.agentCpu), 1) : "—"} | ${
        fmt(perReq((r) => r.wrkCpu), 1)
      } | ${fmt(bound, 0)} |`,
    );
  }
}

console.log(rows.join("\n"));
console.log();
console.log(cpuRows.join("\n"));
console.log();
console.log(
  `${haproxyVersion.replace(/ - https.*/, "")}, ${wrkVersion.replace(/ Copyright.*/, "")}; ` +
    `${cores} cores shared by wrk, HAProxy and the agent. Medians of ${opts.reps} run(s) ` +
    `of ${opts.seconds} s (wrk -t ${opts.wrkThreads} --latency, keep-alive) after ` +
    `${opts.warmup} s of warm-up each; error columns are totals over the runs. ` +
    `Agent cells: ${
      opts.shipped
        ? `${SHIPPED_CFG} + ${SHIPPED_SPOE} as shipped`
        : `${BENCH_CFG} (agent server maxconn ${opts.maxconn}) + ${BENCH_SPOE} ` +
          `(timeout processing ${opts.timeoutProcessing})`
    }${opts.nbthread === undefined ? "" : `, nbthread ${opts.nbthread}`}${
      opts.agentArgs.length > 0 ? `, agent args ${opts.agentArgs.join(" ")}` : ""
    }. 403 % = denied (score < 20) of answered; SPOE err = 500 spoe_error=; other err = ` +
    `other statuses + wrk socket errors; counted ${
      opts.lua ? "by wrk (bench/e2e/status.lua, bodies read)" : "from HAProxy's stats"
    }. CPU % of one core over the measured run minus its first ${WINDOW_SKIP_MS / 1000} s ` +
    `(whole process, /proc/<pid>/stat); other = machine busy (/proc/stat) minus ours; ` +
    `µs/req = CPU time over the requests HAProxy answered in that window; CPU-bound ` +
    `req/s = ${cores} cores / the three processes' CPU per request, the rate they would reach ` +
    `with the cores to themselves (an estimate, robust to other load). ` +
    `agent conns = HAProxy's sessions on the agent server mid-run.` +
    (marked ? " * = see the notes." : ""),
);
for (const note of notes) console.log(`- ${note}`);
if (opts.json !== undefined) {
  Deno.writeTextFileSync(opts.json, JSON.stringify({ opts, runs, notes }, null, 2) + "\n");
}
if (live.size > 0) console.error(`e2e: still running: ${[...live].join(", ")}`);
if (failed || runs.some((r) => r.problems.length > 0)) Deno.exitCode = 1;
