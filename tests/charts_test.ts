import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { agentCharts, type AgentSummary, e2eCharts, type E2eRow } from "../bench/charts.ts";

const CHARTS = fileURLToPath(new URL("../bench/charts.ts", import.meta.url));

function cell(runtime: string, cell: string, msgsPerSec: number | null, marked = false) {
  return { runtime, cell, marked, msgsPerSec, p50us: 250, p99us: 1000, p999us: 4000 };
}

const FULL: AgentSummary[] = [
  cell("deno", "headline", 675_169),
  cell("deno", "d1", 58_949),
  cell("deno", "echo", 851_558),
  cell("deno", "c-agent", 1_400_000),
  cell("deno", "c-agent-d1", 90_000),
  cell("bun", "headline", 785_145),
  cell("bun", "d1", 61_313, true),
  cell("bun", "echo", 914_281),
  cell("bun", "c-agent", 1_500_000),
];

/** The texts of a chart's `<text>` elements, unescaped enough for these checks. */
function texts(svg: string): string[] {
  return [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]!.replace(/&amp;/g, "&"));
}

function barFills(svg: string): string[] {
  return [...svg.matchAll(/<rect class="bar"[^>]* fill="([^"]+)"/g)].map((m) => m[1]!);
}

test("agentCharts() draws spoa, the C agent and the echo servers per load", () => {
  const charts = agentCharts({ summaries: FULL, options: { repeats: 3, seconds: 3, warmup: 1 } });
  assert.deepEqual(Object.keys(charts), ["agent.svg", "agent-latency.svg"]);
  const svg = charts["agent.svg"]!;
  // 16 × 16: Deno, Bun, the C agent (the first of its cells), two echo servers; 16 × 1: three.
  assert.equal(barFills(svg).length, 8);
  const labels = texts(svg);
  for (
    const label of [
      "675 k msgs/s (0.79 × echo)",
      "785 k msgs/s (0.86 × echo)",
      "1.4 M msgs/s",
      "852 k msgs/s",
      "61.3 k msgs/s *",
      "90 k msgs/s",
      "16 connections × 16 NOTIFYs in flight",
      "echo server (Bun)",
    ]
  ) assert.ok(labels.includes(label), label);
  assert.match(svg, /Median of 3 runs per cell, 3 s each after 1 s warm-up/);
  assert.ok(texts(charts["agent-latency.svg"]!).includes("spoa (Bun) *"));
});

test("agentCharts() leaves out the cells that did not run", () => {
  const only = FULL.filter((s) => s.cell === "headline");
  const svg = agentCharts({ summaries: only })["agent.svg"]!;
  assert.equal(barFills(svg).length, 2);
  const labels = texts(svg);
  assert.ok(!labels.includes("C agent"));
  assert.ok(!labels.includes("16 connections × 1 in flight"));
  assert.ok(labels.includes("675 k msgs/s"), "no echo: no fraction");
});

test("agentCharts() draws null medians (NaN in the run) as n/a", () => {
  const summaries = [{ ...cell("deno", "headline", null), p99us: null }];
  const charts = agentCharts({ summaries });
  assert.equal(barFills(charts["agent.svg"]!).length, 0);
  assert.ok(texts(charts["agent.svg"]!).includes("n/a"));
  assert.ok(texts(charts["agent-latency.svg"]!).includes("p99 n/a"));
});

test("agentCharts() rejects a dump without any of its cells", () => {
  assert.throws(
    () => agentCharts({ summaries: [cell("deno", "n2", 1)] }),
    new RangeError(
      "Cannot draw the agent charts: the dump has no headline, d1, echo, c-agent or c-agent-d1 cell",
    ),
  );
});

const E2E: E2eRow[] = [
  {
    haproxy: "2.6.12",
    agent: "HAProxy alone",
    ratio: 1,
    reqPerSec: 60_000,
    p50us: 700,
    p99us: 2600,
  },
  {
    haproxy: "2.6.12",
    agent: "spoa (Deno)",
    ratio: 0.78,
    reqPerSec: 46_800,
    p50us: 900,
    p99us: 2900,
  },
  { haproxy: "2.6.12", agent: "C agent", ratio: 0.84, reqPerSec: 50_400, p50us: 800, p99us: 2500 },
  { haproxy: "3.4.0", agent: "spoa (Deno)", ratio: NaN, reqPerSec: NaN, p50us: 850, p99us: NaN },
  {
    haproxy: "2.60.1",
    agent: "spoa (Bun)",
    ratio: 0.7,
    reqPerSec: 42_000,
    p50us: 950,
    p99us: 3100,
  },
];

test("e2eCharts() draws the ratio per HAProxy version, HAProxy alone at 1.0 and the targets", () => {
  const charts = e2eCharts(E2E, { subtitle: "wrk, 50 connections", note: "made up" });
  assert.deepEqual(Object.keys(charts), ["e2e.svg", "e2e-latency.svg"]);
  const svg = charts["e2e.svg"]!;
  const labels = texts(svg);
  for (
    const label of [
      "HAProxy 2.6.12",
      "HAProxy 3.4.0",
      "HAProxy 2.60.1",
      "0.78 × (46.8 k req/s)",
      "0.84 × (50.4 k req/s)",
      "HAProxy alone = 1.0",
      "target 0.80",
      "target 0.65",
      "n/a",
    ]
  ) assert.ok(labels.includes(label), label);
  assert.equal(labels.filter((t) => t.startsWith("target")).length, 2, "2.6 does not match 2.60");
  assert.ok(!labels.includes("HAProxy alone"), "no bar for HAProxy alone");
  assert.equal(barFills(svg).length, 3);
  assert.equal(svg.match(/class="reference"/g)?.length, 3);
  const latency = texts(charts["e2e-latency.svg"]!);
  for (const label of ["HAProxy alone", "700 µs", "2.6 ms", "p99 n/a"]) {
    assert.ok(latency.includes(label), label);
  }
});

test("e2eCharts() takes other targets and rejects an empty list", () => {
  const svg = e2eCharts(E2E, { targets: { "2.60": 0.5 } })["e2e.svg"]!;
  assert.deepEqual(texts(svg).filter((t) => t.startsWith("target")), ["target 0.50"]);
  assert.throws(
    () => e2eCharts([]),
    new RangeError("Cannot draw the end-to-end charts: there are no rows"),
  );
});

function runCharts(args: string[]) {
  const deno = navigator.userAgent.startsWith("Deno");
  const out = spawnSync(
    process.execPath,
    deno ? ["run", "--allow-read", "--allow-write", CHARTS, ...args] : [CHARTS, ...args],
    { encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } },
  );
  return { code: out.status, stdout: out.stdout, stderr: out.stderr };
}

test("charts.ts writes the charts of its input files into --out", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "spoa-charts-"));
  try {
    const agent = path.join(dir, "agent.json");
    const e2e = path.join(dir, "e2e.json");
    writeFileSync(agent, JSON.stringify({ summaries: FULL, runs: [], notes: [] }));
    writeFileSync(e2e, JSON.stringify({ rows: E2E.slice(0, 3), subtitle: "wrk" }));
    const out = path.join(dir, "out");
    const run = runCharts(["--agent", agent, "--e2e", e2e, "--out", out]);
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(readdirSync(out).sort(), [
      "agent-latency.svg",
      "agent.svg",
      "e2e-latency.svg",
      "e2e.svg",
    ]);
    assert.equal(
      readFileSync(path.join(out, "agent.svg"), "utf8"),
      agentCharts({ summaries: FULL })["agent.svg"],
    );
    const usage = runCharts([]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /^Usage: charts\.ts/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
