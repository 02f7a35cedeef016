/**
 * The Prometheus text exposition format (version 0.0.4) of several
 * registries at once: series with the same name and labels are summed, so
 * that one scrape sees the whole agent, every worker together.
 *
 * @module
 */

import type { FamilyLayout, MetricsLayout, MetricType } from "./registry.ts";

/** The content type of {@linkcode renderPrometheus}'s output. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** One registry's layout and values (a worker's, or a snapshot of one that ended). */
export interface MetricsSource {
  layout: MetricsLayout;
  values: Float64Array;
}

interface Merged {
  name: string;
  help: string;
  type: MetricType;
  labelNames: string[];
  buckets: number[] | undefined;
  /** Summed slots by label values (joined). */
  series: Map<string, { labels: string[]; sums: number[] }>;
}

/**
 * Sums the sources' series and renders them, families in the order first
 * seen. A family defined differently by two sources keeps the first
 * definition; the other's series of it are left out.
 *
 * @param sources The registries.
 * @returns The exposition text.
 */
export function renderPrometheus(sources: readonly MetricsSource[]): string {
  const families = mergeSources(sources);
  let out = "";
  for (const f of families.values()) {
    out += `# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}\n`;
    for (const { labels, sums } of f.series.values()) {
      const pairs = f.labelNames.map((n, i) => `${n}="${escapeLabel(labels[i]!)}"`);
      if (f.type !== "histogram") {
        out += `${f.name}${braces(pairs)} ${formatNumber(sums[0]!)}\n`;
        continue;
      }
      const bounds = f.buckets!;
      let cumulative = 0;
      for (let i = 0; i <= bounds.length; i++) {
        cumulative += sums[i]!;
        const le = i < bounds.length ? formatNumber(bounds[i]!) : "+Inf";
        out += `${f.name}_bucket${braces([...pairs, `le="${le}"`])} ${formatNumber(cumulative)}\n`;
      }
      out += `${f.name}_sum${braces(pairs)} ${formatNumber(sums[bounds.length + 1]!)}\n`;
      out += `${f.name}_count${braces(pairs)} ${formatNumber(cumulative)}\n`;
    }
  }
  return out;
}

/**
 * Folds what a worker that ended leaves behind, its counters and histograms
 * (not its gauges, which end with it), into what earlier ones left: counters
 * never go down when a worker is replaced, and the result holds each series
 * once however many workers ended.
 *
 * @param earlier What ended workers left so far, if anything.
 * @param ended The worker's last layout and values.
 * @returns One compact source of both.
 */
export function retire(earlier: MetricsSource | undefined, ended: MetricsSource): MetricsSource {
  const kept = {
    layout: { families: ended.layout.families.filter((f) => f.type !== "gauge") },
    values: ended.values,
  };
  const merged = mergeSources(earlier === undefined ? [kept] : [earlier, kept]);
  const families: FamilyLayout[] = [];
  const values: number[] = [];
  for (const f of merged.values()) {
    const series = [];
    for (const { labels, sums } of f.series.values()) {
      series.push({ labels, offset: values.length });
      values.push(...sums);
    }
    families.push({
      name: f.name,
      help: f.help,
      type: f.type,
      labelNames: f.labelNames,
      ...(f.buckets === undefined ? {} : { buckets: f.buckets }),
      series,
    });
  }
  return { layout: { families }, values: Float64Array.from(values) };
}

function mergeSources(sources: readonly MetricsSource[]): Map<string, Merged> {
  const families = new Map<string, Merged>();
  for (const { layout, values } of sources) {
    for (const f of layout.families) {
      let merged = families.get(f.name);
      if (merged === undefined) {
        merged = {
          name: f.name,
          help: f.help,
          type: f.type,
          labelNames: f.labelNames,
          buckets: f.buckets,
          series: new Map(),
        };
        families.set(f.name, merged);
      } else if (
        merged.type !== f.type || merged.labelNames.join() !== f.labelNames.join() ||
        (merged.buckets ?? []).join() !== (f.buckets ?? []).join()
      ) continue;
      const width = widthOf(f);
      for (const s of f.series) {
        const key = s.labels.join("\u0000");
        let entry = merged.series.get(key);
        if (entry === undefined) {
          entry = { labels: s.labels, sums: new Array<number>(width).fill(0) };
          merged.series.set(key, entry);
        }
        for (let i = 0; i < width; i++) entry.sums[i]! += values[s.offset + i]!;
      }
    }
  }
  return families;
}

function widthOf(f: FamilyLayout): number {
  return f.buckets === undefined ? 1 : f.buckets.length + 2;
}

function braces(pairs: string[]): string {
  return pairs.length === 0 ? "" : `{${pairs.join(",")}}`;
}

/** A sample value: integers as such, `NaN` and infinities as Prometheus spells them. */
export function formatNumber(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return String(n);
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function escapeLabel(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}
