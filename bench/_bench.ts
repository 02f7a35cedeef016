/**
 * Shared plumbing of the Deno-run benchmark orchestrators (`bench/agent.ts`,
 * `bench/memory.ts`, `bench/pool.ts`, `bench/e2e.ts`): option lists,
 * starting children with their output drained, servers and their "listening
 * on" lines, stopping them by pid (killing what is left on Ctrl-C), and
 * sampling processes and the machine through `/proc` (Linux only).
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { cAgentBin } from "../tests/_builds.ts";

export { cAgentBin };
export { fmt, median } from "./_format.ts";

/** The repository root. */
export const ROOT = new URL("../", import.meta.url).pathname;
/** The runtimes, relative to the root. */
export const DENO = "node_modules/deno/deno";
export const BUN = "node_modules/bun/bin/bun.exe";
/** The compiled Bun agent (`deno task compile:bun`). */
export const BUN_BINARY = "dist/spoa-bun";
const READY_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 6_000;

export type Runtime = "deno" | "bun";

export const sleep = (ms: number): Promise<void> =>
  new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Parses a benchmark's command line strictly: an unknown or malformed option
 * prints the message and `usage` on stderr and exits 2; `-h`/`--help` (which
 * `config.options` must declare as `help`) prints `usage` and exits 0.
 *
 * @param tool The benchmark's name, for the error line.
 * @param usage Its usage text.
 * @param config `parseArgs`'s configuration (`strict` is forced on).
 * @returns The option values.
 */
export function parseFlags<T extends ParseArgsConfig>(
  tool: string,
  usage: string,
  config: T,
): ReturnType<typeof parseArgs<T>>["values"] {
  let values;
  try {
    ({ values } = parseArgs<T>({ ...config, strict: true }));
  } catch (err) {
    exitUsage(tool, usage, err instanceof Error ? err.message : String(err));
  }
  if ((values as Record<string, unknown>).help === true) {
    console.log(usage);
    Deno.exit(0);
  }
  return values;
}

/** Prints `tool: message` and the usage on stderr, then exits 2. */
export function exitUsage(tool: string, usage: string, message: string): never {
  console.error(`${tool}: ${message}\n${usage}`);
  Deno.exit(2);
}

/** The comma-separated values of an option, trimmed, without empty ones. */
export function list(text: string): string[] {
  return text.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

/** Calls `onLine` for each line of a byte stream; resolves at its end. */
export async function readLines(
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

/** CPU seconds of a process so far (all threads), user and system apart. */
export interface ProcCpu {
  user: number;
  system: number;
}

/** utime and stime of a process, from `/proc/<pid>/stat`. */
export function procCpu(pid: number): ProcCpu {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // Fields after "pid (comm) ": state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { user: Number(fields[11]) / clockTicks, system: Number(fields[12]) / clockTicks };
}

/** CPU seconds (user + system, all threads) of a process so far; NaN without one or once it is gone. */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const { user, system } = procCpu(pid);
    return user + system;
  } catch {
    return NaN;
  }
}

/** Seconds each core (and `all`) spent per state, from `/proc/stat`. */
export interface CoreTimes {
  user: number;
  system: number;
  softirq: number;
  irq: number;
  idle: number;
  steal: number;
}

/** `/proc/stat`: the `cpu` line as `all`, and `cpu0`, `cpu1`, ... by index. */
export function coreTimes(): { all: CoreTimes; cores: CoreTimes[] } {
  const lines = Deno.readTextFileSync("/proc/stat").split("\n");
  const parse = (line: string): CoreTimes => {
    // cpuN user nice system idle iowait irq softirq steal ...
    const f = line.trim().split(/\s+/).slice(1).map((s) => Number(s) / clockTicks);
    return {
      user: f[0]! + f[1]!,
      system: f[2]!,
      idle: f[3]! + f[4]!,
      irq: f[5]!,
      softirq: f[6]!,
      steal: f[7] ?? 0,
    };
  };
  const cores: CoreTimes[] = [];
  let all: CoreTimes | undefined;
  for (const line of lines) {
    const m = /^cpu(\d*)\s/.exec(line);
    if (!m) continue;
    if (m[1] === "") all = parse(line);
    else cores[Number(m[1])] = parse(line);
  }
  return { all: all!, cores };
}

/** The difference of two `CoreTimes`. */
export function diffTimes(a: CoreTimes, b: CoreTimes): CoreTimes {
  return {
    user: b.user - a.user,
    system: b.system - a.system,
    softirq: b.softirq - a.softirq,
    irq: b.irq - a.irq,
    idle: b.idle - a.idle,
    steal: b.steal - a.steal,
  };
}

/** VmRSS of a process in bytes (0 when it is gone). */
export function rssBytes(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Processes still running, to kill (by pid) on Ctrl-C or a crash. */
export const live = new Set<number>();

/** SIGKILLs every child still running (by pid). */
export function killLive(): void {
  for (const pid of live) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  live.clear();
}

Deno.addSignalListener("SIGINT", () => {
  killLive();
  Deno.exit(130);
});

/**
 * Busy CPU of the whole machine (user + system + irq + softirq, all cores),
 * in seconds. Interrupts count: a process's stime includes the softirq work
 * (loopback TCP) done while it ran, which `/proc/stat` files as softirq.
 */
export function machineBusySeconds(): number {
  const t = coreTimes().all;
  return t.user + t.system + t.irq + t.softirq;
}

/**
 * Waits until the machine's busy CPU stays under `idlePct` of one core for
 * `quiet` seconds in a row (checked every half second), for at most
 * `seconds`. Other benchmarks pause between their cells: a short lull is not
 * enough.
 *
 * @returns Whether the machine was idle.
 */
export async function waitIdle(seconds: number, idlePct = 20, quiet = 2): Promise<boolean> {
  const deadline = performance.now() + seconds * 1000;
  let calm = 0;
  for (;;) {
    const b0 = machineBusySeconds();
    await sleep(500);
    calm = (machineBusySeconds() - b0) / 0.5 * 100 < idlePct ? calm + 0.5 : 0;
    if (calm >= quiet) return true;
    if (performance.now() >= deadline) return false;
  }
}

/** A started child whose output is drained (and kept, up to 64 KiB) for its whole life. */
export interface Proc {
  child: Deno.ChildProcess;
  pid: number;
  /** Output so far (capped). */
  log: () => string;
  /** Settles once it has exited and its output is read. */
  exited: Promise<Deno.CommandStatus>;
  /** Whether it has exited. */
  done: () => boolean;
}

/** How {@linkcode startProc} runs a child. */
export interface StartOptions {
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Read stdout too (otherwise it goes to /dev/null). */
  stdout?: boolean;
  /** Called with each line of output, and the stream it came on. */
  onLine?: (line: string, stream: "stdout" | "stderr") => void;
}

/** Starts a child in the repository root; it is killed on Ctrl-C while it runs. */
export function startProc(cmd: [string, string[]], options: StartOptions = {}): Proc {
  const child = new Deno.Command(cmd[0], {
    args: cmd[1],
    cwd: ROOT,
    env: options.env ?? {},
    stdin: "null",
    stdout: options.stdout ? "piped" : "null",
    stderr: "piped",
  }).spawn();
  const pid = child.pid;
  live.add(pid);
  let finished = false;
  let log = "";
  const take = (stream: "stdout" | "stderr") => (line: string) => {
    if (log.length < 64 * 1024) log += `${line}\n`;
    options.onLine?.(line, stream);
  };
  // Keep draining the output so that the child never blocks on a full pipe.
  const drained = Promise.all([
    options.stdout ? readLines(child.stdout, take("stdout")).catch(() => {}) : undefined,
    readLines(child.stderr, take("stderr")).catch(() => {}),
  ]);
  const exited = child.status.then(async (status) => {
    live.delete(pid);
    finished = true;
    await drained;
    return status;
  });
  return { child, pid, log: () => log, exited, done: () => finished };
}

/**
 * Sends `signal` by pid, then SIGKILL (with a line on stderr) if the child
 * is still there after the grace period.
 */
export async function stopProc(
  proc: Proc,
  signal: Deno.Signal = "SIGTERM",
): Promise<Deno.CommandStatus> {
  if (!proc.done()) {
    try {
      Deno.kill(proc.pid, signal);
    } catch {
      // Already gone.
    }
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const status = await Promise.race([
    proc.exited,
    new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), STOP_TIMEOUT_MS)),
  ]);
  clearTimeout(timer);
  if (status !== null) return status;
  console.error(`bench: ${proc.pid} ignored ${signal}; sending SIGKILL`);
  try {
    Deno.kill(proc.pid, "SIGKILL");
  } catch {
    // Already gone.
  }
  return await proc.exited;
}

/** A started server process. */
export interface Server extends Proc {
  /** The first port it said it listens on. */
  port: number;
  /** Every port it said it listens on (one per worker with some dispatch modes). */
  ports: Set<number>;
}

/** The command that runs the agent or the echo server. */
export function serverCommand(
  runtime: Runtime | "bun-binary",
  what: "agent" | "echo",
  args: string[],
): [string, string[]] {
  if (what === "echo") {
    return runtime === "deno"
      ? [DENO, ["run", "--allow-net", "bench/echo.ts", ...args]]
      : [BUN, ["bench/echo.ts", ...args]];
  }
  if (runtime === "bun-binary") return [BUN_BINARY, args];
  return runtime === "deno"
    ? [DENO, ["run", "--allow-net", "--allow-read=lib", "main.ts", ...args]]
    : [BUN, ["main.ts", ...args]];
}

/** Prefixes a command with `taskset -c <cpus>` (the pid stays the command's: taskset execs). */
export function pinned(cpus: string | undefined, cmd: [string, string[]]): [string, string[]] {
  return cpus === undefined ? cmd : ["taskset", ["-c", cpus, cmd[0], ...cmd[1]]];
}

/** A server that exited, or was not ready in time, instead of listening. */
export class StartError extends Error {
  /**
   * @param message What happened, with the last lines of its output.
   * @param status How it exited (killed when it was not ready in time).
   * @param log Its output.
   */
  constructor(message: string, readonly status: Deno.CommandStatus, readonly log: string) {
    super(message);
    this.name = "StartError";
  }
}

/**
 * Starts a server and waits for its "listening on HOST:PORT" line (the first
 * one), or for its exit.
 *
 * @throws {StartError} When it exits or is not ready in time.
 */
export async function startServer(cmd: [string, string[]]): Promise<Server> {
  const ports = new Set<number>();
  let onReady: ((port: number) => void) | undefined;
  const ready = new Promise<number>((resolve) => onReady = resolve);
  const proc = startProc(cmd, {
    onLine: (line) => {
      // A Unix socket has no port: 0.
      const match = /listening on (?:unix:\S+|(\S+):(\d+))/.exec(line);
      if (!match) return;
      const port = Number(match[2] ?? 0);
      ports.add(port);
      onReady?.(port);
      onReady = undefined;
    },
  });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    ready.then((port) => ({ port })),
    proc.exited.then((status) => ({ status })),
    new Promise<{ timeout: true }>((resolve) => {
      timer = setTimeout(() => resolve({ timeout: true }), READY_TIMEOUT_MS);
    }),
  ]);
  clearTimeout(timer);
  if ("port" in outcome) return { ...proc, port: outcome.port, ports };
  const status = "status" in outcome ? outcome.status : await stopProc(proc);
  await proc.exited; // Its last lines.
  const log = proc.log() + ("timeout" in outcome ? "(not ready in time)\n" : "");
  throw new StartError(
    `${cmd[0]} ${cmd[1].join(" ")}: ${
      "status" in outcome ? `exited ${status.code}` : "not ready in time"
    }: ${log.trim().split("\n").slice(-3).join(" | ") || "(no output)"}`,
    status,
    log,
  );
}

/** SIGTERM by pid, then SIGKILL if it is still there after the grace period. */
export function stopServer(server: Server): Promise<Deno.CommandStatus> {
  return stopProc(server);
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/**
 * Waits until `port` on 127.0.0.1 accepts a connection.
 *
 * @throws {Error} When `proc` exits first or the port is not open within `ms`.
 */
export async function waitForPort(
  port: number,
  proc: Proc,
  what: string,
  ms = READY_TIMEOUT_MS,
): Promise<void> {
  const deadline = Date.now() + ms;
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

/**
 * What the C agent runs with beside the port: one worker thread, as spoa's
 * `-n 1` cells, and the `pipelining` capability (HAProxy offers it; without
 * it the agent answers one NOTIFY per connection at a time).
 */
export const C_AGENT_ARGS: readonly string[] = ["-n", "1", "-c", "pipelining"];

/**
 * Starts HAProxy's C example agent on a free port of 127.0.0.1 (it prints no
 * "listening on" line: the port is polled), optionally pinned with taskset.
 *
 * @throws {Error} When `SPOA_C_AGENT_BIN` is unset, or it does not listen in time.
 */
export async function startCAgent(cpus?: string, args = C_AGENT_ARGS): Promise<Server> {
  const bin = cAgentBin();
  if (bin === undefined) throw new Error("SPOA_C_AGENT_BIN is not set");
  const port = freePort();
  const proc = startProc(pinned(cpus, [bin, ["-p", String(port), ...args]]), { stdout: true });
  try {
    await waitForPort(port, proc, "the C agent");
  } catch (err) {
    await stopProc(proc, "SIGKILL");
    throw err;
  }
  return { ...proc, port, ports: new Set([port]) };
}
