/**
 * The processes of one `bench/e2e.ts` cell: an HAProxy and, unless it runs
 * alone, the agent it asks (spoa on Deno or Bun, or HAProxy's C example
 * agent), started on free ports and stopped by PID; and HAProxy's stats.
 *
 * @module
 */

import {
  BUN,
  cAgentBin,
  DENO,
  freePort,
  type Proc,
  ROOT,
  type Runtime,
  sleep,
  startCAgent,
  startProc,
  startServer,
  stopProc,
  waitForPort,
} from "../_bench.ts";
import type { HaproxyBuild } from "../../tests/_builds.ts";
import { floorFile } from "../floor/templates.ts";

/**
 * What answers HAProxy's NOTIFYs: spoa on a runtime, the C example agent, or
 * a floor agent (`bench/floor/`: fixed answers, in C or on a runtime).
 */
export type AgentKind = Runtime | "c" | "floor-c" | "floor-deno" | "floor-bun";

/** Every agent kind. */
export const AGENT_KINDS: readonly AgentKind[] = [
  "deno",
  "bun",
  "c",
  "floor-c",
  "floor-deno",
  "floor-bun",
];

/** How an agent kind is named in tables. */
export function agentName(kind: AgentKind): string {
  return {
    deno: "spoa Deno",
    bun: "spoa Bun",
    c: "C agent",
    "floor-c": "floor C",
    "floor-deno": "floor Deno",
    "floor-bun": "floor Bun",
  }[kind];
}

/** HAProxy and agent configuration files of a setup (paths from the root). */
export interface Setup {
  /** For labels, e.g. "bench" or a file's base name. */
  name: string;
  /** HAProxy's configuration with the agent. */
  config: string;
  /** The SPOE file it names through `SPOE_CONF`. */
  spoe: string;
}

/** One column of the comparison: an HAProxy, alone or with an agent. */
export interface Variant {
  /** E.g. "HAProxy 2.6.12 alone", "HAProxy 3.4.0 + spoa Bun -n 1". */
  label: string;
  /** The agent's part of the label ("alone", "spoa Deno -n 1", "C agent"). */
  agentLabel: string;
  haproxy: HaproxyBuild;
  agent?: AgentKind;
  workers?: number;
  /** How HAProxy reaches the agent (TCP by default). */
  transport?: "tcp" | "unix";
  setup?: Setup;
}

/** What every stack of a run shares. */
export interface StackOptions {
  maxconn: number;
  timeoutProcessing: string;
  nbthread: number | undefined;
  agentArgs: string[];
}

/** Started processes of one cell. */
export interface Stack {
  haproxy: Proc;
  agent?: Proc;
  port: number;
  statsPort: number;
  dir: string;
}

/** HAProxy's counters that a run reads. */
export interface Stats {
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

/** HAProxy without the agent (`bench/e2e/alone.cfg`). */
export const ALONE_CFG = "bench/e2e/alone.cfg";
/** The agent's permissions under Deno, as `deno task start`. */
const DENO_AGENT_FLAGS = ["--allow-net", "--allow-read=lib"];
const START_TIMEOUT_MS = 15_000;
let floorBin: string | undefined;

/** `bench/floor/floor.c`, built once per run with `cc -O2` into a temporary folder. */
function floorBinary(): string {
  if (floorBin !== undefined) return floorBin;
  const out = `${Deno.makeTempDirSync({ prefix: "spoa-floor-" })}/floor`;
  let result: Deno.CommandOutput;
  try {
    result = new Deno.Command("cc", {
      args: ["-O2", "-o", out, `${ROOT}bench/floor/floor.c`],
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
  } catch (err) {
    throw new Error(`cannot run cc to build the C floor agent (apt-get install -y gcc): ${err}`);
  }
  if (!result.success) {
    throw new Error(`cc failed on bench/floor/floor.c: ${new TextDecoder().decode(result.stderr)}`);
  }
  return floorBin = out;
}

async function startAgent(
  variant: Variant,
  opts: StackOptions,
  dir: string,
): Promise<{ proc: Proc; address: string }> {
  if (variant.agent === "c") {
    if (cAgentBin() === undefined) throw new Error("SPOA_C_AGENT_BIN is not set");
    const server = await startCAgent();
    return { proc: server, address: `127.0.0.1:${server.port}` };
  }
  if (variant.agent === "floor-c") {
    const file = `${dir}/floor.frames`;
    Deno.writeFileSync(file, floorFile());
    const server = await startServer([floorBinary(), ["-p", "0", "-f", file]]);
    return { proc: server, address: `127.0.0.1:${server.port}` };
  }
  if (variant.agent === "floor-deno" || variant.agent === "floor-bun") {
    const args = ["bench/floor/floor.ts", "-p", "0", "-a", "127.0.0.1"];
    const server = await startServer(
      variant.agent === "floor-deno" ? [DENO, ["run", "--allow-net", ...args]] : [BUN, args],
    );
    return { proc: server, address: `127.0.0.1:${server.port}` };
  }
  const unix = variant.transport === "unix" ? `${dir}/spoa.sock` : undefined;
  const listen = unix === undefined ? ["-p", "0", "-a", "127.0.0.1"] : ["-a", `unix:${unix}`];
  const args = [...listen, "-n", String(variant.workers), ...opts.agentArgs];
  // The socket's folder is read and written (a stale file is replaced, the file removed on exit).
  const denoFlags = unix === undefined
    ? DENO_AGENT_FLAGS
    : ["--allow-net", `--allow-read=lib,${dir}`, `--allow-write=${dir}`];
  const server = await startServer(
    variant.agent === "deno"
      ? [DENO, ["run", ...denoFlags, "main.ts", ...args]]
      : [BUN, ["main.ts", ...args]],
  );
  return {
    proc: server,
    address: unix === undefined ? `127.0.0.1:${server.port}` : `unix@${unix}`,
  };
}

/**
 * Starts a cell's agent (if any), then its HAProxy, and waits until HAProxy
 * listens and counts the agent's server as up.
 */
export async function startStack(variant: Variant, opts: StackOptions): Promise<Stack> {
  const dir = Deno.makeTempDirSync({ prefix: "spoa-e2e-" });
  let agent: { proc: Proc; address: string } | undefined;
  if (variant.agent !== undefined) agent = await startAgent(variant, opts, dir);
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
  const config = agent === undefined ? ALONE_CFG : variant.setup!.config;
  const env: Record<string, string> = {
    HAPROXY_BIND: `127.0.0.1:${port}`,
    SPOA_ADDR: agent?.address ?? "127.0.0.1:9",
    SPOE_CONF: (variant.setup?.spoe ?? "").startsWith("/")
      ? variant.setup!.spoe
      : `${ROOT}${variant.setup?.spoe ?? ""}`,
    AGENT_MAXCONN: String(opts.maxconn),
    SPOE_TIMEOUT_PROCESSING: opts.timeoutProcessing,
  };
  const haproxy = startProc(
    [variant.haproxy.bin, ["-db", "-f", config, "-f", `${dir}/e2e-extra.cfg`]],
    { env, stdout: true },
  );
  const stack: Stack = { haproxy, port, statsPort, dir, ...(agent ? { agent: agent.proc } : {}) };
  try {
    await waitForPort(port, haproxy, "HAProxy", START_TIMEOUT_MS);
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
    await stopStack(stack, variant);
    throw err;
  }
  return stack;
}

/** Stops HAProxy, then the agent (SIGTERM: spoa drains), by PID; returns problems. */
export async function stopStack(stack: Stack, variant: Variant): Promise<string[]> {
  const problems: string[] = [];
  await stopProc(stack.haproxy, "SIGTERM");
  if (stack.agent !== undefined) {
    const status = await stopProc(stack.agent, "SIGTERM");
    // The C agents have no SIGTERM handler: they die of it, and the example
    // logs each reset connection.
    if (variant.agent !== "c" && variant.agent !== "floor-c") {
      if (status.code !== 0) {
        problems.push(`agent stopped with ${status.signal ?? `exit ${status.code}`}`);
      }
      const bad = stack.agent.log().split("\n").filter((l) => /\b(warn|error|fatal)\b/i.test(l));
      if (bad.length > 0) {
        problems.push(`agent logged ${bad.length} warning(s)/error(s): ${bad[0]}`);
      }
    }
  }
  Deno.removeSync(stack.dir, { recursive: true });
  return problems;
}

/** Reads HAProxy's CSV stats: the frontend's responses, the agent server's sessions. */
export async function readStats(stack: Stack): Promise<Stats> {
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
