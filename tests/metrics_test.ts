/**
 * `spoa --metrics ADDR:PORT`: what a scrape shows after real SPOP traffic,
 * summed over workers; the format checked by Prometheus' own `promtool` and
 * scraped by a real Prometheus server; `/health`; bad HTTP requests.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { type AgentProcess, startAgent } from "./_process.ts";
import { freePort, sleep, until } from "./_haproxy.ts";
import { checkClientIp, SpopClient } from "./_spop_client.ts";

const PROMETHEUS = process.env.SPOA_PROMETHEUS_BIN || "prometheus";
const PROMTOOL = process.env.SPOA_PROMTOOL_BIN || "promtool";

const DIR = mkdtempSync(path.join(tmpdir(), "spoa-metrics-"));
after(() => rmSync(DIR, { recursive: true, force: true }));

/** An agent module with a metric of its own; `slow` holds each NOTIFY for 1.5 s. */
const MODULE = path.join(DIR, "counting-agent.ts");
writeFileSync(
  MODULE,
  `export default (ctx) => {
  const seen = ctx.metrics.counter({ name: "test_seen_total", help: "Messages seen.", labelNames: ["kind"] });
  const ips = seen.with({ kind: "ip" });
  const slow = ctx.args.includes("slow");
  return {
    "check-client-ip": async (_message, reply) => {
      ips.inc();
      if (slow) await new Promise((resolve) => setTimeout(resolve, 1500));
      reply.setVar("sess", "ip_score", 50);
    },
  };
};
`,
);

/** Sends raw bytes to an HTTP server and returns everything it answers until it closes. */
function raw(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port }, () => socket.write(request));
    let text = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => text += chunk);
    socket.on("close", () => resolve(text));
    socket.on("error", reject);
    socket.setTimeout(5000, () => socket.destroy(new Error("no answer within 5 s")));
  });
}

const GET = (target: string, method = "GET") =>
  `${method} ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`;

function statusOf(response: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1]);
}

function bodyOf(response: string): string {
  return response.slice(response.indexOf("\r\n\r\n") + 4);
}

/** The value of one sample line, e.g. `spoa_messages_total{message="check-client-ip"}`. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith(series + " ")) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

async function startWithMetrics(args: string[]): Promise<{ agent: AgentProcess; port: number }> {
  const port = await freePort();
  const agent = await startAgent(["--metrics", `127.0.0.1:${port}`, ...args]);
  await until(async () => {
    try {
      return statusOf(await raw(port, GET("/health"))) === 200;
    } catch {
      return false;
    }
  }, "the metrics endpoint");
  return { agent, port };
}

/** Opens `connections` SPOP connections, each with one HELLO and `notifies` NOTIFYs answered. */
async function traffic(port: number, connections: number, notifies: number): Promise<void> {
  await Promise.all(Array.from({ length: connections }, async () => {
    const client = await SpopClient.connect(port);
    try {
      await client.hello();
      for (let i = 1; i <= notifies; i++) await client.notify(i, 1, [checkClientIp("10.0.0.1")]);
    } finally {
      await client.close();
    }
  }));
}

for (const workers of ["0", "2"]) {
  test(`spoa --metrics -n ${workers} counts real traffic, every worker summed, and promtool accepts it`, async () => {
    const { agent, port } = await startWithMetrics(["-n", workers, "--agent", MODULE]);
    try {
      await traffic(agent.port, 6, 5);
      let text = "";
      await until(async () => {
        text = bodyOf(await raw(port, GET("/metrics")));
        return sample(text, "spoa_connections_open") === 0;
      }, "every connection closed");
      const expect: [string, number][] = [
        ["spoa_connections_accepted_total", 6],
        ['spoa_hellos_total{kind="normal",capabilities="pipelining"}', 6],
        ['spoa_frames_received_total{type="HAPROXY-HELLO"}', 6],
        ['spoa_frames_received_total{type="NOTIFY"}', 30],
        ['spoa_frames_sent_total{type="AGENT-HELLO"}', 6],
        ['spoa_frames_sent_total{type="ACK"}', 30],
        ['spoa_messages_total{message="check-client-ip"}', 30],
        ['spoa_handler_errors_total{message="check-client-ip"}', 0],
        ['spoa_handler_duration_seconds_count{message="check-client-ip"}', 30],
        ["spoa_notifies_in_flight", 0],
        ['test_seen_total{kind="ip"}', 30],
        ["spoa_workers_up", workers === "0" ? 1 : 2],
        ["spoa_worker_restarts_total", 0],
      ];
      for (const [series, value] of expect) assert.equal(sample(text, series), value, series);
      assert.ok(sample(text, "spoa_received_bytes_total")! > 6 * 60, "bytes in");
      assert.ok(sample(text, "spoa_sent_bytes_total")! > 30 * 20, "bytes out");
      assert.ok(sample(text, "process_resident_memory_bytes")! > 1e6, "RSS");
      // Deno lets only --allow-all read /proc/self: the two fd gauges are then left out.
      const fds = sample(text, "process_open_fds");
      if (fds !== undefined || !text.includes('runtime="deno')) assert.ok(fds! > 3, "open fds");
      assert.match(text, /^spoa_build_info\{version="[^"]+",runtime="(deno|bun) [^"]+"\} 1$/m);
      const metricsFile = path.join(DIR, `metrics-${workers}.txt`);
      writeFileSync(metricsFile, text);
      const check = spawnSync(PROMTOOL, ["check", "metrics"], { input: text, encoding: "utf8" });
      assert.equal(check.error, undefined, `${PROMTOOL}: ${check.error}`);
      assert.equal(check.status, 0, `promtool check metrics:\n${check.stdout}${check.stderr}`);
    } finally {
      await agent.stop();
    }
  });
}

test("spoa --metrics answers bad HTTP requests with 400, 404 and 405 and keeps serving SPOP", async () => {
  const { agent, port } = await startWithMetrics(["-n", "0", "--seed", "1"]);
  try {
    assert.equal(statusOf(await raw(port, GET("/nope"))), 404);
    const post = await raw(port, GET("/metrics", "POST"));
    assert.equal(statusOf(post), 405);
    assert.match(post, /\r\nAllow: GET, HEAD\r\n/i);
    assert.equal(statusOf(await raw(port, "NOT HTTP AT ALL\r\n\r\n")), 400);
    assert.equal(
      statusOf(await raw(port, `GET / HTTP/1.1\r\nX: ${"a".repeat(20_000)}\r\n\r\n`)),
      431,
    );
    const head = await raw(port, GET("/metrics", "HEAD"));
    assert.equal(statusOf(head), 200);
    assert.equal(bodyOf(head), "");
    // A client that sends half a request and goes away holds nothing.
    const idle = net.connect({ host: "127.0.0.1", port }, () => idle.write("GET /metr"));
    idle.on("error", () => {});
    await traffic(agent.port, 1, 3);
    idle.destroy();
    const text = bodyOf(await raw(port, GET("/metrics")));
    assert.equal(sample(text, 'spoa_messages_total{message="check-client-ip"}'), 3);
    assert.ok(sample(text, "spoa_iprep_score_count") === 3, "the service's scores histogram");
    const exit = await agent.stop();
    assert.equal(exit.code, 0, exit.stderr);
  } finally {
    await agent.stop("SIGKILL");
  }
});

test("spoa --metrics /health answers 200 while serving and 503 while draining", async () => {
  const { agent, port } = await startWithMetrics([
    "-n",
    "0",
    "--handler-timeout",
    "0",
    "--agent",
    MODULE,
    "--",
    "slow",
  ]);
  let client: SpopClient | undefined;
  try {
    const ok = await raw(port, GET("/health"));
    assert.equal(statusOf(ok), 200);
    assert.deepEqual(JSON.parse(bodyOf(ok)), {
      status: "serving",
      version: JSON.parse(bodyOf(ok)).version,
      workers_up: 1,
      connections: 0,
    });
    client = await SpopClient.connect(agent.port);
    await client.hello();
    const ack = client.notify(1, 1, [checkClientIp("10.0.0.1")]);
    await sleep(200);
    process.kill(agent.pid, "SIGTERM");
    await until(async () => statusOf(await raw(port, GET("/health"))) === 503, "a 503");
    const draining = JSON.parse(bodyOf(await raw(port, GET("/health"))));
    assert.equal(draining.status, "draining");
    await ack; // The NOTIFY in flight still gets its ACK.
    const exit = await agent.exited;
    assert.equal(exit.code, 0, exit.stderr);
  } finally {
    await client?.close();
    await agent.stop("SIGKILL");
  }
});

test(
  "a real Prometheus server scrapes spoa -n 2 and sees what it served",
  { timeout: 60_000 },
  async () => {
    const { agent, port } = await startWithMetrics(["-n", "2", "--seed", "3"]);
    const webPort = await freePort();
    const config = path.join(DIR, "prometheus.yml");
    writeFileSync(
      config,
      `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: spoa\n    static_configs:\n      - targets: ["127.0.0.1:${port}"]\n`,
    );
    const prometheus = spawn(PROMETHEUS, [
      `--config.file=${config}`,
      `--storage.tsdb.path=${path.join(DIR, "tsdb")}`,
      `--web.listen-address=127.0.0.1:${webPort}`,
    ], { stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    prometheus.stderr!.setEncoding("utf8");
    prometheus.stderr!.on("data", (t: string) => log += t);
    const exited = new Promise<void>((resolve) => prometheus.once("close", () => resolve()));
    prometheus.once("error", (err) => log += String(err));
    try {
      await traffic(agent.port, 4, 10);
      const query = async (expr: string): Promise<number | undefined> => {
        const res = await raw(
          webPort,
          GET(`/api/v1/query?query=${encodeURIComponent(expr)}`),
        );
        const body = JSON.parse(bodyOf(res).replace(/^[0-9a-f]+\r\n|\r\n0\r\n\r\n$/g, ""));
        const value = body?.data?.result?.[0]?.value?.[1];
        return value === undefined ? undefined : Number(value);
      };
      let seen: number | undefined;
      await until(async () => {
        try {
          seen = await query('sum(spoa_messages_total{job="spoa"})');
        } catch {
          return false;
        }
        return seen === 40;
      }, `Prometheus to scrape 40 messages (last seen: ${seen}); its log:\n${log}`);
      assert.equal(await query('up{job="spoa"}'), 1);
      assert.equal(await query("spoa_workers_up"), 2);
      assert.equal(await query("sum(spoa_iprep_score_count)"), 40);
    } finally {
      prometheus.kill("SIGTERM");
      await Promise.race([exited, sleep(10_000)]);
      if (prometheus.exitCode === null) prometheus.kill("SIGKILL");
      await agent.stop();
    }
  },
);
