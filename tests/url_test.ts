/**
 * `deno run <url>`: the agent runs straight from a URL, with no checkout and
 * no deno.json, as the README tells operators to do. The repository is served
 * over a local HTTP server and Deno (from node_modules, whatever runtime runs
 * this test) runs `main.ts` from it with a fresh cache.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, normalize } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { checkClientIp, SpopClient } from "./_spop_client.ts";
import { FrameType } from "../lib/spop.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DENO = join(ROOT, "node_modules/deno/deno");
const WAIT_MS = 60_000;

/** Serves the repository's files read-only, with the media types Deno expects. */
function serveRepository(): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname));
    if (path.includes("..") || path.includes("node_modules")) {
      res.writeHead(403).end();
      return;
    }
    try {
      const body = readFileSync(join(ROOT, path));
      const type = path.endsWith(".json") ? "application/json" : "application/typescript";
      res.writeHead(200, { "content-type": type }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

test("deno run <url> serves HELLO and NOTIFY with 2 workers, without a checkout", {
  timeout: 120_000,
}, async () => {
  const server = await serveRepository();
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  const dir = mkdtempSync(join(tmpdir(), "spoa-url-"));
  const agent = spawn(
    DENO,
    [
      "run",
      "--reload",
      "--allow-net",
      `--allow-import=${host}`,
      "--unstable-net",
      `http://${host}/main.ts`,
      ...["-p", "0", "-a", "127.0.0.1", "-n", "2"],
    ],
    { cwd: dir, env: { ...process.env, DENO_DIR: join(dir, "cache"), NO_COLOR: "1" } },
  );
  let stderr = "";
  agent.stderr!.setEncoding("utf8");
  agent.stderr!.on("data", (text: string) => stderr += text);
  const closed = new Promise<[number | null, string | null]>((resolve) =>
    agent.once("close", (code, signal) => resolve([code, signal]))
  );
  let client: SpopClient | undefined;
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`No listening line:\n${stderr}`)), WAIT_MS);
      const look = () => {
        const match = /^\S+ info \[main\] listening on \S+:(\d+) with 2 workers/m.exec(stderr);
        if (match) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      };
      agent.stderr!.on("data", look);
      void closed.then(([code]) => reject(new Error(`Exited with ${code}:\n${stderr}`)));
    });
    assert.match(stderr, new RegExp(`Download http://${host}/main\\.ts`));
    assert.match(stderr, new RegExp(`Download http://${host}/lib/serve/worker\\.ts`));
    // The built-in service is an agent module too, loaded by each worker from the same place.
    assert.match(stderr, new RegExp(`Download http://${host}/lib/iprep/agent\\.ts`));
    assert.doesNotMatch(stderr, /node:net|warn/, "workers share the port with Deno.listen");
    client = await SpopClient.connect(port);
    assert.equal((await client.hello()).hello?.version, "2.0");
    const ack = await client.notify(1, 1, [checkClientIp("10.1.2.3")]);
    assert.equal(ack.type, FrameType.ACK);
    assert.equal(ack.actions?.[0]?.name, "ip_score");
    await client.close();
    process.kill(agent.pid!, "SIGTERM");
    const [code] = await closed;
    assert.equal(code, 0, stderr);
  } finally {
    await client?.close();
    try {
      process.kill(agent.pid!, "SIGKILL");
    } catch {
      // Already gone.
    }
    await closed;
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  }
});
