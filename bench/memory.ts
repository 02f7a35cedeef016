/**
 * Memory and start-up time of the agent (`-n 1`), for each runtime and for
 * the compiled Bun binary (`dist/spoa-bun`, built with `deno task
 * compile:bun` when missing):
 *
 * - idle RSS: VmRSS one second after the agent logged "listening on";
 * - RSS with 1,000 idle HAProxy-style connections: each sends a HAPROXY-HELLO,
 *   gets its AGENT-HELLO, then stays idle; VmRSS one second after the last
 *   AGENT-HELLO (and again after they are all closed);
 * - RSS with 10,000 connections that each did a HELLO and one NOTIFY (and got
 *   its ACK), then stay idle, as the pools of agent connections of a large
 *   HAProxy 3.x setup do; measured in a start of its own;
 * - with `--late N`, RSS again N seconds later, the connections still open
 *   (V8 gives back the young generation it grew while they were opened only
 *   after some 20–30 idle seconds);
 * - start-up time: from spawning the process to the first accepted
 *   connection (a tight `Deno.connect` retry loop on the port given with
 *   `-p`), and to the AGENT-HELLO answering a HELLO on it.
 *
 * The targets `deno-echo` and `bun-echo` are the runtime's floor: the bare
 * echo server of `bench/echo.ts` (one read buffer of `--echo-read-buffer`
 * bytes per connection on Deno) holding the same connections, each of which
 * got its HELLO (and NOTIFY) echoed back. They have no start-up row.
 *
 * RSS figures are the median of `--rss-runs` starts, start-up times the
 * median of `--starts` starts. Before each start it waits (up to `--wait-idle`
 * seconds) for the machine to be idle: other processes slow start-up down. The connections are opened by this process,
 * which needs the descriptors: when its soft `ulimit -n` is too low it
 * re-runs itself under `sh -c 'ulimit -n N; exec ...'` (N up to the hard
 * limit); the agent inherits the limit. (Deno 2.9 raises its own soft limit
 * to the hard one as it starts, so only a hard limit below the connections
 * plus 200 stops it: `ulimit -Hn`.)
 *
 * ```sh
 * node_modules/deno/deno run -A bench/memory.ts [--runtime deno,bun,bun-binary]
 *   [--connections 1000] [--notify-connections 10000] [--rss-runs 3]
 *   [--starts 10] [--rebuild] [--wait-idle 10] [--echo-read-buffer 32768] [--late 0]
 * ```
 *
 * Prints markdown tables on stdout; progress on stderr.
 *
 * @module
 */

import {
  BUN,
  BUN_BINARY,
  DENO,
  exitUsage,
  fmt,
  killLive,
  live,
  median,
  parseFlags,
  ROOT,
  rssBytes,
  type Server,
  serverCommand,
  sleep,
  startServer,
  stopServer,
  waitIdle,
} from "./_bench.ts";
import { closeAll, handshake, notifyOnce } from "./_memory_client.ts";

const USAGE = `Usage: memory.ts [--runtime deno,bun,bun-binary,deno-echo,bun-echo]
                 [--connections 1000] [--notify-connections 10000]
                 [--rss-runs 3] [--starts 10] [--rebuild] [--wait-idle 10]
                 [--echo-read-buffer 32768] [--late 0]`;

type Target = "deno" | "bun" | "bun-binary" | "deno-echo" | "bun-echo";
const TARGETS: readonly Target[] = ["deno", "bun", "bun-binary", "deno-echo", "bun-echo"];
const DEFAULT_TARGETS: readonly Target[] = ["deno", "bun", "bun-binary"];
/** Descriptors beyond the connections: the runtime's own, stdio, the listener. */
const FD_SLACK = 200;
/** Connections opened at once (the listen backlog is finite). */
const OPEN_BATCH = 50;
/** How long the RSS may settle before it is read. */
const SETTLE_MS = 1000;
/** How long one start may take before the connect loop gives up. */
const START_TIMEOUT_MS = 15_000;
/** The agent's default `--max-connections`: above it the agent is given a higher one. */
const AGENT_MAX_CONNECTIONS = 10_000;
const REEXEC_ENV = "SPOA_BENCH_MEMORY_REEXEC";

interface Options {
  targets: Target[];
  connections: number;
  notifyConnections: number;
  rssRuns: number;
  starts: number;
  rebuild: boolean;
  waitIdle: number;
  echoReadBuffer: number;
  late: number;
}

function usage(message: string): never {
  return exitUsage("memory", USAGE, message);
}

function parseOptions(argv: string[]): Options {
  const values = parseFlags("memory", USAGE, {
    args: argv,
    allowPositionals: false,
    options: {
      runtime: { type: "string", default: DEFAULT_TARGETS.join(",") },
      connections: { type: "string", default: "1000" },
      "notify-connections": { type: "string", default: "10000" },
      "rss-runs": { type: "string", default: "3" },
      starts: { type: "string", default: "10" },
      rebuild: { type: "boolean", default: false },
      "wait-idle": { type: "string", default: "10" },
      "echo-read-buffer": { type: "string", default: "32768" },
      late: { type: "string", default: "0" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const targets = values.runtime.split(",").map((s) => s.trim()).filter((s) => s !== "");
  for (const t of targets) if (!TARGETS.includes(t as Target)) usage(`unknown runtime "${t}"`);
  const int = (name: string, text: string, min: number): number => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min) usage(`--${name} must be an integer >= ${min}`);
    return n;
  };
  return {
    targets: targets as Target[],
    connections: int("connections", values.connections, 0),
    notifyConnections: int("notify-connections", values["notify-connections"], 0),
    rssRuns: int("rss-runs", values["rss-runs"], 1),
    starts: int("starts", values.starts, 1),
    rebuild: values.rebuild,
    waitIdle: int("wait-idle", values["wait-idle"], 0),
    echoReadBuffer: int("echo-read-buffer", values["echo-read-buffer"], 1),
    late: int("late", values.late, 0),
  };
}

/** Soft and hard limits on open files, from /proc/self/limits. */
function fileLimits(): { soft: number; hard: number } {
  const text = Deno.readTextFileSync("/proc/self/limits");
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
  const num = (s: string | undefined) => s === "unlimited" ? Infinity : Number(s);
  return { soft: num(m?.[1]), hard: num(m?.[2]) };
}

/** Re-runs this script under a higher soft limit when needed; returns only if not needed. */
async function ensureFileLimit(need: number): Promise<void> {
  const { soft, hard } = fileLimits();
  if (soft >= need) return;
  if (hard < need || Deno.env.get(REEXEC_ENV) !== undefined) {
    console.error(
      `memory: need ${need} open files, the limit is ${soft} (hard ${hard}); ` +
        `use fewer connections or raise the hard limit`,
    );
    Deno.exit(1);
  }
  const target = Math.min(hard, Math.max(need, 4096));
  console.error(`memory: soft ulimit -n is ${soft}; re-running under ulimit -n ${target}`);
  const args = [
    "-c",
    `ulimit -n ${target} && exec "$@"`,
    "sh",
    Deno.execPath(),
    "run",
    "-A",
    new URL(import.meta.url).pathname,
    ...Deno.args,
  ];
  const status = await new Deno.Command("sh", {
    args,
    env: { [REEXEC_ENV]: "1" },
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn().status;
  Deno.exit(status.code);
}

function isEcho(target: Target): boolean {
  return target === "deno-echo" || target === "bun-echo";
}

/** The server of a target, serving `count` connections at once. */
function targetCommand(target: Target, count: number, echoReadBuffer: number): [string, string[]] {
  const address = ["-p", "0", "-a", "127.0.0.1"];
  if (target === "deno-echo") {
    return [DENO, ["run", "--allow-net", "bench/echo.ts", ...address, "-b", `${echoReadBuffer}`]];
  }
  if (target === "bun-echo") return [BUN, ["bench/echo.ts", ...address]];
  const max = count > AGENT_MAX_CONNECTIONS ? ["--max-connections", `${count}`] : [];
  return serverCommand(target, "agent", [...address, "-n", "1", ...max]);
}

interface RssRun {
  idleMb: number;
  loadedMb: number;
  /** `--late` seconds after `loadedMb`, the connections still open (NaN without). */
  lateMb: number;
  afterCloseMb: number;
}

/**
 * One start: idle RSS, then with `count` connections that did their HELLO
 * (and one NOTIFY each when `notify`), then after closing them.
 */
async function rssRun(target: Target, count: number, notify: boolean): Promise<RssRun> {
  const server = await startServer(targetCommand(target, count, opts.echoReadBuffer));
  const echo = isEcho(target);
  const conns: Deno.TcpConn[] = [];
  try {
    await sleep(SETTLE_MS);
    const idleMb = rssBytes(server.pid) / 2 ** 20;
    for (let i = 0; i < count; i += OPEN_BATCH) {
      await Promise.all(
        Array.from({ length: Math.min(OPEN_BATCH, count - i) }, async () => {
          const c = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
          conns.push(c);
          await handshake(c, echo);
          if (notify) await notifyOnce(c, echo);
        }),
      );
    }
    await sleep(SETTLE_MS);
    const loadedMb = rssBytes(server.pid) / 2 ** 20;
    let lateMb = NaN;
    if (opts.late > 0) {
      await sleep(opts.late * 1000);
      lateMb = rssBytes(server.pid) / 2 ** 20;
    }
    closeAll(conns);
    conns.length = 0;
    await sleep(SETTLE_MS);
    const afterCloseMb = rssBytes(server.pid) / 2 ** 20;
    return { idleMb, loadedMb, lateMb, afterCloseMb };
  } finally {
    closeAll(conns);
    await stopServer(server);
  }
}

/** A port that was free a moment ago. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

interface StartRun {
  connectMs: number;
  helloMs: number;
}

/** Spawns the agent on a known port; times the first accepted connection and its AGENT-HELLO. */
async function startRun(target: "deno" | "bun" | "bun-binary"): Promise<StartRun> {
  const port = freePort();
  const [cmd, args] = serverCommand(target, "agent", [
    "-p",
    String(port),
    "-a",
    "127.0.0.1",
    "-n",
    "1",
  ]);
  const t0 = performance.now();
  const child = new Deno.Command(cmd, {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  live.add(child.pid);
  const exited = child.status.then((s) => {
    live.delete(child.pid);
    return s;
  });
  let gone = false;
  void exited.then(() => gone = true);
  const server: Server = {
    child,
    pid: child.pid,
    port,
    ports: new Set([port]),
    log: () => "",
    exited,
    done: () => gone,
  };
  try {
    let conn: Deno.TcpConn | undefined;
    while (conn === undefined) {
      try {
        conn = await Deno.connect({ hostname: "127.0.0.1", port });
      } catch {
        if (gone) throw new Error(`${cmd} exited before accepting a connection`);
        if (performance.now() - t0 > START_TIMEOUT_MS) throw new Error(`${cmd}: no listener`);
      }
    }
    const connectMs = performance.now() - t0;
    try {
      await handshake(conn, false);
    } finally {
      closeAll([conn]);
    }
    const helloMs = performance.now() - t0;
    return { connectMs, helloMs };
  } finally {
    await stopServer(server);
  }
}

/** Builds dist/spoa-bun when it is missing (or `--rebuild`). */
async function ensureBinary(rebuild: boolean): Promise<string | undefined> {
  let exists = false;
  try {
    exists = Deno.statSync(`${ROOT}${BUN_BINARY}`).isFile;
  } catch {
    // Missing.
  }
  if (exists && !rebuild) return undefined;
  console.error(`memory: building ${BUN_BINARY} (deno task compile:bun) ...`);
  const out = await new Deno.Command(DENO, {
    args: ["task", "compile:bun"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    return `deno task compile:bun failed: ${new TextDecoder().decode(out.stderr).trim()}`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// Main

const opts = parseOptions(Deno.args);
await ensureFileLimit(Math.max(opts.connections, opts.notifyConnections) + FD_SLACK);

/** The connection counts measured, and whether each connection sends a NOTIFY. */
const points = [
  { count: opts.connections, notify: false },
  { count: opts.notifyConnections, notify: true },
].filter((p) => p.count > 0);

interface Row {
  target: Target;
  /** One list of runs per point. */
  rss: RssRun[][];
  starts: StartRun[];
  problem?: string;
}

const rows: Row[] = [];
const notes: string[] = [];
let busyStarts = 0;
try {
  for (const target of opts.targets) {
    const row: Row = { target, rss: points.map(() => []), starts: [] };
    rows.push(row);
    if (target === "bun-binary") {
      const problem = await ensureBinary(opts.rebuild);
      if (problem !== undefined) {
        row.problem = problem;
        continue;
      }
      const built = Deno.statSync(`${ROOT}${BUN_BINARY}`).mtime;
      notes.push(`${BUN_BINARY} built ${built?.toISOString() ?? "?"}.`);
    }
    try {
      for (const [p, { count, notify }] of points.entries()) {
        for (let i = 0; i < opts.rssRuns; i++) {
          const what = `${count} conns${notify ? " with a NOTIFY each" : ""}`;
          console.error(`memory: ${target} RSS run ${i + 1}/${opts.rssRuns}, ${what} ...`);
          const r = await rssRun(target, count, notify);
          const late = opts.late > 0 ? `, ${opts.late} s later ${fmt(r.lateMb, 1)} MB` : "";
          console.error(
            `memory:   idle ${fmt(r.idleMb, 1)} MB, ${what} ${fmt(r.loadedMb, 1)} MB${late}, ` +
              `after close ${fmt(r.afterCloseMb, 1)} MB`,
          );
          row.rss[p]!.push(r);
        }
      }
      if (target === "deno-echo" || target === "bun-echo") continue; // No start-up row.
      for (let i = 0; i < opts.starts; i++) {
        if (opts.waitIdle > 0 && !await waitIdle(opts.waitIdle)) busyStarts++;
        const s = await startRun(target);
        row.starts.push(s);
      }
      console.error(
        `memory:   start-up ${row.starts.map((s) => fmt(s.connectMs)).join(", ")} ms`,
      );
    } catch (err) {
      row.problem = err instanceof Error ? err.message : String(err);
      console.error(`memory:   failed: ${row.problem}`);
    }
  }
} finally {
  killLive();
}

const NAMES: Record<Target, string> = {
  deno: "deno (main.ts)",
  bun: "bun (main.ts)",
  "bun-binary": `bun compiled (${BUN_BINARY})`,
  "deno-echo": `deno echo (bench/echo.ts -b ${opts.echoReadBuffer})`,
  "bun-echo": "bun echo (bench/echo.ts)",
};
const lateHead = opts.late > 0 ? ` ${opts.late} s later MB | per connection KB |` : "";
const rssTable = [
  "| server -n 1 | connections | each did | idle RSS MB | RSS with the connections MB | " +
  `per connection KB |${lateHead} after closing them MB |`,
  `|---|---:|---|---:|---:|---:|${opts.late > 0 ? "---:|---:|" : ""}---:|`,
];
for (const row of rows) {
  for (const [p, { count, notify }] of points.entries()) {
    const runs = row.rss[p]!;
    const idle = median(runs.map((r) => r.idleMb));
    const loaded = median(runs.map((r) => r.loadedMb));
    const after = median(runs.map((r) => r.afterCloseMb));
    const late = median(runs.map((r) => r.lateMb));
    const lateCells = opts.late > 0
      ? ` ${fmt(late, 1)} | ${fmt(((late - idle) * 1024) / count, 1)} |`
      : "";
    rssTable.push(
      `| ${NAMES[row.target]}${row.problem ? " *" : ""} | ${fmt(count)} | ` +
        `${notify ? "HELLO, one NOTIFY" : "HELLO"} | ${fmt(idle, 1)} | ${fmt(loaded, 1)} | ` +
        `${fmt(((loaded - idle) * 1024) / count, 1)} |${lateCells} ${fmt(after, 1)} |`,
    );
  }
}
const startTable = [
  "| agent -n 1 | start → first connection ms | start → AGENT-HELLO ms | (min–max) ms |",
  "|---|---:|---:|---:|",
];
for (const row of rows) {
  if (isEcho(row.target)) continue;
  const connect = row.starts.map((s) => s.connectMs);
  startTable.push(
    `| ${NAMES[row.target]}${row.problem ? " *" : ""} | ${fmt(median(connect))} | ${
      fmt(median(row.starts.map((s) => s.helloMs)))
    } | ${connect.length ? `${fmt(Math.min(...connect))}–${fmt(Math.max(...connect))}` : "—"} |`,
  );
}
for (const row of rows) if (row.problem) notes.push(`${row.target}: ${row.problem}`);
console.log(rssTable.join("\n"));
console.log();
if (startTable.length > 2) {
  console.log(startTable.join("\n"));
  console.log();
}
console.log(
  `RSS: VmRSS (/proc/<pid>/status) ${SETTLE_MS} ms after start, after the last of the ` +
    `connections got its AGENT-HELLO (or its ACK)${
      opts.late > 0 ? `, ${opts.late} s later` : ""
    }, and after closing them; each count in ` +
    `starts of its own; median of ${opts.rssRuns} starts. Start-up: spawn to the first ` +
    `successful connect (tight retry loop), and to the AGENT-HELLO on it; median of ` +
    `${opts.starts} starts. Nothing pinned.`,
);
if (busyStarts > 0) {
  notes.push(`${busyStarts} start(s) began while other processes kept the machine busy.`);
}
for (const note of notes) console.log(`- ${note}`);
if (live.size > 0) console.error(`memory: still running: ${[...live].join(", ")}`);
if (rows.some((r) => r.problem !== undefined)) Deno.exit(1);
