/**
 * The zero-allocation check: in-process, without sockets, a `Session`
 * (lib/agent/session.ts) on a do-nothing `Conn` with the IP-reputation agent
 * (`ipReputation({ seed: 1 })`) gets a HAPROXY-HELLO, then `--frames`
 * NOTIFYs (`check-client-ip` with one IPv4 argument, as HAProxy sends them)
 * written `--chunk` at a time into one reused read buffer.
 *
 * Reported per stage of the pipeline, each on fresh objects, so that an
 * allocation can be pinned to a stage by difference:
 *
 * - `gen`: only writing the NOTIFYs into the buffer (the harness itself);
 * - `scan`: + `FrameScanner` push/next;
 * - `read`: + `MessageReader` over each NOTIFY (messages and arguments);
 * - `handler`: + `Agent.find`, `Message.load` and the handler, into a `Reply`;
 * - `ack`: + the ACK into a reused `FrameWriter` (`Reply.writeTo`), its buffer
 *   and size handed to the connection once per chunk (what the session does);
 * - `session`: the real thing, `Session.onData` on the whole chunk.
 *
 * Figures: heap used after a forced GC before the NOTIFYs and after all of
 * them (retained growth per frame), and bytes allocated per frame: the heap's
 * growth without GC over windows of `--window` frames, keeping the windows
 * during which no collection ran (median). Deno: `Deno.memoryUsage().heapUsed`
 * (V8's used size includes new-space objects as they are allocated); Bun:
 * `bun:jsc` `heapStats().heapCapacity` (JSC grows its capacity by blocks as
 * it allocates; `heapSize` changes only when a collection runs, which marks
 * a window as disturbed). Objects per frame are estimated at
 * `--object-size` bytes each (a typed-array view, the usual culprit, is
 * about that on both engines).
 *
 * Under Deno with `--allow-sys`, the allocations of the session
 * stage are then sampled with V8's sampling heap profiler (`node:inspector`,
 * collected objects included) and the allocating functions listed
 * (`--no-profile` skips it).
 *
 * ```sh
 * node_modules/deno/deno run --v8-flags=--expose-gc --allow-sys bench/heap.ts
 *   [--frames 1000000]
 *   [--chunk 16] [--window 10000] [--stage all|gen|scan|read|handler|ack|session]
 *   [--handler iprep|setvar|noop] [--no-profile]
 * node_modules/bun/bin/bun.exe bench/heap.ts [same options]
 * ```
 *
 * Prints a markdown table (and the profile) on stdout.
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import type { Conn, ConnHandler } from "../lib/agent/conn.ts";
import { Agent, findHandler } from "../lib/agent/handler.ts";
import { bindMessage, Message, MessageSlot } from "../lib/agent/message.ts";
import { bindReply, Reply, ReplySlot } from "../lib/agent/reply.ts";
import { Context } from "../lib/agent/context.ts";
import { ipReputation } from "../lib/iprep/mod.ts";
import { createLogger, Level } from "../lib/agent/log.ts";
import {
  DEFAULT_REFERENCE_KNOBS,
  DEFAULT_SESSION_OPTIONS,
  Session,
  type Timers,
} from "../lib/agent/session.ts";
import {
  DataType,
  FrameScanner,
  FrameType,
  FrameWriter,
  MessageReader,
  writeHaproxyHello,
  writeVarint,
} from "../lib/spop.ts";

const USAGE = `Usage: heap.ts [--frames 1000000] [--chunk 16] [--window 10000]
               [--stage all|gen|scan|read|handler|ack|session] [--handler iprep|setvar|noop]
               [--object-size 64] [--no-profile]`;

const STAGES = ["gen", "scan", "read", "handler", "ack", "session"] as const;
type Stage = typeof STAGES[number];
/** Windows of allocation measurement per stage. */
const WINDOWS = 21;

function usage(message: string): never {
  process.stderr.write(`heap: ${message}\n${USAGE}\n`);
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({
    args: process.argv.slice(2),
    strict: true,
    allowPositionals: false,
    options: {
      frames: { type: "string", default: "1000000" },
      chunk: { type: "string", default: "16" },
      window: { type: "string", default: "10000" },
      stage: { type: "string", default: "all" },
      "object-size": { type: "string", default: "64" },
      "no-profile": { type: "boolean", default: false },
      handler: { type: "string", default: "iprep" },
      help: { type: "boolean", short: "h", default: false },
    },
  }));
} catch (err) {
  usage(err instanceof Error ? err.message : String(err));
}
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const int = (name: string, text: string, min: number): number => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) usage(`--${name} must be an integer >= ${min}`);
  return n;
};
const FRAMES = int("frames", values.frames, 1);
const CHUNK = int("chunk", values.chunk, 1);
const WINDOW = Math.ceil(int("window", values.window, 1) / CHUNK) * CHUNK;
const OBJECT_SIZE = int("object-size", values["object-size"], 1);
if (values.stage !== "all" && !STAGES.includes(values.stage as Stage)) {
  usage(`unknown stage "${values.stage}"`);
}
const stages: Stage[] = values.stage === "all" ? [...STAGES] : [values.stage as Stage];
const HANDLERS = ["iprep", "setvar", "noop"] as const;
type HandlerKind = typeof HANDLERS[number];
if (!HANDLERS.includes(values.handler as HandlerKind)) usage(`unknown handler "${values.handler}"`);
const HANDLER = values.handler as HandlerKind;

/**
 * The agent: the IP-reputation one, or for bisecting it, one that sets the
 * same variable to a constant without reading the argument (`setvar`), or
 * one that does nothing (`noop`: the ACK gets the padding action).
 */
function makeAgent(): Agent {
  if (HANDLER === "iprep") return ipReputation({ seed: 1 });
  if (HANDLER === "noop") return new Agent().on("check-client-ip", () => {});
  return new Agent().on("check-client-ip", (_message, reply) => {
    reply.setVar("sess", "ip_score", 42, DataType.UINT32);
  });
}

// ---------------------------------------------------------------------------
// The runtime's heap

interface Deno2 {
  memoryUsage(): { heapUsed: number };
  version: { deno: string };
}
interface Bun2 {
  gc(force: boolean): void;
  version: string;
}
interface JscHeap {
  heapStats(): {
    heapSize: number;
    heapCapacity: number;
    objectCount: number;
    /** Cells by type, counting those allocated since the last collection (garbage too). */
    objectTypeCounts: Record<string, number>;
  };
}
const DENO = (globalThis as unknown as { Deno?: Deno2 }).Deno;
const BUN = (globalThis as unknown as { Bun?: Bun2 }).Bun;
const v8gc = (globalThis as unknown as { gc?: () => void }).gc;
const jsc: JscHeap | undefined = BUN === undefined ? undefined : await import("bun:jsc" as string);
const runtime = BUN !== undefined
  ? `bun ${BUN.version}`
  : DENO !== undefined
  ? `deno ${DENO.version.deno}`
  : `node ${process.versions.node}`;

if (BUN === undefined && v8gc === undefined) {
  usage("no forced GC: run Deno with --v8-flags=--expose-gc");
}

function forceGc(): void {
  if (BUN !== undefined) BUN.gc(true);
  else {
    // Twice: the first may leave work for the next (weak references, finalizers).
    v8gc!();
    v8gc!();
  }
}

/** Live heap after a forced GC, in bytes. */
function heapAfterGc(): number {
  forceGc();
  return jsc !== undefined ? jsc.heapStats().heapSize : DENO!.memoryUsage().heapUsed;
}

/** [allocation counter, collection marker]: see the module doc. */
function allocProbe(): [number, number] {
  if (jsc !== undefined) {
    const s = jsc.heapStats();
    return [s.heapCapacity, s.heapSize];
  }
  const used = DENO!.memoryUsage().heapUsed;
  return [used, used];
}

/**
 * Bun: cells allocated per frame by JS type over one window without a
 * collection (`objectTypeCounts` counts cells allocated since the last
 * collection, garbage included), less what reading the counts allocates.
 */
function typesPerFrame(step: () => void, chunks: number, frames: number): string {
  if (jsc === undefined) return "";
  const diff = (run: boolean): Record<string, number> | undefined => {
    forceGc();
    const s0 = jsc.heapStats();
    if (run) { for (let i = 0; i < chunks; i++) step(); }
    const s1 = jsc.heapStats();
    if (s1.heapSize !== s0.heapSize) return undefined; // A collection ran.
    const d: Record<string, number> = {};
    for (const [k, v] of Object.entries(s1.objectTypeCounts)) {
      d[k] = v - (s0.objectTypeCounts[k] ?? 0);
    }
    return d;
  };
  const base = diff(false) ?? {};
  for (let attempt = 0; attempt < 5; attempt++) {
    const d = diff(true);
    if (d === undefined) continue;
    const parts = Object.entries(d)
      .map(([k, v]) => [k, (v - (base[k] ?? 0)) / frames] as const)
      .filter(([, v]) => v >= 0.05)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v.toFixed(2)}`);
    return parts.length === 0 ? "none" : parts.join(", ");
  }
  return "?";
}

// ---------------------------------------------------------------------------
// The input

/** One `check-client-ip` message with an IPv4 argument: the NOTIFY payload. */
function notifyPayload(): Uint8Array {
  const w = new FrameWriter();
  w.message("check-client-ip", 1).arg("", DataType.IPV4, new Uint8Array([10, 1, 2, 3]));
  return w.bytes().slice();
}

const PAYLOAD = notifyPayload();
/** The address's last byte in the payload (varied per frame). */
const IP_LAST = PAYLOAD.length - 1;
const readBuf = new Uint8Array(64 * 1024);

/** Writes CHUNK NOTIFYs (3.x-style stream-ids from `seq`) into the read buffer. */
class Generator {
  seq = 0;

  fill(): number {
    const buf = readBuf;
    let pos = 0;
    for (let i = 0; i < CHUNK; i++) {
      const start = pos;
      const seq = this.seq++;
      buf[pos + 4] = FrameType.NOTIFY;
      buf[pos + 5] = 0;
      buf[pos + 6] = 0;
      buf[pos + 7] = 0;
      buf[pos + 8] = 1; // FIN
      pos = writeVarint(buf, pos + 9, 2 * seq + 1);
      pos = writeVarint(buf, pos, 1);
      PAYLOAD[IP_LAST] = seq & 255;
      buf.set(PAYLOAD, pos);
      pos += PAYLOAD.length;
      const len = pos - start - 4;
      buf[start] = len >>> 24;
      buf[start + 1] = (len >>> 16) & 255;
      buf[start + 2] = (len >>> 8) & 255;
      buf[start + 3] = len & 255;
    }
    return pos;
  }
}

/** A connection that counts the frames written to it (by walking their LENGTHs). */
class NullConn implements Conn {
  readonly remote = "192.0.2.7:40000";
  readonly queued = 0;
  acks = 0;
  others = 0;
  writes = 0;
  closed = false;
  handler: ConnHandler | undefined;

  write(bytes: Uint8Array, length: number): void {
    this.writes++;
    let pos = 0;
    while (pos + 5 <= length) {
      const len = ((bytes[pos]! << 24) | (bytes[pos + 1]! << 16) | (bytes[pos + 2]! << 8) |
        bytes[pos + 3]!) >>> 0;
      if (bytes[pos + 4] === FrameType.ACK) this.acks++;
      else this.others++;
      pos += 4 + len;
    }
  }
  pause(): void {}
  resume(): void {}
  close(): void {
    this.closed = true;
  }
  destroy(): void {
    this.closed = true;
  }
}

const NO_TIMERS: Timers = { setTimeout: () => 0, clearTimeout: () => {} };

// ---------------------------------------------------------------------------
// The stages: each returns a function that processes one chunk.

interface Pipeline {
  /** Processes one chunk of CHUNK NOTIFYs. */
  step(): void;
  /** A check that the work was done (frames seen, ACKs written). */
  check(): string;
  /** What must equal FRAMES-ish for the check to pass (per stage). */
  count(): number;
}

let sink = 0;

function makePipeline(stage: Stage): Pipeline {
  const gen = new Generator();
  const agent = makeAgent();
  if (stage === "session") {
    const conn = new NullConn();
    const log = createLogger({ level: Level.INFO, sink: () => {}, now: () => new Date(0) });
    const session = new Session(
      conn,
      agent,
      { ...DEFAULT_SESSION_OPTIONS, ...DEFAULT_REFERENCE_KNOBS },
      log,
      NO_TIMERS,
    );
    conn.handler = session;
    const w = new FrameWriter();
    writeHaproxyHello(w, { maxFrameSize: 16380, capabilities: "pipelining", engineId: "bench" });
    const hello = w.bytes();
    readBuf.set(hello);
    session.onData(readBuf, hello.length);
    if (conn.others !== 1 || conn.closed) throw new Error("session: no AGENT-HELLO");
    return {
      step: () => session.onData(readBuf, gen.fill()),
      check: () => `${conn.acks} ACKs in ${conn.writes - 1} writes`,
      count: () => conn.acks,
    };
  }
  const scanner = new FrameScanner(16380);
  const reader = new MessageReader();
  // The stages below the session call handlers the way it does for a plain function.
  const message = new Message();
  const slot = new MessageSlot();
  const reply = new Reply();
  const replySlot = new ReplySlot();
  const context = new Context();
  bindReply(reply, replySlot);
  const writer = new FrameWriter(1024);
  const conn = new NullConn();
  let frames = 0;
  return {
    step: () => {
      const len = gen.fill();
      if (stage === "gen") {
        frames += CHUNK;
        sink += len;
        return;
      }
      scanner.push(readBuf, len);
      for (let f = scanner.next(); f !== null; f = scanner.next()) {
        frames++;
        if (stage === "scan") {
          sink += f.end;
          continue;
        }
        reader.reset(f.buf, f.payloadStart, f.end);
        while (reader.next()) {
          if (stage === "read") {
            sink += reader.argCount;
            continue;
          }
          const entry = findHandler(agent, reader, f.buf);
          if (entry === undefined) throw new Error("no handler");
          slot.load(reader, f.buf);
          bindMessage(message, slot);
          void entry.fn(message, reply, context);
          bindMessage(message, null);
        }
        if (stage === "ack") {
          writer.begin(FrameType.ACK, f.streamId, f.frameId);
          writer.appendWriter(replySlot.writer);
          writer.end();
        }
        sink += replySlot.count;
        replySlot.clear();
      }
      if (stage === "ack") {
        conn.write(writer.buffer(), writer.size);
        writer.reset();
      }
    },
    check: () => stage === "ack" ? `${conn.acks} ACKs` : `${frames} frames`,
    count: () => stage === "ack" ? conn.acks : frames,
  };
}

// ---------------------------------------------------------------------------
// Measuring

interface StageResult {
  stage: Stage;
  frames: number;
  heapBeforeKb: number;
  heapAfterKb: number;
  growthPerFrame: number;
  allocPerFrame: number;
  objectsPerFrame: number;
  windowsUsed: number;
  framesPerSec: number;
  check: string;
  ok: boolean;
  /** Bun: cells per frame by type. */
  types: string;
}

function measureStage(stage: Stage): StageResult {
  const p = makePipeline(stage);
  const chunks = Math.ceil(FRAMES / CHUNK);
  const before = heapAfterGc();
  const t0 = performance.now();
  for (let i = 0; i < chunks; i++) p.step();
  const elapsed = performance.now() - t0;
  const after = heapAfterGc();
  const frames = chunks * CHUNK;
  const ok = stage === "gen" || p.count() === frames;
  // Allocation: windows without a collection, JIT long warm by now.
  const perFrame: number[] = [];
  const windowChunks = WINDOW / CHUNK;
  for (let w = 0; w < WINDOWS; w++) {
    forceGc();
    const [a0, m0] = allocProbe();
    for (let i = 0; i < windowChunks; i++) p.step();
    const [a1, m1] = allocProbe();
    const collected = jsc !== undefined ? m1 !== m0 : a1 < a0;
    if (!collected) perFrame.push((a1 - a0) / WINDOW);
  }
  const types = typesPerFrame(p.step, windowChunks, WINDOW);
  perFrame.sort((x, y) => x - y);
  const alloc = perFrame.length === 0 ? NaN : perFrame[perFrame.length >> 1]!;
  return {
    stage,
    frames,
    heapBeforeKb: before / 1024,
    heapAfterKb: after / 1024,
    growthPerFrame: (after - before) / frames,
    allocPerFrame: alloc,
    objectsPerFrame: alloc / OBJECT_SIZE,
    windowsUsed: perFrame.length,
    framesPerSec: frames / (elapsed / 1000),
    check: p.check(),
    ok,
    types,
  };
}

// ---------------------------------------------------------------------------
// Deno: where the session stage allocates (V8 sampling heap profiler)

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

async function profileSession(frames: number): Promise<string[]> {
  const { Session: Inspector } = await import("node:inspector");
  const s = new Inspector();
  s.connect();
  const post = (method: string, params: object = {}) =>
    new Promise<unknown>((resolve, reject) =>
      s.post(method, params, (err: Error | null, res?: unknown) => err ? reject(err) : resolve(res))
    );
  const p = makePipeline("session");
  for (let i = 0; i < 20_000; i++) p.step(); // Warm: profile the optimised code.
  await post("HeapProfiler.enable");
  await post("HeapProfiler.startSampling", {
    samplingInterval: 64,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  const chunks = Math.ceil(frames / CHUNK);
  for (let i = 0; i < chunks; i++) p.step();
  const { profile } = await post("HeapProfiler.getSamplingProfile") as {
    profile: { head: ProfileNode };
  };
  await post("HeapProfiler.stopSampling");
  s.disconnect();
  // Self sizes by allocating function, with its caller for context.
  const bySite = new Map<string, number>();
  let total = 0;
  const walk = (node: ProfileNode, caller: string) => {
    const cf = node.callFrame;
    const file = cf.url.replace(/^.*\/(lib|bench)\//, "$1/");
    const name = `${cf.functionName || "(anonymous)"} (${file}:${cf.lineNumber + 1})`;
    if (node.selfSize > 0) {
      const key = `${name} ← ${caller}`;
      bySite.set(key, (bySite.get(key) ?? 0) + node.selfSize);
      total += node.selfSize;
    }
    for (const child of node.children) walk(child, cf.functionName || "(anonymous)");
  };
  walk(profile.head, "");
  const lines = [
    `Allocation sites of the session stage (V8 sampling heap profiler, 64-byte interval, ` +
    `${frames.toLocaleString("en-US")} frames after warm-up; collected objects included):`,
    "",
    "| bytes per frame | share | allocating function ← caller |",
    "|---:|---:|---|",
  ];
  const top = [...bySite].sort((a, b) => b[1] - a[1])
    .filter(([site, bytes]) => bytes / frames >= 0.05 && !site.includes("inspector.js"))
    .slice(0, 12);
  for (const [site, bytes] of top) {
    lines.push(
      `| ${(bytes / frames).toFixed(1)} | ${((bytes / total) * 100).toFixed(0)} % | ${site} |`,
    );
  }
  return lines;
}

// ---------------------------------------------------------------------------
// Main

const results: StageResult[] = [];
for (const stage of stages) {
  process.stderr.write(`heap (${runtime}): ${stage} ...\n`);
  results.push(measureStage(stage));
}

const f1 = (n: number) => Number.isFinite(n) ? n.toFixed(1) : "—";
const out = [
  `| stage (${runtime}, ${HANDLER}) | heap before KB | heap after KB | retained B/frame | ` +
  `allocated B/frame | ≈ objects/frame | windows | frames/s | check |${
    jsc ? " cells/frame by type |" : ""
  }`,
  `|---|---:|---:|---:|---:|---:|---:|---:|---|${jsc ? "---|" : ""}`,
];
for (const r of results) {
  out.push(
    `| ${r.stage} | ${r.heapBeforeKb.toFixed(0)} | ${r.heapAfterKb.toFixed(0)} | ${
      r.growthPerFrame.toFixed(3)
    } | ${f1(r.allocPerFrame)} | ${f1(r.objectsPerFrame)} | ${r.windowsUsed}/${WINDOWS} | ${
      Math.round(r.framesPerSec).toLocaleString("en-US")
    } | ${r.check}${r.ok ? "" : " (MISMATCH)"} |${jsc ? ` ${r.types} |` : ""}`,
  );
}
out.push(
  "",
  `${FRAMES.toLocaleString("en-US")} NOTIFYs per stage in chunks of ${CHUNK} after the HELLO; ` +
    `heap before/after: after forced GC; allocated: median over windows of ` +
    `${WINDOW.toLocaleString("en-US")} frames without a collection (${
      jsc !== undefined ? "JSC heapCapacity, 16 KiB block granularity" : "V8 heapUsed"
    }); objects ≈ allocated ÷ ${OBJECT_SIZE} B.`,
);
if (
  DENO !== undefined && BUN === undefined && !values["no-profile"] && stages.includes("session")
) {
  try {
    out.push("", ...await profileSession(Math.min(FRAMES, 200_000)));
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    out.push("", `(No allocation profile: ${why}. Run Deno with --allow-sys for one.)`);
  }
}
process.stdout.write(`${out.join("\n")}\n`);
if (sink === -1) process.stdout.write("\n"); // Keep `sink` alive.
if (results.some((r) => !r.ok)) process.exit(1);
