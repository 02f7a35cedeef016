/**
 * `spoa --metrics ADDR:PORT`: what a scrape shows after real SPOP traffic,
 * summed over workers; the format checked by Prometheus' own `promtool` and
 * scraped by a real Prometheus server; `/health`; bad HTTP requests.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { type AgentProcess, startAgent } from "./_process.ts";
import { freePort, sleep, until } from "./_haproxy.ts";
import { checkClientIp, SpopClient } from "./_spop_client.ts";
import { startPool } from "../lib/serve/pool.ts";
import { createLogger, Level } from "../lib/agent/log.ts";
import { renderPrometheus } from "../lib/metrics/render.ts";
import { FrameType } from "../lib/spop.ts";
import { Agent, serve, type Server } from "../lib/mod.ts";

const QUIET = createLogger({ level: Level.ERROR, sink: () => {} });

const PROMETHEUS = process.env.SPOA_PROMETHEUS_BIN || "prometheus";
const PROMTOOL = process.env.SPOA_PROMTOOL_BIN || "promtool";

const OPS = path.join(import.meta.dirname!, "../ops");
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

/** A body sent with `Transfer-Encoding: chunked`, joined (bodies without chunks pass as they are). */
function dechunk(body: string): string {
  if (!/^[0-9a-f]+\r\n/.test(body)) return body;
  let out = "";
  let rest = body;
  for (;;) {
    const eol = rest.indexOf("\r\n");
    const size = parseInt(rest.slice(0, eol), 16);
    if (!(size > 0)) return out;
    out += rest.slice(eol + 2, eol + 2 + size);
    rest = rest.slice(eol + 2 + size + 2);
  }
}

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
      statusOf(
        await raw(port, `GET / HTTP/1.1\r\nConnection: close\r\nX: ${"a".repeat(20_000)}\r\n\r\n`),
      ),
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
    // ops/prometheus.yml, scraping and evaluating every second, with ops/alerts.yml.
    const config = path.join(DIR, "prometheus.yml");
    const shipped = readFileSync(path.join(OPS, "prometheus.yml"), "utf8");
    const fast = shipped
      .replace("scrape_interval: 15s", "scrape_interval: 1s\n  evaluation_interval: 1s")
      .replace(/targets: \["127\.0\.0\.1:9100"\]/, `targets: ["127.0.0.1:${port}"]`);
    assert.notEqual(fast, shipped);
    writeFileSync(config, fast);
    copyFileSync(path.join(OPS, "alerts.yml"), path.join(DIR, "alerts.yml"));
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
        const body = JSON.parse(dechunk(bodyOf(res)));
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
      // Every query of the Grafana dashboard runs.
      const dashboard = JSON.parse(readFileSync(path.join(OPS, "grafana-dashboard.json"), "utf8"));
      const exprs: string[] = dashboard.panels.flatMap((p: { targets: { expr: string }[] }) =>
        p.targets.map((t) => t.expr)
      );
      assert.ok(exprs.length >= 12);
      for (const expr of exprs) {
        const concrete = expr.replaceAll("$instance", ".*").replaceAll("$__rate_interval", "1m");
        const res = await raw(webPort, GET(`/api/v1/query?query=${encodeURIComponent(concrete)}`));
        assert.match(dechunk(bodyOf(res)), /"status":"success"/, concrete);
      }
      // The alert rules load and evaluate, and none fires.
      await until(async () => {
        const rules = JSON.parse(dechunk(bodyOf(await raw(webPort, GET("/api/v1/rules")))));
        const all = rules.data.groups.flatMap((g: { rules: unknown[] }) => g.rules) as {
          health: string;
          state: string;
        }[];
        return all.length === 7 && all.every((r) => r.health === "ok" && r.state === "inactive");
      }, "the 7 alert rules to evaluate, all inactive");
    } finally {
      prometheus.kill("SIGTERM");
      await Promise.race([exited, sleep(10_000)]);
      if (prometheus.exitCode === null) prometheus.kill("SIGKILL");
      await agent.stop();
    }
  },
);

test("a worker that dies takes none of its counts with it: every scrape sees totals only grow", {
  timeout: 60_000,
}, async () => {
  // Worker 1 of _crash_worker.ts dies about 150 ms after each time it serves; with
  // `streams` every other connection goes to it while it lives.
  const pool = await startPool({
    workers: 2,
    dispatch: "streams",
    hostname: "127.0.0.1",
    port: 0,
    config: {
      debug: false,
      agent: {
        module: new URL("../lib/iprep/agent.ts", import.meta.url).href,
        label: "iprep",
        args: [],
      },
      session: {},
      metrics: true,
    },
    log: createLogger({ level: Level.ERROR, sink: () => {} }),
    workerUrl: new URL("./_crash_worker.ts", import.meta.url),
  });
  try {
    const scrape = () => renderPrometheus(pool.metricsSources());
    let last = 0;
    let acked = 0;
    const deadline = Date.now() + 2500;
    while (Date.now() < deadline) {
      const client = await SpopClient.connect(pool.port).catch(() => undefined);
      if (client !== undefined) {
        try {
          await client.hello();
          const ack = await client.notify(1, 1, [checkClientIp("10.0.0.9")]);
          if (ack.type === FrameType.ACK) acked++;
        } catch {
          // Its worker died under it.
        } finally {
          await client.close();
        }
      }
      const now = sample(scrape(), 'spoa_messages_total{message="check-client-ip"}') ?? 0;
      assert.ok(now >= last, `spoa_messages_total went down from ${last} to ${now}`);
      last = now;
    }
    assert.ok(pool.started > 2, `worker 1 was restarted (${pool.started} starts)`);
    assert.ok(acked > 10, `${acked} NOTIFYs answered`);
    assert.ok(last >= acked, `${last} messages counted, ${acked} answered`);
    const text = scrape();
    // The gauges of dead workers are gone: nothing is open once every client closed.
    await until(() => sample(scrape(), "spoa_connections_open") === 0, "no connection open");
    assert.match(text, /^spoa_frames_received_total\{type="NOTIFY"\} \d+$/m);
  } finally {
    await pool.shutdown(1000);
  }
});

test("serve() with metrics serves the same endpoint for an Agent, a module and a pool", {
  timeout: 60_000,
}, async () => {
  const cases: [string, () => Promise<Server>][] = [
    ["an Agent", () =>
      serve(
        new Agent().on("check-client-ip", (_m, reply) => void reply.setVar("sess", "ip_score", 7)),
        { hostname: "127.0.0.1", port: 0, metrics: { port: 0 }, log: QUIET },
      )],
    [
      "a module on this thread",
      () => serve(MODULE, { hostname: "127.0.0.1", port: 0, metrics: { port: 0 }, log: QUIET }),
    ],
    ["a module on 2 workers", () =>
      serve(MODULE, {
        workers: 2,
        hostname: "127.0.0.1",
        port: 0,
        metrics: { hostname: "127.0.0.1", port: 0 },
        log: QUIET,
      })],
  ];
  for (const [what, start] of cases) {
    const server = await start();
    try {
      assert.ok(server.metricsPort! > 0, what);
      await traffic(server.port, 2, 3);
      const text = bodyOf(await raw(server.metricsPort!, GET("/metrics")));
      assert.equal(sample(text, 'spoa_messages_total{message="check-client-ip"}'), 6, what);
      assert.equal(statusOf(await raw(server.metricsPort!, GET("/health"))), 200, what);
    } finally {
      await server.shutdown(1000);
    }
    // The endpoint stops with the server.
    await assert.rejects(raw(server.metricsPort!, GET("/health")), what);
  }
});

test("serve() checks its metrics option where it enters", async () => {
  const agent = new Agent();
  await assert.rejects(
    serve(agent, { metrics: { port: 70000 } }),
    new RangeError("Cannot use metrics.port 70000: it must be an integer from 0 to 65535"),
  );
  await assert.rejects(
    serve(agent, { metrics: { port: 1, host: "x" } as never }),
    new TypeError('Cannot use metrics: unknown option "host" (hostname, port)'),
  );
  await assert.rejects(
    serve(agent, { metrics: 9100 as never }),
    new TypeError("Cannot use metrics: it must be an object such as { port: 9100 }"),
  );
});
