/**
 * Shared plumbing of the Deno-run benchmark orchestrators (`bench/agent.ts`,
 * `bench/memory.ts`): starting servers and waiting for their "listening on"
 * line, stopping them by pid, and sampling processes and the machine through
 * `/proc` (Linux only).
 *
 * @module
 */

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

/** A started server process. */
export interface Server {
  child: Deno.ChildProcess;
  pid: number;
  port: number;
  /** stderr so far (capped). */
  log: () => string;
  exited: Promise<Deno.CommandStatus>;
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

/**
 * Starts a server and waits for its "listening on HOST:PORT" line (the first
 * one), or for its exit.
 *
 * @throws {Error} When it exits or is not ready in time; the error has its log.
 */
export async function startServer(cmd: [string, string[]]): Promise<Server> {
  const child = new Deno.Command(cmd[0], {
    args: cmd[1],
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
  let onReady: ((port: number) => void) | undefined;
  const ready = new Promise<number>((resolve) => onReady = resolve);
  // Keep draining stderr for the server's whole life so that it never blocks.
  void readLines(child.stderr, (line) => {
    if (log.length < 64 * 1024) log += `${line}\n`;
    const match = /listening on (\S+):(\d+)/.exec(line);
    if (match) {
      onReady?.(Number(match[2]));
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
  const server: Server = { child, pid, port: 0, log: () => log, exited };
  if ("port" in outcome) return { ...server, port: outcome.port };
  if ("timeout" in outcome) await stopServer(server);
  else await sleep(50); // Let the last stderr lines arrive.
  throw new Error(
    `${cmd[0]} ${cmd[1].join(" ")}: ${
      "status" in outcome ? `exited ${outcome.status.code}` : "not ready in time"
    }: ${log.trim().split("\n").slice(-3).join(" | ") || "(no output)"}`,
  );
}

/** SIGTERM by pid, then SIGKILL if it is still there after the grace period. */
export async function stopServer(server: Server): Promise<Deno.CommandStatus> {
  try {
    Deno.kill(server.pid, "SIGTERM");
  } catch {
    // Already gone.
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const status = await Promise.race([
    server.exited,
    new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), STOP_TIMEOUT_MS)),
  ]);
  clearTimeout(timer);
  if (status !== null) return status;
  try {
    Deno.kill(server.pid, "SIGKILL");
  } catch {
    // Already gone.
  }
  return await server.exited;
}

/** The median of some numbers (the mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** A number for a table: fixed digits with thousands separators, "—" when missing. */
export function fmt(value: number | undefined, digits = 0): string {
  return value === undefined || !Number.isFinite(value) ? "—" : value.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}
