/**
 * One measured run of a `bench/e2e.ts` cell: wrk's load against a started
 * stack, its requests and latency, HAProxy's counts of the responses, and the
 * CPU of HAProxy, the agent and wrk over the run's middle (from `/proc`).
 *
 * @module
 */

import process from "node:process";
import { coreTimes, cpuSeconds, type Proc, sleep, startProc } from "../_bench.ts";
import { readStats, type Stack, type Variant } from "./stack.ts";

/** What a measured run needs to know. */
export interface MeasureOptions {
  seconds: number;
  warmup: number;
  wrkThreads: number;
  lua: boolean;
}

/** The Lua script that counts responses by status and body in wrk (`--lua`). */
export const LUA = "bench/e2e/status.lua";
/** The CPU window skips this much of the measured run's start (connections opening)... */
export const WINDOW_SKIP_MS = 1_000;
/** ...and stops this long before its planned end. */
const WINDOW_TAIL_MS = 500;

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

// ---------------------------------------------------------------- wrk

/** One measured run (a cell at one connection count). */
export interface Run {
  variant: string;
  /** E.g. "HAProxy 3.4.0". */
  haproxy: string;
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

function wrkArgs(
  opts: MeasureOptions,
  connections: number,
  seconds: number,
  stack: Stack,
): string[] {
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

/** Warms up, then runs wrk once and measures it. */
export async function measure(
  stack: Stack,
  variant: Variant,
  rep: number,
  connections: number,
  opts: MeasureOptions,
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
    haproxy: variant.haproxy.label,
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
