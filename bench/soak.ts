/**
 * Soak: about ten minutes of HTTP load through Debian's HAProxy (2.6) with the
 * per-request configuration (`haproxy/haproxy-request.cfg` and
 * `haproxy/spoe-iprep-request.conf`, so every request waits for a score from
 * the agent), watching the agent's memory and the SPOE errors. Not part of CI.
 *
 * 1. Starts the agent (`main.ts -n 1`, on Deno or Bun) and HAProxy on free
 *    loopback ports, stopped by PID at the end (and on Ctrl-C).
 * 2. Calibrates: keep-alive connections send requests back to back for a few
 *    seconds; the rate they reach is the capacity of this machine (client,
 *    HAProxy and agent sharing its cores).
 * 3. Soaks at a fixed rate, half the capacity unless `--rate` says otherwise:
 *    keep-alive HTTP/1.1 connections take requests from one schedule
 *    (request k is due at start + k/rate; `wrk` has no rate limit), sampling
 *    the agent's RSS (`VmRSS` of `/proc/<pid>/status`) and its connections
 *    (`ss`) every 10 s, and counting SPOE errors (responses carrying
 *    `spoe_error=`, the 500 of `option set-on-error`) and any other failure.
 * 4. Prints duration, requests, rate, errors, latency, the CPU used by the
 *    agent, HAProxy, this client, interrupts and other processes (other work
 *    on the machine disturbs rate, latency and `timeout processing`), the
 *    agent's warn/error log lines, RSS min/max and the averages of the first
 *    and last minute (of the first and last half for runs under two minutes),
 *    and their drift in %: flat is within 10 %.
 *
 * Exits 1 when there was any error (SPOE or other), the RSS grew by more than
 * 10 %, or the agent died.
 *
 * ```sh
 * node_modules/deno/deno run -A bench/soak.ts [--minutes 10] [--runtime deno|bun]
 *   [--rate <req/s>] [--connections 16] [--calibrate 5] [--sample 10]
 * ```
 *
 * Needs `haproxy` (`apt-get install -y haproxy`); HAProxy is the first of
 * `SPOA_HAPROXY_BINS` (`tests/_builds.ts`), Debian's `haproxy` when unset.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { establishedTo, type Haproxy, haproxyVersion, startHaproxy } from "../tests/_haproxy.ts";

const USAGE = `Usage: soak.ts [--minutes 10] [--runtime deno|bun] [--rate <req/s>]
               [--connections 16] [--calibrate <seconds>] [--sample <seconds>]`;

const ROOT = new URL("../", import.meta.url).pathname;
const RUNTIMES = {
  deno: [`${ROOT}node_modules/deno/deno`, "run", "--allow-net", `--allow-read=${ROOT}lib`],
  bun: [`${ROOT}node_modules/bun/bin/bun.exe`],
} as const;
type Runtime = keyof typeof RUNTIMES;
/** RSS may grow by this much (in %) between the first and the last minute. */
const MAX_DRIFT = 10;
const READY_TIMEOUT_MS = 15_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------- the agent

interface Agent {
  readonly pid: number;
  readonly port: number;
  /** Its warn and error log lines so far. */
  readonly bad: string[];
  stop(): Promise<void>;
}

async function startAgent(runtime: Runtime): Promise<Agent> {
  const [cmd, ...pre] = RUNTIMES[runtime];
  const child = new Deno.Command(cmd, {
    args: [...pre, `${ROOT}main.ts`, "-n", "1", "-p", "0", "-a", "127.0.0.1"],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const bad: string[] = [];
  let ready!: (port: number) => void;
  const listening = new Promise<number>((resolve) => ready = resolve);
  // Keep draining stderr for the whole run, so that the pipe never fills up.
  const drained = (async () => {
    let rest = "";
    for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) {
      rest += text;
      let nl;
      while ((nl = rest.indexOf("\n")) >= 0) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        const m = /^\S+ info listening on \S+:(\d+)/.exec(line);
        if (m) ready(Number(m[1]));
        if (/^\S+ (?:warn|error) /.test(line)) bad.push(line);
      }
    }
  })();
  const stop = async () => {
    try {
      Deno.kill(child.pid, "SIGTERM");
    } catch {
      // Already gone.
    }
    const timer = setTimeout(() => {
      try {
        Deno.kill(child.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    }, 6000);
    await child.status;
    await drained;
    clearTimeout(timer);
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const port = await Promise.race([
    listening,
    child.status.then((s) => {
      throw new Error(`the agent exited with ${s.code} before listening`);
    }),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("no 'listening on' line")), READY_TIMEOUT_MS);
    }),
  ]).catch(async (err) => {
    await stop();
    throw err;
  }).finally(() => clearTimeout(timer));
  return { pid: child.pid, port, bad, stop };
}

let clockTicks = 100;
try {
  const out = new Deno.Command("getconf", { args: ["CLK_TCK"], stderr: "null" }).outputSync();
  const n = Number(new TextDecoder().decode(out.stdout).trim());
  if (out.success && Number.isInteger(n) && n > 0) clockTicks = n;
} catch {
  // No getconf: Linux's USER_HZ is 100.
}

/** CPU seconds of a process so far (utime + stime, all threads). */
function procCpu(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}

/**
 * CPU seconds the whole machine spent so far (all cores): in processes (user,
 * nice, system) and in interrupts (irq, softirq: loopback TCP mostly, which
 * no process is charged for).
 */
function machineCpu(): { processes: number; interrupts: number } {
  const f = Deno.readTextFileSync("/proc/stat").split("\n")[0]!.trim().split(/\s+/).slice(1)
    .map(Number);
  // user nice system idle iowait irq softirq steal
  return {
    processes: (f[0]! + f[1]! + f[2]!) / clockTicks,
    interrupts: (f[5]! + f[6]!) / clockTicks,
  };
}

/** The resident set of a process in KiB. */
function rssKib(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS for PID ${pid}`);
  return Number(m[1]);
}

// ---------------------------------------------------------------- the client

const REQUEST = new TextEncoder().encode("GET / HTTP/1.1\r\nHost: soak\r\n\r\n");
const HEADER_END = [13, 10, 13, 10];

/** Counts of one phase. */
class Tally {
  requests = 0;
  /** Status 200 with `ip_score=`. */
  scored = 0;
  /** Status 403: a score below 20 (an answer, not an error). */
  denied = 0;
  /** Responses carrying `spoe_error=`. */
  spoeErrors = 0;
  /** Anything else: other statuses, bodies without a score, broken connections. */
  otherErrors = 0;
  /** The first few failures, for the report. */
  readonly samples: string[] = [];
  /** Latencies in µs, bucketed by 10 µs up to 1 s (the last bucket takes the rest). */
  readonly latency = new Uint32Array(100_001);

  fail(what: string): void {
    this.otherErrors++;
    if (this.samples.length < 5) this.samples.push(what);
  }

  percentile(p: number): number {
    const total = this.latency.reduce((a, b) => a + b, 0);
    let seen = 0;
    for (let i = 0; i < this.latency.length; i++) {
      seen += this.latency[i]!;
      if (seen >= total * p) return i * 10;
    }
    return NaN;
  }
}

function indexOfHeaderEnd(buf: Uint8Array, end: number): number {
  outer: for (let i = 0; i + 4 <= end; i++) {
    for (let j = 0; j < 4; j++) if (buf[i + j] !== HEADER_END[j]) continue outer;
    return i;
  }
  return -1;
}

/** One keep-alive HTTP/1.1 connection to HAProxy; reconnects when HAProxy closes it. */
class HttpConn {
  readonly #port: number;
  #conn: Deno.TcpConn | undefined;
  #buf = new Uint8Array(16 * 1024);
  #len = 0;
  readonly #decoder = new TextDecoder();

  constructor(port: number) {
    this.#port = port;
  }

  /** Sends one GET and returns status and body; throws on a broken connection. */
  async request(): Promise<{ status: number; body: string }> {
    if (this.#conn === undefined) {
      this.#conn = await Deno.connect({ hostname: "127.0.0.1", port: this.#port });
      this.#conn.setNoDelay(true);
      this.#len = 0;
    }
    const conn = this.#conn;
    try {
      for (let n = 0; n < REQUEST.length;) n += await conn.write(REQUEST.subarray(n));
      for (;;) {
        const head = indexOfHeaderEnd(this.#buf, this.#len);
        if (head >= 0) {
          const header = this.#decoder.decode(this.#buf.subarray(0, head));
          const status = Number(header.slice(9, 12));
          const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(header)?.[1] ?? NaN);
          if (!Number.isInteger(length)) throw new Error(`no content-length: ${header}`);
          const total = head + 4 + length;
          if (this.#len >= total) {
            const body = this.#decoder.decode(this.#buf.subarray(head + 4, total));
            this.#buf.copyWithin(0, total, this.#len);
            this.#len -= total;
            if (/\r\nconnection:\s*close/i.test(header)) this.close();
            return { status, body };
          }
        }
        if (this.#len === this.#buf.length) {
          const grown = new Uint8Array(this.#buf.length * 2);
          grown.set(this.#buf);
          this.#buf = grown;
        }
        const n = await conn.read(this.#buf.subarray(this.#len));
        if (n === null) throw new Error("HAProxy closed the connection before answering");
        this.#len += n;
      }
    } catch (err) {
      this.close();
      throw err;
    }
  }

  close(): void {
    try {
      this.#conn?.close();
    } catch {
      // Already closed.
    }
    this.#conn = undefined;
  }
}

async function oneRequest(conn: HttpConn, tally: Tally): Promise<void> {
  const t0 = performance.now();
  try {
    const { status, body } = await conn.request();
    const us = Math.round((performance.now() - t0) * 1000);
    tally.latency[Math.min(Math.floor(us / 10), tally.latency.length - 1)]!++;
    if (body.includes("spoe_error=")) {
      tally.spoeErrors++;
      if (tally.samples.length < 5) tally.samples.push(`${status} ${body.trim()}`);
    } else if (status === 200 && body.startsWith("ip_score=")) tally.scored++;
    else if (status === 403) tally.denied++;
    else tally.fail(`${status} ${body.trim().slice(0, 80)}`);
  } catch (err) {
    tally.fail(err instanceof Error ? err.message : String(err));
  }
  tally.requests++;
}

/**
 * Runs `connections` keep-alive connections until `endAt`: back to back when
 * `rate` is 0, otherwise each takes the next slot of the shared schedule.
 */
async function drive(
  port: number,
  connections: number,
  endAt: number,
  rate: number,
  tally: Tally,
): Promise<void> {
  const start = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: connections }, async () => {
    const conn = new HttpConn(port);
    try {
      for (;;) {
        if (rate > 0) {
          const due = start + (next++ * 1000) / rate;
          // Slots missed by a starved client are dropped at the end, not caught up.
          if (due >= endAt || performance.now() >= endAt) return;
          const wait = due - performance.now();
          if (wait >= 1) await sleep(wait);
        } else if (performance.now() >= endAt) return;
        await oneRequest(conn, tally);
      }
    } finally {
      conn.close();
    }
  }));
}

// ---------------------------------------------------------------- main

function parse() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      minutes: { type: "string", default: "10" },
      runtime: { type: "string", default: "deno" },
      rate: { type: "string" },
      connections: { type: "string", default: "16" },
      calibrate: { type: "string", default: "5" },
      sample: { type: "string", default: "10" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const positive = (name: string, text: string | undefined) => {
    const n = Number(text);
    if (!(n > 0)) {
      console.error(`soak: --${name} must be a positive number, got ${text}\n${USAGE}`);
      Deno.exit(2);
    }
    return n;
  };
  if (!(values.runtime in RUNTIMES)) {
    console.error(`soak: --runtime must be deno or bun, got ${values.runtime}\n${USAGE}`);
    Deno.exit(2);
  }
  return {
    minutes: positive("minutes", values.minutes),
    runtime: values.runtime as Runtime,
    rate: values.rate === undefined ? undefined : positive("rate", values.rate),
    connections: Math.round(positive("connections", values.connections)),
    calibrateS: positive("calibrate", values.calibrate),
    sampleS: positive("sample", values.sample),
  };
}

const mib = (kib: number) => (kib / 1024).toFixed(1);
const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

async function main(): Promise<number> {
  const opts = parse();
  console.log(`${haproxyVersion()}; agent on ${opts.runtime} (-n 1)`);
  const agent = await startAgent(opts.runtime);
  let haproxy: Haproxy | undefined;
  let stopping: Promise<void> | undefined;
  const cleanup = () =>
    stopping ??= (async () => {
      await haproxy?.stop("SIGTERM");
      await agent.stop();
    })();
  const onSignal = () => void cleanup().then(() => Deno.exit(130));
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    haproxy = await startHaproxy({
      config: "haproxy-request.cfg",
      spoe: "spoe-iprep-request.conf",
      agentPort: agent.port,
    });
    console.log(
      `agent PID ${agent.pid} on 127.0.0.1:${agent.port}; ` +
        `HAProxy PID ${haproxy.pid} on 127.0.0.1:${haproxy.port}`,
    );

    // Calibration, which also warms the agent, HAProxy and their connections up.
    let rate = opts.rate;
    const calibration = new Tally();
    const calStart = performance.now();
    await drive(haproxy.port, opts.connections, calStart + opts.calibrateS * 1000, 0, calibration);
    const capacity = calibration.requests / ((performance.now() - calStart) / 1000);
    console.log(
      `calibration: ${calibration.requests} requests in ${opts.calibrateS} s over ` +
        `${opts.connections} connections: capacity ${Math.round(capacity)} req/s ` +
        `(${calibration.spoeErrors} SPOE errors, ${calibration.otherErrors} other errors)`,
    );
    rate ??= Math.max(1, Math.round(capacity / 2));

    // The soak itself.
    const tally = new Tally();
    const durationMs = opts.minutes * 60_000;
    const start = performance.now();
    const endAt = start + durationMs;
    console.log(`soak: ${opts.minutes} min at ${rate} req/s; RSS every ${opts.sampleS} s`);
    const samples: { t: number; kib: number; conns: number }[] = [];
    const cpuPids = [agent.pid, haproxy.pid, Deno.pid];
    const cpuAtStart = cpuPids.map(procCpu);
    const machineAtStart = machineCpu();
    let agentDied = false;
    const sample = () => {
      const t = (performance.now() - start) / 1000;
      let kib: number;
      try {
        kib = rssKib(agent.pid);
      } catch {
        if (!agentDied) console.log(`  ${t.toFixed(0).padStart(4)} s  the agent is gone`);
        agentDied = true;
        return;
      }
      // HAProxy 2.x opens agent connections on demand: RSS follows their number.
      const conns = establishedTo(agent.port);
      samples.push({ t, kib, conns });
      console.log(
        `  ${t.toFixed(0).padStart(4)} s  RSS ${mib(kib).padStart(6)} MiB  ` +
          `agent connections ${String(conns).padStart(3)}  ` +
          `requests ${tally.requests}  SPOE errors ${tally.spoeErrors}  other ${tally.otherErrors}`,
      );
    };
    sample();
    const sampler = setInterval(sample, opts.sampleS * 1000);
    try {
      await drive(haproxy.port, opts.connections, endAt, rate, tally);
    } finally {
      clearInterval(sampler);
    }
    const seconds = (performance.now() - start) / 1000;
    const [agentCpu, haproxyCpu, selfCpu] = cpuPids.map((pid, i) => {
      try {
        return procCpu(pid) - cpuAtStart[i]!;
      } catch {
        return NaN; // The process is gone.
      }
    });
    const machine = machineCpu();
    const irqCpu = machine.interrupts - machineAtStart.interrupts;
    const otherCpu = machine.processes - machineAtStart.processes - agentCpu! - haproxyCpu! -
      selfCpu!;
    const pct = (cpu: number) => `${(cpu / seconds * 100).toFixed(0)} %`;
    if (seconds - (samples.at(-1)?.t ?? 0) > 1) sample();

    // RSS: the first and the last minute (halves for a run under two minutes).
    const window = Math.min(60, seconds / 2);
    const first = samples.filter((s) => s.t <= window).map((s) => s.kib);
    const last = samples.filter((s) => s.t >= seconds - window).map((s) => s.kib);
    const all = samples.map((s) => s.kib);
    const firstAvg = avg(first);
    const lastAvg = avg(last);
    const drift = (lastAvg - firstAvg) / firstAvg * 100;
    const flat = Math.abs(drift) <= MAX_DRIFT;
    const errors = tally.spoeErrors + tally.otherErrors;
    const label = window === 60 ? "minute" : `${window.toFixed(0)} s`;

    console.log("");
    console.log(`runtime            ${opts.runtime} (-n 1), ${haproxyVersion().split(" - ")[0]}`);
    console.log(`duration           ${seconds.toFixed(1)} s`);
    console.log(`requests           ${tally.requests}`);
    console.log(
      `rate               ${(tally.requests / seconds).toFixed(1)} req/s (target ${rate}, ` +
        `capacity ${Math.round(capacity)})`,
    );
    console.log(`scored / denied    ${tally.scored} / ${tally.denied}`);
    console.log(`SPOE errors        ${tally.spoeErrors}`);
    console.log(`other errors       ${tally.otherErrors}`);
    for (const s of tally.samples) console.log(`  e.g. ${s}`);
    console.log(
      `latency            p50 ${tally.percentile(0.5)} µs, p99 ${tally.percentile(0.99)} µs, ` +
        `p99.9 ${tally.percentile(0.999)} µs`,
    );
    console.log(
      `CPU (% of a core)  agent ${pct(agentCpu!)}, HAProxy ${pct(haproxyCpu!)}, ` +
        `client ${pct(selfCpu!)}, interrupts ${pct(irqCpu)}, other processes ` +
        `${pct(Math.max(0, otherCpu))} (${navigator.hardwareConcurrency} cores)`,
    );
    if (otherCpu / seconds > 0.25) {
      console.log("  (other processes used the cores too: rate, latency and errors are disturbed)");
    }
    console.log(`agent warn/error   ${agent.bad.length} log lines`);
    for (const line of agent.bad.slice(0, 5)) console.log(`  ${line}`);
    const conns = samples.map((s) => s.conns);
    console.log(
      `agent connections  ${Math.min(...conns)}..${
        Math.max(...conns)
      } (HAProxy opens them on demand)`,
    );
    console.log(`RSS samples        ${samples.length}`);
    console.log(`RSS min / max      ${mib(Math.min(...all))} / ${mib(Math.max(...all))} MiB`);
    console.log(`RSS first ${label} avg ${mib(firstAvg)} MiB`);
    console.log(`RSS last ${label} avg  ${mib(lastAvg)} MiB`);
    console.log(
      `RSS drift          ${drift >= 0 ? "+" : ""}${drift.toFixed(1)} % ` +
        `(${
          flat ? "flat" : Number.isNaN(drift) ? "unknown" : drift > 0 ? "growing" : "shrinking"
        }; flat is within ${MAX_DRIFT} %)`,
    );
    if (agentDied) console.log("the agent died during the soak");
    const failed = errors > 0 || drift > MAX_DRIFT || agentDied;
    console.log(failed ? "FAIL" : "PASS");
    return failed ? 1 : 0;
  } finally {
    await cleanup();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

Deno.exit(await main());
