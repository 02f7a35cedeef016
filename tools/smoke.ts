/**
 * Smoke test of a built executable, as the release workflow runs it on each
 * Linux target: `--version` prints package.json's version, then the agent
 * started with `-n 2` answers a HAPROXY-HELLO and a `check-client-ip` NOTIFY
 * over TCP, and SIGTERM stops it with status 0.
 *
 * Usage: deno run -A tools/smoke.ts dist/spoa   (or: bun tools/smoke.ts dist/spoa)
 *
 * @module
 */

import { spawn, spawnSync } from "node:child_process";
import net from "node:net";
import process from "node:process";
import pkg from "../package.json" with { type: "json" };
import {
  ActionReader,
  DataType,
  decodeAgentHello,
  FrameScanner,
  FrameType,
  FrameWriter,
  writeHaproxyHello,
} from "../lib/spop.ts";

const binary = process.argv[2];
if (!binary) throw new Error("Usage: smoke.ts <executable>");

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`Smoke test failed: ${what}`);
  console.log(`ok - ${what}`);
}

const version = spawnSync(binary, ["--version"], { encoding: "utf8" });
check(version.stdout === `spoa ${pkg.version}\n`, `--version prints "spoa ${pkg.version}"`);

const agent = spawn(binary, ["-p", "0", "-a", "127.0.0.1", "-n", "2"], {
  stdio: ["ignore", "ignore", "pipe"],
});
let stderr = "";
agent.stderr!.setEncoding("utf8");
const port = await new Promise<number>((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`No listening line: ${stderr}`)), 15_000);
  agent.stderr!.on("data", (text: string) => {
    stderr += text;
    const match = /^\S+ info (?:\[main\] )?listening on \S+:(\d+)/m.exec(stderr);
    if (match) {
      clearTimeout(timer);
      resolve(Number(match[1]));
    }
  });
  agent.once("exit", (code) => reject(new Error(`The agent exited (${code}): ${stderr}`)));
});
check(port > 0, `the agent listens (port ${port}, 2 workers)`);

const w = new FrameWriter();
writeHaproxyHello(w, { maxFrameSize: 16380, capabilities: "pipelining", engineId: "smoke" });
w.begin(FrameType.NOTIFY, 1, 1).message("check-client-ip", 1).arg("", DataType.IPV4, "10.0.0.1")
  .end();
const frames = await new Promise<{ type: number; bytes: Uint8Array }[]>((resolve, reject) => {
  const socket = net.connect({ host: "127.0.0.1", port });
  const scanner = new FrameScanner();
  const got: { type: number; bytes: Uint8Array }[] = [];
  const timer = setTimeout(() => reject(new Error("No answer within 10 s")), 10_000);
  socket.on("connect", () => socket.write(w.bytes()));
  socket.on("error", reject);
  socket.on("data", (chunk: Uint8Array) => {
    scanner.push(chunk);
    for (let f = scanner.next(); f !== null; f = scanner.next()) {
      got.push({ type: f.type, bytes: f.buf.slice(f.start, f.end) });
    }
    if (got.length >= 2) {
      clearTimeout(timer);
      socket.destroy();
      resolve(got);
    }
  });
});
const scan = (bytes: Uint8Array) => {
  const s = new FrameScanner();
  s.push(bytes);
  return s.next()!;
};
check(decodeAgentHello(scan(frames[0]!.bytes)).version === "2.0", "AGENT-HELLO answers 2.0");
const ack = scan(frames[1]!.bytes);
const actions = new ActionReader().reset(ack.buf, ack.payloadStart, ack.end);
check(
  ack.type === FrameType.ACK && actions.next() && actions.name() === "ip_score" &&
    Number(actions.value.int) >= 0 && Number(actions.value.int) <= 100,
  "the NOTIFY gets an ACK setting ip_score 0..100",
);

const exited = new Promise<[number | null, string | null]>((resolve) =>
  agent.once("close", (code, signal) => resolve([code, signal]))
);
// By PID: Deno's child.kill() reports the signal as the cause even after a clean exit.
process.kill(agent.pid!, "SIGTERM");
const [code, signal] = await exited;
check(
  code === 0,
  `SIGTERM stops it with status 0 (got ${code}, signal ${signal}; ${
    stderr.trim().split("\n").at(-1)
  })`,
);
