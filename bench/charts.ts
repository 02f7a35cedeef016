/**
 * The benchmarks' pictures: reads their JSON and writes SVG charts under
 * `bench/charts/` (committed, shown in the README beside the tables).
 *
 * - `--agent FILE`, the JSON of `bench/agent.ts --json FILE`:
 *   `agent.svg` (msgs/s of spoa on each runtime, of the C agent and of the
 *   same-runtime echo server, at 16 × 16 and 16 × 1) and `agent-latency.svg`
 *   (p50, p99, p99.9 of the same cells). Cells used: `headline`, `d1`,
 *   `echo`, `c-agent`, `c-agent-d1`; those missing are left out.
 * - `--e2e FILE`, what `bench/e2e.ts --json FILE` wrote (read through
 *   {@linkcode e2eRowsOf}), or rows in the {@linkcode E2eRow} format, as a
 *   JSON array or `{ "rows": [...], "subtitle": "...", "note": "..." }`: `e2e.svg`
 *   (requests per second as a fraction of HAProxy alone, per HAProxy
 *   version and agent, with the targets) and `e2e-latency.svg` (p50 and p99
 *   per HAProxy version and agent).
 *
 * To regenerate the committed charts after the benchmark runs behind
 * `bench/RESULTS.md`:
 *
 * ```sh
 * node_modules/deno/deno run -A bench/agent.ts --json /tmp/agent.json
 * node_modules/deno/deno run -A bench/e2e.ts --json /tmp/e2e.json
 * node_modules/deno/deno task bench:charts --agent /tmp/agent.json --e2e /tmp/e2e.json
 * ```
 *
 * `--out DIR` writes elsewhere than `bench/charts/`. The output depends only
 * on the input files: the same JSON gives the same bytes.
 *
 * @module
 */

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import process from "node:process";
import { parseArgs } from "node:util";
import {
  barChart,
  type BarGroup,
  formatCount,
  latencyChart,
  type LatencyGroup,
  type ReferenceLine,
} from "./_svg.ts";

/** One cell of `bench/agent.ts --json`'s `summaries` (medians; JSON has `null` for NaN). */
export interface AgentSummary {
  runtime: string;
  cell: string;
  label?: string;
  runs?: number;
  /** Some run was disturbed or had a problem (see the dump's notes). */
  marked?: boolean;
  msgsPerSec: number | null;
  p50us: number | null;
  p99us: number | null;
  p999us: number | null;
}

/** The parts of `bench/agent.ts --json`'s output that the charts use. */
export interface AgentDump {
  started?: string;
  versions?: string;
  options?: { seconds?: number; warmup?: number; repeats?: number };
  summaries: readonly AgentSummary[];
}

/**
 * One row of the end-to-end charts: an agent behind one HAProxy version, at
 * one connection count. A NaN is drawn as "n/a" (a cell that did not run).
 */
export interface E2eRow {
  /** HAProxy's version, e.g. "2.6.12". */
  haproxy: string;
  /** The series: "spoa (Deno)", "spoa (Bun)", "C agent"; "HAProxy alone" only on the latency chart. */
  agent: string;
  /** req/s ÷ HAProxy alone's req/s in the same run. */
  ratio: number;
  reqPerSec: number;
  p50us: number;
  p99us: number;
}

/** Titles and targets of {@linkcode e2eCharts}. */
export interface E2eChartOptions {
  /** The measurement conditions. */
  subtitle?: string;
  /** Small print: versions, commit, date. */
  note?: string;
  /**
   * The target ratio per HAProxy version prefix ("2.6" matches "2.6.12");
   * default {@linkcode E2E_TARGETS}.
   */
  targets?: Readonly<Record<string, number>>;
}

/** The chart files' contents by name. */
export type Charts = Record<string, string>;

/** Issue 17's end-to-end targets: ratio to HAProxy alone, per HAProxy version. */
export const E2E_TARGETS: Readonly<Record<string, number>> = { "2.6": 0.8, "3.4": 0.65 };

const ALONE = "HAProxy alone";
/** The C floor agent's series: fixed answers, what any agent can reach here. */
const FLOOR = "floor: C, fixed answers";

/** The part of `bench/e2e.ts --json`'s output that the charts read. */
export interface E2eDump {
  opts?: { reps?: number; seconds?: number; warmup?: number };
  haproxy?: readonly string[];
  summaries: readonly {
    haproxy: string;
    agent: string;
    connections: number;
    reqPerSec: number | null;
    ratio: number | null;
    p50us: number | null;
    p99us: number | null;
  }[];
}

/**
 * Rows for {@linkcode e2eCharts} from `bench/e2e.ts --json`'s output, at one
 * connection count (50 when it ran, else the first): spoa's `-n 1` cells
 * become "spoa (Deno)" and "spoa (Bun)", "alone" becomes "HAProxy alone", the
 * C floor agent (`bench/floor/floor.c`: what any agent can reach) becomes
 * "floor: C, fixed answers", and the runtimes' floor agents are left out.
 *
 * @example Two cells of one HAProxy
 * ```ts
 * import { e2eRowsOf } from "./charts.ts";
 * const { rows } = e2eRowsOf({
 *   summaries: [
 *     { haproxy: "HAProxy 2.6.12", agent: "alone", connections: 50, reqPerSec: 80000, ratio: 1, p50us: 500, p99us: 2000 },
 *     { haproxy: "HAProxy 2.6.12", agent: "spoa Bun -n 1", connections: 50, reqPerSec: 60000, ratio: 0.75, p50us: 700, p99us: 3000 },
 *   ],
 * });
 * rows[1]!.agent; // "spoa (Bun)"
 * ```
 */
export function e2eRowsOf(dump: E2eDump): { rows: E2eRow[]; subtitle: string } {
  const counts = [...new Set(dump.summaries.map((s) => s.connections))];
  const connections = counts.includes(50) ? 50 : counts[0];
  const rows = dump.summaries
    .filter((s) =>
      s.connections === connections && (!s.agent.startsWith("floor") || s.agent === "floor C")
    )
    .map((s) => ({
      haproxy: s.haproxy.replace(/^HAProxy /, ""),
      agent: s.agent === "alone"
        ? ALONE
        : s.agent === "floor C"
        ? FLOOR
        : s.agent.replace(/^spoa (Deno|Bun) -n 1$/, "spoa ($1)").replace(
          /^spoa (Deno|Bun) (.+)$/,
          "spoa ($1) $2",
        ),
      ratio: s.ratio ?? NaN,
      reqPerSec: s.reqPerSec ?? NaN,
      p50us: s.p50us ?? NaN,
      p99us: s.p99us ?? NaN,
    }));
  const o = dump.opts ?? {};
  const subtitle = `wrk -c ${connections} (keep-alive) → HAProxy with the per-request SPOE ` +
    `filter → the agent, all on one 2-core machine; medians of ${o.reps ?? "?"} interleaved ` +
    `rounds of ${o.seconds ?? "?"} s.`;
  return { rows, subtitle };
}
const CELLS = [
  { spoa: "headline", c: "c-agent", echo: "echo", label: "16 connections × 16 NOTIFYs in flight" },
  { spoa: "d1", c: "c-agent-d1", echo: undefined, label: "16 connections × 1 in flight" },
] as const;

/**
 * `agent.svg` and `agent-latency.svg` from `bench/agent.ts --json`'s
 * output. spoa's bar at 16 × 16 also gives its fraction of the same
 * runtime's echo server. When a cell ran on several runtimes and is not
 * runtime-specific (the C agent's), the first one is used.
 *
 * @example Charts from a dump
 * ```ts
 * import { agentCharts } from "./charts.ts";
 * const p = { p50us: 250, p99us: 900, p999us: 4000 };
 * const charts = agentCharts({
 *   summaries: [
 *     { runtime: "deno", cell: "headline", msgsPerSec: 675_169, ...p },
 *     { runtime: "deno", cell: "echo", msgsPerSec: 851_558, ...p },
 *   ],
 * });
 * Object.keys(charts); // ["agent.svg", "agent-latency.svg"]
 * ```
 *
 * @param dump The parsed JSON.
 * @returns The two charts by file name.
 * @throws {RangeError} When the dump has none of the cells drawn.
 */
export function agentCharts(dump: AgentDump): Charts {
  const runtimes = [...new Set(dump.summaries.map((s) => s.runtime))];
  const find = (cell: string, runtime?: string) =>
    dump.summaries.find((s) => s.cell === cell && (runtime === undefined || s.runtime === runtime));
  const bars: BarGroup[] = [];
  const latency: LatencyGroup[] = [];
  let marked = false;
  for (const spec of CELLS) {
    const cells: { series: string; s: AgentSummary; echo?: AgentSummary | undefined }[] = [];
    for (const runtime of runtimes) {
      const s = find(spec.spoa, runtime);
      const echo = spec.echo === undefined ? undefined : find(spec.echo, runtime);
      if (s !== undefined) cells.push({ series: `spoa (${runtimeName(runtime)})`, s, echo });
    }
    const c = find(spec.c);
    if (c !== undefined) cells.push({ series: "C agent", s: c });
    for (const runtime of spec.echo === undefined ? [] : runtimes) {
      const s = find(spec.echo!, runtime);
      if (s !== undefined) cells.push({ series: `echo server (${runtimeName(runtime)})`, s });
    }
    if (cells.length === 0) continue;
    marked ||= cells.some((x) => x.s.marked === true);
    bars.push({
      label: spec.label,
      bars: cells.map(({ series, s, echo }) => {
        const value = finite(s.msgsPerSec);
        const ofEcho = value === null ? null : fraction(value, echo?.msgsPerSec);
        const label = value === null
          ? undefined
          : `${formatCount(value)} msgs/s${
            ofEcho === null ? "" : ` (${ofEcho.toFixed(2)} × echo)`
          }${s.marked === true ? " *" : ""}`;
        return { series, value, ...(label === undefined ? {} : { label }) };
      }),
    });
    latency.push({
      label: spec.label,
      rows: cells.map(({ series, s }) => ({
        series,
        ...(s.marked === true ? { name: `${series} *` } : {}),
        values: [finite(s.p50us), finite(s.p99us), finite(s.p999us)],
      })),
    });
  }
  if (bars.length === 0) {
    throw new RangeError(
      "Cannot draw the agent charts: the dump has no headline, d1, echo, c-agent or c-agent-d1 cell",
    );
  }
  const subtitle = agentConditions(dump);
  const started = dump.started?.replace(/^(\d{4}-\d\d-\d\d)T(\d\d:\d\d).*/, "$1 $2 UTC");
  const versions = dump.versions?.replace(/ \([^)]*\)/g, "");
  const note = `Source: bench/agent.ts --json${started ? `, started ${started}` : ""}${
    versions ? `; ${versions}` : ""
  }.${marked ? " * = a run disturbed by other processes, or with a problem (see its notes)." : ""}`;
  return {
    "agent.svg": barChart({
      title: "Agent alone: NOTIFY messages per second (higher is better)",
      subtitle,
      note,
      groups: bars,
      axisLabel: "NOTIFY messages answered per second",
    }),
    "agent-latency.svg": latencyChart({
      title: "Agent alone: latency of a NOTIFY (lower is better)",
      subtitle,
      note,
      percentiles: ["p50", "p99", "p99.9"],
      groups: latency,
      axisLabel: "from sending a NOTIFY to reading its ACK, log scale",
    }),
  };
}

/**
 * `e2e.svg` (req/s as a fraction of HAProxy alone, a reference line at 1.0
 * and each HAProxy version's target) and `e2e-latency.svg` (p50 and p99,
 * HAProxy alone included) from rows, grouped by HAProxy version in the
 * order they first appear.
 *
 * @example The ratio on two HAProxy versions
 * ```ts
 * import { e2eCharts } from "./charts.ts";
 * const charts = e2eCharts([
 *   { haproxy: "2.6.12", agent: "HAProxy alone", ratio: 1, reqPerSec: 60_062, p50us: 700, p99us: 2600 },
 *   { haproxy: "2.6.12", agent: "spoa (Deno)", ratio: 0.78, reqPerSec: 47_109, p50us: 900, p99us: 2900 },
 *   { haproxy: "3.4.0", agent: "spoa (Deno)", ratio: 0.7, reqPerSec: 50_000, p50us: 800, p99us: 2500 },
 * ], { subtitle: "wrk, 50 connections" });
 * charts["e2e.svg"]!.includes("target 0.80"); // true
 * ```
 *
 * @param rows One per HAProxy version and agent.
 * @param options Subtitle, note and targets.
 * @returns The two charts by file name.
 * @throws {RangeError} Without rows, or with a negative value.
 */
export function e2eCharts(rows: readonly E2eRow[], options: E2eChartOptions = {}): Charts {
  if (rows.length === 0) {
    throw new RangeError("Cannot draw the end-to-end charts: there are no rows");
  }
  const targets = options.targets ?? E2E_TARGETS;
  const versions = [...new Set(rows.map((r) => r.haproxy))];
  const group = (v: string) => `HAProxy ${v}`;
  const ratios: BarGroup[] = [];
  const references: ReferenceLine[] = [{ value: 1, label: `${ALONE} = 1.0` }];
  for (const version of versions) {
    const agents = rows.filter((r) => r.haproxy === version && r.agent !== ALONE);
    if (agents.length === 0) continue;
    ratios.push({
      label: group(version),
      bars: agents.map((r) => {
        const ratio = finite(r.ratio);
        const rps = finite(r.reqPerSec);
        return ratio === null ? { series: r.agent, value: null } : {
          series: r.agent,
          value: ratio,
          label: `${ratio.toFixed(2)} ×${rps === null ? "" : ` (${formatCount(rps)} req/s)`}`,
        };
      }),
    });
    const target = targetOf(version, targets);
    if (target !== undefined) {
      references.push({
        value: target,
        label: `target ${target.toFixed(2)}`,
        group: group(version),
      });
    }
  }
  const charts: Charts = {};
  if (ratios.length > 0) {
    charts["e2e.svg"] = barChart({
      title: "End to end: requests per second with the agent, ÷ HAProxy alone",
      ...(options.subtitle === undefined ? {} : { subtitle: options.subtitle }),
      ...(options.note === undefined ? {} : { note: options.note }),
      groups: ratios,
      references,
      format: (v) => `${v.toFixed(2)} ×`,
      axisLabel: "fraction of HAProxy alone's requests per second (higher is better)",
    });
  }
  charts["e2e-latency.svg"] = latencyChart({
    title: "End to end: latency of an HTTP request (lower is better)",
    ...(options.subtitle === undefined ? {} : { subtitle: options.subtitle }),
    ...(options.note === undefined ? {} : { note: options.note }),
    percentiles: ["p50", "p99"],
    groups: versions.map((v) => ({
      label: group(v),
      rows: rows.filter((r) => r.haproxy === v).map((r) => ({
        series: r.agent,
        values: [finite(r.p50us), finite(r.p99us)],
      })),
    })),
    axisLabel: "wrk's latency, log scale",
  });
  return charts;
}

/** The target of the longest prefix that matches the version ("2.6" matches "2.6.12", not "2.60"). */
function targetOf(version: string, targets: Readonly<Record<string, number>>): number | undefined {
  const keys = Object.keys(targets)
    .filter((k) => version === k || version.startsWith(`${k}.`))
    .sort((a, b) => b.length - a.length);
  return keys[0] === undefined ? undefined : targets[keys[0]];
}

/** A number, or null for JSON's null (NaN) and other non-finite values. */
function finite(value: number | null | undefined): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

function fraction(value: number, of: number | null | undefined): number | null {
  const d = finite(of);
  return d === null || d === 0 ? null : value / d;
}

function runtimeName(runtime: string): string {
  return runtime === "deno" ? "Deno" : runtime === "bun" ? "Bun" : runtime;
}

function agentConditions(dump: AgentDump): string {
  const o = dump.options ?? {};
  const runs = o.repeats === undefined
    ? "Medians per cell"
    : `Median of ${o.repeats} run${o.repeats === 1 ? "" : "s"} per cell`;
  const time = o.seconds === undefined
    ? ""
    : `, ${o.seconds} s each after ${o.warmup ?? 1} s warm-up`;
  return `${runs}${time}. One agent thread pinned to core 1, the load generator ` +
    `(bench/load.ts on Bun, speaking SPOP like HAProxy) on core 0. ` +
    `The echo server writes back the bytes it reads, on the same runtime: the runtime's own limit.`;
}

const USAGE = `Usage: charts.ts [--agent FILE] [--e2e FILE] [--out DIR]

Writes SVG charts from benchmark JSON (see the module doc of bench/charts.ts):
  --agent FILE  bench/agent.ts --json output → agent.svg, agent-latency.svg
  --e2e FILE    bench/e2e.ts --json output, or end-to-end rows ([{haproxy, agent,
                ratio, reqPerSec, p50us, p99us}] or {rows, subtitle, note})
                → e2e.svg, e2e-latency.svg
  --out DIR     where to write them (default bench/charts/)`;

function main(args: string[]): number {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      options: {
        agent: { type: "string" },
        e2e: { type: "string" },
        out: { type: "string", default: new URL("./charts/", import.meta.url).pathname },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (err) {
    console.error(`charts: ${err instanceof Error ? err.message : err}\n${USAGE}`);
    return 2;
  }
  if (values.help === true || (values.agent === undefined && values.e2e === undefined)) {
    console[values.help === true ? "log" : "error"](USAGE);
    return values.help === true ? 0 : 2;
  }
  const charts: Charts = {};
  if (values.agent !== undefined) {
    const dump = readJson(values.agent) as AgentDump;
    if (!Array.isArray(dump?.summaries)) {
      throw new TypeError(`Cannot read "${values.agent}": it has no "summaries" array`);
    }
    Object.assign(charts, agentCharts(dump));
  }
  if (values.e2e !== undefined) {
    const read = readJson(values.e2e) as
      | E2eRow[]
      | ({ rows: E2eRow[] } & E2eChartOptions)
      | E2eDump;
    const input = !Array.isArray(read) && "summaries" in read && Array.isArray(read.summaries)
      ? e2eRowsOf(read)
      : read as E2eRow[] | ({ rows: E2eRow[] } & E2eChartOptions);
    if (!Array.isArray(input) && !Array.isArray(input.rows)) {
      throw new TypeError(
        `Cannot read end-to-end rows from "${values.e2e}": expected bench/e2e.ts --json output, ` +
          "an array or { rows: [...] }",
      );
    }
    const { rows, ...options } = Array.isArray(input) ? { rows: input } : input;
    Object.assign(charts, e2eCharts(rows, options));
  }
  mkdirSync(values.out, { recursive: true });
  for (const [name, svg] of Object.entries(charts)) {
    const file = `${values.out.replace(/\/?$/, "/")}${name}`;
    writeFileSync(file, svg);
    console.error(`charts: wrote ${file}`);
  }
  return 0;
}

function readJson(file: string): unknown {
  return JSON.parse(readFileSync(file, "utf8"));
}

if (import.meta.main) process.exitCode = main(process.argv.slice(2));
