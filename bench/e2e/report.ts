/**
 * The report of `bench/e2e.ts`: medians per cell, the ratio to HAProxy alone
 * (the same HAProxy, the same connection count), CPU per request, as markdown
 * tables and as summary rows for the charts.
 *
 * @module
 */

import { fmt, median } from "../_format.ts";
import type { Run } from "./measure.ts";
import type { Variant } from "./stack.ts";

/** Above this much CPU (% of one core) used by others during a window, a cell gets a mark. */
export const OTHER_CPU_WARN_PCT = 15;

/** One cell's medians: what the tables show and the charts draw. */
export interface Summary {
  /** E.g. "HAProxy 3.4.0". */
  haproxy: string;
  /** E.g. "alone", "spoa Deno -n 1", "C agent". */
  agent: string;
  connections: number;
  runs: number;
  reqPerSec: number;
  /** req/s ÷ HAProxy alone's (medians); NaN without an "alone" cell. */
  ratio: number;
  /** The lowest and highest ratio of one repetition to the same repetition alone. */
  ratioMin: number;
  ratioMax: number;
  p50us: number;
  p99us: number;
  haproxyCpuPct: number;
  agentCpuPct: number;
  wrkCpuPct: number;
  otherCpuPct: number;
  /** CPU µs per answered request, HAProxy's and the agent's (NaN alone). */
  haproxyUsPerReq: number;
  agentUsPerReq: number;
  wrkUsPerReq: number;
  /** The rate at which wrk, HAProxy and the agent alone would fill every core. */
  cpuBoundReqPerSec: number;
  deniedPct: number;
  spoeErrors: number;
  otherErrors: number;
  agentConns: number;
  /** Disturbed by other work, or a run had problems: see the notes. */
  marked: boolean;
}

const sum = (values: number[]) => values.reduce((s, x) => s + x, 0);
const finiteMedian = (values: number[]) => median(values.filter((x) => !Number.isNaN(x)));

/**
 * The medians of every cell, with notes on disturbed runs and problems.
 *
 * @param cores The machine's cores (for the CPU-bound rate).
 */
export function summarize(
  runs: readonly Run[],
  variants: readonly Variant[],
  connectionCounts: readonly number[],
  cores: number,
): { summaries: Summary[]; notes: string[] } {
  const summaries: Summary[] = [];
  const notes: string[] = [];
  for (const connections of connectionCounts) {
    for (const variant of variants) {
      const rs = runs.filter((r) => r.variant === variant.label && r.connections === connections);
      if (rs.length === 0) continue;
      const alone = runs.filter((r) =>
        r.haproxy === variant.haproxy.label && r.connections === connections &&
        variants.find((v) => v.label === r.variant)?.agent === undefined
      );
      const m = (f: (r: Run) => number) => finiteMedian(rs.map(f));
      const perReq = (f: (r: Run) => number) => m((r) => f(r) / 100 * 1e6 / r.windowRps);
      const reqPerSec = m((r) => r.rps);
      const aloneRps = finiteMedian(alone.map((r) => r.rps));
      const perRep = rs.map((r) => {
        const base = alone.find((a) => a.rep === r.rep);
        return base === undefined ? NaN : r.rps / base.rps;
      }).filter((x) => !Number.isNaN(x));
      const answered = sum(rs.map((r) => r.ok + r.denied));
      const withAgent = variant.agent !== undefined;
      for (const r of rs) {
        if (r.otherCpu > OTHER_CPU_WARN_PCT) {
          notes.push(
            `${r.variant} c=${r.connections} rep ${r.rep}: other processes used ~${
              fmt(r.otherCpu, 0)
            } % of a core during the window: figures are disturbed.`,
          );
        }
        for (const p of r.problems) {
          notes.push(`${r.variant} c=${r.connections} rep ${r.rep}: ${p}`);
        }
      }
      summaries.push({
        haproxy: variant.haproxy.label,
        agent: variant.agentLabel,
        connections,
        runs: rs.length,
        reqPerSec,
        ratio: reqPerSec / aloneRps,
        ratioMin: perRep.length > 0 ? Math.min(...perRep) : NaN,
        ratioMax: perRep.length > 0 ? Math.max(...perRep) : NaN,
        p50us: m((r) => r.p50ms * 1000),
        p99us: m((r) => r.p99ms * 1000),
        haproxyCpuPct: m((r) => r.haproxyCpu),
        agentCpuPct: withAgent ? m((r) => r.agentCpu) : NaN,
        wrkCpuPct: m((r) => r.wrkCpu),
        otherCpuPct: m((r) => r.otherCpu),
        haproxyUsPerReq: perReq((r) => r.haproxyCpu),
        agentUsPerReq: withAgent ? perReq((r) => r.agentCpu) : NaN,
        wrkUsPerReq: perReq((r) => r.wrkCpu),
        cpuBoundReqPerSec: m((r) =>
          cores * r.windowRps * 100 / (r.haproxyCpu + r.agentCpu + r.wrkCpu)
        ),
        deniedPct: answered > 0 && withAgent ? sum(rs.map((r) => r.denied)) / answered * 100 : NaN,
        spoeErrors: sum(rs.map((r) => r.spoeErrors)),
        otherErrors: sum(rs.map((r) => r.otherStatus + r.socketErrors)),
        agentConns: withAgent ? m((r) => r.agentConns ?? NaN) : NaN,
        marked: rs.some((r) => r.otherCpu > OTHER_CPU_WARN_PCT || r.problems.length > 0),
      });
    }
  }
  return { summaries, notes };
}

/** The two markdown tables: throughput and latency, then CPU. */
export function tables(summaries: readonly Summary[]): string {
  const rows = [
    "| HAProxy | agent | conns | req/s | × alone (per round) | p50 ms | p99 ms | " +
    "HAProxy µs/req | agent µs/req | 403 % | SPOE err | other err | agent conns |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  const cpuRows = [
    "| HAProxy | agent | conns | HAProxy CPU % | agent CPU % | wrk CPU % | other CPU % | " +
    "wrk µs/req | CPU-bound req/s |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const s of summaries) {
    const alone = s.agent === "alone";
    const range = Number.isNaN(s.ratioMin) || alone
      ? ""
      : ` (${fmt(s.ratioMin, 2)}–${fmt(s.ratioMax, 2)})`;
    rows.push(
      `| ${s.haproxy} | ${s.agent} | ${s.connections} | ${fmt(s.reqPerSec)}${
        s.marked ? " *" : ""
      } | ${alone ? "1" : `${fmt(s.ratio, 2)}${range}`} | ${fmt(s.p50us / 1000, 2)} | ${
        fmt(s.p99us / 1000, 2)
      } | ${fmt(s.haproxyUsPerReq, 1)} | ${fmt(s.agentUsPerReq, 1)} | ${fmt(s.deniedPct, 1)} | ${
        alone ? "—" : s.spoeErrors
      } | ${s.otherErrors} | ${fmt(s.agentConns)} |`,
    );
    cpuRows.push(
      `| ${s.haproxy} | ${s.agent} | ${s.connections} | ${fmt(s.haproxyCpuPct)} | ${
        fmt(s.agentCpuPct)
      } | ${fmt(s.wrkCpuPct)} | ${fmt(s.otherCpuPct)} | ${fmt(s.wrkUsPerReq, 1)} | ${
        fmt(s.cpuBoundReqPerSec)
      } |`,
    );
  }
  return `${rows.join("\n")}\n\n${cpuRows.join("\n")}`;
}
