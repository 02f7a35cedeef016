import { test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import type { Run } from "../bench/e2e/measure.ts";
import { summarize, tables } from "../bench/e2e/report.ts";
import type { Variant } from "../bench/e2e/stack.ts";
import { floorFrames } from "../bench/floor/templates.ts";
import {
  DataType,
  decodeAgentHello,
  Frame,
  FrameType,
  FrameWriter,
  readFrame,
  VarScope,
  writeDisconnect,
} from "../lib/spop.ts";
import type { HaproxyBuild } from "./_builds.ts";
import { concat, notifyBytes, SpopClient } from "./_spop_client.ts";

const FLOOR = fileURLToPath(new URL("../bench/floor/floor.ts", import.meta.url));

function build(version: string): HaproxyBuild {
  const [major, minor] = version.split(".").map(Number) as [number, number];
  return {
    bin: "haproxy",
    version,
    release: [major, minor],
    legacy: major < 3,
    label: `HAProxy ${version}`,
    versionLine: `HAProxy version ${version}`,
  };
}

function variant(haproxy: HaproxyBuild, agent?: "deno" | "c"): Variant {
  const agentLabel = agent === undefined
    ? "alone"
    : agent === "deno"
    ? "spoa Deno -n 1"
    : "C agent";
  return {
    label: `${haproxy.label} ${agentLabel}`,
    agentLabel,
    haproxy,
    ...(agent === undefined ? {} : { agent }),
  };
}

function run(v: Variant, rep: number, rps: number, cpu: { haproxy: number; agent: number }): Run {
  return {
    variant: v.label,
    haproxy: v.haproxy.label,
    rep,
    connections: 50,
    rps,
    p50ms: 1,
    p99ms: 3,
    requests: rps * 5,
    ok: rps * 4,
    denied: rps,
    spoeErrors: 0,
    otherStatus: 0,
    wrkNon2xx: rps,
    socketErrors: 0,
    haproxyCpu: cpu.haproxy,
    agentCpu: cpu.agent,
    wrkCpu: 60,
    softirqCpu: 5,
    otherCpu: 2,
    windowRps: rps,
    problems: [],
  };
}

test("summarize() gives each cell its ratio to the same HAProxy alone, round by round", () => {
  const old = build("2.6.12");
  const next = build("3.4.0");
  const variants = [variant(old), variant(old, "deno"), variant(next), variant(next, "c")];
  const [oldAlone, oldSpoa, nextAlone, nextC] = variants as [Variant, Variant, Variant, Variant];
  const runs = [
    run(oldAlone, 1, 80_000, { haproxy: 100, agent: 0 }),
    run(oldSpoa, 1, 60_000, { haproxy: 120, agent: 24 }),
    run(nextAlone, 1, 70_000, { haproxy: 100, agent: 0 }),
    run(nextC, 1, 28_000, { haproxy: 90, agent: 42 }),
    run(oldAlone, 2, 100_000, { haproxy: 100, agent: 0 }),
    run(oldSpoa, 2, 70_000, { haproxy: 120, agent: 28 }),
    run(nextAlone, 2, 70_000, { haproxy: 100, agent: 0 }),
    run(nextC, 2, 35_000, { haproxy: 90, agent: 42 }),
  ];
  const { summaries, notes } = summarize(runs, variants, [50], 2);
  assert.deepEqual(notes, []);
  const spoa = summaries.find((s) => s.agent === "spoa Deno -n 1")!;
  assert.equal(spoa.haproxy, "HAProxy 2.6.12");
  assert.equal(spoa.reqPerSec, 65_000);
  assert.equal(spoa.ratio, 65_000 / 90_000);
  assert.equal(spoa.ratioMin, 0.7); // 70,000 ÷ 100,000 in round 2
  assert.equal(spoa.ratioMax, 0.75); // 60,000 ÷ 80,000 in round 1
  // 24 % and 28 % of a core at 60,000 and 70,000 req/s: 4 µs each.
  assert.equal(spoa.agentUsPerReq, 4);
  assert.equal(spoa.haproxyUsPerReq, (20 + 120 / 70_000 * 1e4) / 2);
  const c = summaries.find((s) => s.agent === "C agent")!;
  assert.equal(c.haproxy, "HAProxy 3.4.0");
  assert.equal(c.ratio, 31_500 / 70_000);
  assert.equal(c.ratioMin, 0.4);
  assert.equal(c.ratioMax, 0.5);
  const alone = summaries.find((s) => s.agent === "alone" && s.haproxy === "HAProxy 3.4.0")!;
  assert.ok(Number.isNaN(alone.agentUsPerReq));
  assert.equal(alone.ratio, 1);
  const text = tables(summaries);
  assert.match(
    text,
    /\| HAProxy 2\.6\.12 \| spoa Deno -n 1 \| 50 \| 65,000 \| 0\.72 \(0\.70–0\.75\) \|/,
  );
});

test("summarize() marks and names a disturbed run", () => {
  const h = build("2.6.12");
  const variants = [variant(h), variant(h, "deno")];
  const busy = { ...run(variants[1]!, 1, 50_000, { haproxy: 100, agent: 20 }), otherCpu: 40 };
  const { summaries, notes } = summarize(
    [run(variants[0]!, 1, 80_000, { haproxy: 100, agent: 0 }), busy],
    variants,
    [50],
    2,
  );
  assert.equal(summaries[1]!.marked, true);
  assert.equal(summaries[0]!.marked, false);
  assert.equal(notes.length, 1);
  assert.match(notes[0]!, /spoa Deno -n 1 c=50 rep 1: other processes used ~40 %/);
});

test("floorFrames() makes frames that spoa's codec reads back", () => {
  const { agentHello, agentDisconnect, ackActions } = floorFrames();
  const read = (bytes: Uint8Array) => {
    const frame = new Frame();
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    assert.equal(readFrame(bytes, view, 0, bytes.length, 16380, frame), bytes.length);
    return frame;
  };
  const hello = decodeAgentHello(read(agentHello));
  assert.equal(hello.version, "2.0");
  assert.equal(hello.maxFrameSize, 16380);
  assert.equal(hello.capabilities, "pipelining");
  assert.equal(read(agentDisconnect).type, FrameType.AGENT_DISCONNECT);
  // set-var, 3 arguments, sess, "ip_score", int32 50.
  assert.deepEqual([...ackActions.subarray(0, 3)], [1, 3, VarScope.SESS]);
  assert.equal(ackActions[ackActions.length - 2], DataType.INT32);
  assert.equal(ackActions[ackActions.length - 1], 50);
});

/** Starts the floor agent on this runtime and returns it with its port. */
async function startFloor(): Promise<{ child: ChildProcess; port: number }> {
  const deno = (globalThis.navigator?.userAgent ?? "").startsWith("Deno/");
  const args = deno ? ["run", "--allow-net", FLOOR, "-p", "0"] : [FLOOR, "-p", "0"];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`No "listening on" line: ${err}`)), 15_000);
    child.stderr!.on("data", (chunk: Buffer) => {
      err += chunk.toString();
      const match = /listening on [\d.]+:(\d+)/.exec(err);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    child.on("exit", (code) => reject(new Error(`The floor agent exited with ${code}: ${err}`)));
  });
  return { child, port };
}

test("the floor agent answers a HELLO, pipelined NOTIFYs with their own ids, and a DISCONNECT", async () => {
  const { child, port } = await startFloor();
  try {
    const client = await SpopClient.connect(port);
    const hello = await client.hello();
    assert.equal(hello.hello?.capabilities, "pipelining");
    // Ids past one varint byte, and two frames in one write.
    await client.send(concat([notifyBytes(300, 1), notifyBytes(5, 70_000)]));
    const acks = [await client.nextFrame(), await client.nextFrame()];
    assert.deepEqual(acks.map((a) => [a.type, a.streamId, a.frameId]), [
      [FrameType.ACK, 300, 1],
      [FrameType.ACK, 5, 70_000],
    ]);
    assert.deepEqual(acks[0]!.actions, [
      { type: 1, scope: VarScope.SESS, name: "ip_score", dataType: DataType.INT32, value: 50 },
    ]);
    const w = new FrameWriter();
    writeDisconnect(w, FrameType.HAPROXY_DISCONNECT, 0);
    await client.send(w.bytes().slice());
    assert.equal((await client.nextFrame()).type, FrameType.AGENT_DISCONNECT);
    await client.close();
  } finally {
    child.kill("SIGTERM");
  }
});
