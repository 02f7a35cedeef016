/**
 * Where the memory of many idle connections goes, on Deno: this process
 * serves (in process) either the IP-reputation agent through `serve()` (as
 * `spoa -n 1` does) or a bare echo loop with one read buffer of
 * `--read-buffer` bytes per connection (the runtime's own share); a child
 * process (`bench/_memory_client.ts`) opens `--connections` connections, each
 * doing a HELLO and one NOTIFY, and keeps them open.
 *
 * Reported before and with the connections: VmRSS as it is (what
 * `bench/memory.ts` reads), then after forced collections the V8 heap spaces
 * (the young generation's physical size, old space used), the heap used, the
 * bytes of ArrayBuffers (`external`), and the RSS of the C heap (`[heap]` in
 * /proc/self/smaps). With `--by-type`, two heap snapshots (before and after)
 * give the bytes per connection of each kind of object (use about 2,000
 * connections: a snapshot of 10,000 is large); reading them takes memory, so
 * the other figures of such a run are not comparable.
 *
 * ```sh
 * node_modules/deno/deno run -A --v8-flags=--expose-gc bench/conn_memory.ts \
 *   [--server agent|echo] [--connections 10000] [--read-buffer 256] [--by-type]
 * ```
 *
 * @module
 */

import v8 from "node:v8";
import { exitUsage, fmt, parseFlags, ROOT, sleep } from "./_bench.ts";
import { serve } from "../lib/serve/server.ts";
import { ipReputation } from "../lib/iprep/mod.ts";
import { createLogger, Level } from "../lib/agent/log.ts";

const USAGE = `Usage: conn_memory.ts [--server agent|echo] [--connections 10000]
                      [--read-buffer 256] [--by-type]`;

const values = parseFlags("conn_memory", USAGE, {
  args: Deno.args,
  allowPositionals: false,
  options: {
    server: { type: "string", default: "agent" },
    connections: { type: "string", default: "10000" },
    "read-buffer": { type: "string", default: "256" },
    "by-type": { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
const SERVER = values.server;
if (SERVER !== "agent" && SERVER !== "echo") exitUsage("conn_memory", USAGE, "unknown server");
const COUNT = Number(values.connections);
const READ_BUFFER = Number(values["read-buffer"]);
if (!Number.isInteger(COUNT) || COUNT < 1 || !Number.isInteger(READ_BUFFER) || READ_BUFFER < 1) {
  exitUsage("conn_memory", USAGE, "--connections and --read-buffer must be integers >= 1");
}
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) exitUsage("conn_memory", USAGE, "run with --v8-flags=--expose-gc");

/** A bare echo server: one loop and one read buffer per connection. */
async function echoConn(conn: Deno.TcpConn): Promise<void> {
  const buf = new Uint8Array(READ_BUFFER);
  try {
    conn.setNoDelay(true);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      for (let off = 0; off < n;) off += await conn.write(buf.subarray(off, n));
    }
  } catch {
    // A reset.
  }
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

async function startServer(): Promise<number> {
  if (SERVER === "agent") {
    const server = await serve(ipReputation(), {
      hostname: "127.0.0.1",
      port: 0,
      maxConnections: COUNT + 100,
      log: createLogger({ level: Level.WARN }),
    });
    return server.port;
  }
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  void (async () => {
    for await (const conn of listener) void echoConn(conn);
  })();
  return (listener.addr as Deno.NetAddr).port;
}

interface Sample {
  rss: number;
  newSpace: number;
  oldSpaceUsed: number;
  heapUsed: number;
  external: number;
  cHeap: number;
}

/** RSS of the `[heap]` mapping (the C allocator's main arena), in bytes. */
function cHeapBytes(): number {
  const smaps = Deno.readTextFileSync("/proc/self/smaps");
  const at = smaps.indexOf("[heap]");
  if (at < 0) return 0;
  const m = /^Rss:\s+(\d+) kB$/m.exec(smaps.slice(at));
  return m ? Number(m[1]) * 1024 : 0;
}

function sample(): Sample {
  const status = Deno.readTextFileSync("/proc/self/status");
  const rss = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? 0) * 1024;
  gc!();
  gc!();
  const spaces = v8.getHeapSpaceStatistics();
  const space = (name: string) => spaces.find((s) => s.space_name === name);
  const mem = Deno.memoryUsage();
  return {
    rss,
    newSpace: space("new_space")?.physical_space_size ?? 0,
    oldSpaceUsed: space("old_space")?.space_used_size ?? 0,
    heapUsed: mem.heapUsed,
    external: mem.external,
    cHeap: cHeapBytes(),
  };
}

/** Self size by kind of object ("type:name"), from a heap snapshot. */
function snapshotByType(): Map<string, number> {
  const path = Deno.makeTempFileSync({ suffix: ".heapsnapshot" });
  try {
    v8.writeHeapSnapshot(path);
    const snap = JSON.parse(Deno.readTextFileSync(path));
    const meta = snap.snapshot.meta;
    const fields: string[] = meta.node_fields;
    const types: string[] = meta.node_types[0];
    const strings: string[] = snap.strings;
    const nodes: number[] = snap.nodes;
    const [ti, ni, si] = ["type", "name", "self_size"].map((f) => fields.indexOf(f));
    const bytes = new Map<string, number>();
    for (let i = 0; i < nodes.length; i += fields.length) {
      const type = types[nodes[i + ti!]!]!;
      const named = type === "object" || type === "closure" || type === "native";
      const key = named ? `${type} ${strings[nodes[i + ni!]!]!.slice(0, 50)}` : type;
      bytes.set(key, (bytes.get(key) ?? 0) + nodes[i + si!]!);
    }
    return bytes;
  } finally {
    Deno.removeSync(path);
  }
}

const port = await startServer();
await sleep(1000);
const before = sample();
const snapBefore = values["by-type"] ? snapshotByType() : undefined;

const client = new Deno.Command(Deno.execPath(), {
  args: ["run", "--allow-net", `${ROOT}bench/_memory_client.ts`, `${port}`, `${COUNT}`]
    .concat(SERVER === "echo" ? ["echo"] : []),
  stdin: "piped",
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const reader = client.stdout.pipeThrough(new TextDecoderStream()).getReader();
for (let text = ""; !text.includes("ready");) {
  const { value, done } = await reader.read();
  if (done) throw new Error("the client exited before its connections were ready");
  text += value;
}
await sleep(1000);
const after = sample();
const snapAfter = values["by-type"] ? snapshotByType() : undefined;
await client.stdin.close();
await client.status;

const MB = 2 ** 20;
if (snapBefore !== undefined) {
  console.log(
    "(the heap snapshots take memory of their own: the figures below are not comparable)",
  );
}
const rows: [string, keyof Sample][] = [
  ["RSS (before collecting) MB", "rss"],
  ["V8 young generation, physical MB", "newSpace"],
  ["V8 old space used MB", "oldSpaceUsed"],
  ["V8 heap used MB", "heapUsed"],
  ["ArrayBuffers (external) MB", "external"],
  ["C heap ([heap] RSS) MB", "cHeap"],
];
const server = SERVER === "agent" ? "agent (serve(), in process)" : `echo, -b ${READ_BUFFER}`;
console.log(`| ${server} | before | with ${fmt(COUNT)} connections | per connection B |`);
console.log("|---|---:|---:|---:|");
for (const [label, key] of rows) {
  console.log(
    `| ${label} | ${fmt(before[key] / MB, 1)} | ${fmt(after[key] / MB, 1)} | ${
      fmt((after[key] - before[key]) / COUNT)
    } |`,
  );
}
if (snapBefore !== undefined && snapAfter !== undefined) {
  const deltas = [...snapAfter].map(([key, n]) => [key, (n - (snapBefore.get(key) ?? 0)) / COUNT]);
  deltas.sort((a, b) => (b[1] as number) - (a[1] as number));
  console.log();
  console.log("| kind of object (heap snapshot) | bytes per connection |");
  console.log("|---|---:|");
  for (const [key, n] of deltas.slice(0, 30)) {
    if ((n as number) < 16) break;
    console.log(`| ${key} | ${fmt(n as number)} |`);
  }
}
Deno.exit(0);
