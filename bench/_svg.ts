/**
 * A small SVG chart writer for the benchmarks' pictures: a grouped
 * horizontal bar chart ({@linkcode barChart}) and a latency chart
 * ({@linkcode latencyChart}, percentiles as markers on a log scale). Pure:
 * options in, the SVG text out, no I/O; the same input gives the same bytes
 * (coordinates rounded to 0.1 px), so committed charts diff cleanly.
 *
 * The charts are 720 px wide, as tall as their rows need, on a white
 * background (readable in GitHub's light and dark themes), in the system's
 * sans-serif font, with a `<title>`, a `<desc>` listing every value and
 * `role="img"`. A series has the same colour in every chart
 * ({@linkcode seriesColour}). A value of `null` is drawn as "n/a"; a value
 * that is not a finite number of at least 0 (above 0 on the latency chart's log scale), a
 * chart without groups or a group without bars throws.
 *
 * @module
 */

import {
  axis,
  boxedText,
  checkCommon,
  checkValue,
  description,
  footer,
  haloText,
  header,
  heading,
  labelColumn,
  legendSwatch,
  marker,
  NA,
  naText,
  referenceLine,
  rowLabel,
  SHAPES,
  svgDocument,
} from "./_svg_layout.ts";
import {
  formatCount,
  formatMicros,
  linearTicks,
  logTicks,
  MUTED,
  PAD,
  px,
  seriesColour,
  textWidth,
} from "./_svg_parts.ts";

export { escapeXml, formatCount, formatMicros, seriesColour } from "./_svg_parts.ts";

/** One bar: its series (name and colour) and value; `null` is drawn as "n/a". */
export interface Bar {
  series: string;
  value: number | null;
  /** The text at the bar's end instead of the formatted value. */
  label?: string;
}

/** Bars under one heading, e.g. "16 conn × 16 deep" or "HAProxy 2.6.12". */
export interface BarGroup {
  label: string;
  bars: readonly Bar[];
}

/** A dashed vertical line at a value, e.g. 1.0 "HAProxy alone" or a target. */
export interface ReferenceLine {
  value: number;
  label: string;
  /** Draw it across this group's bars only (a target of that group); across all when absent. */
  group?: string;
}

/** Everything {@linkcode barChart} draws. */
export interface BarChartOptions {
  title: string;
  /** The measurement conditions, under the title (wrapped). */
  subtitle?: string;
  /** Small print at the bottom: source, versions, commit. */
  note?: string;
  groups: readonly BarGroup[];
  /** A bar's label from its value (default {@linkcode formatCount}). */
  format?: (value: number) => string;
  /** A tick's label (default {@linkcode formatCount}). */
  tickFormat?: (value: number) => string;
  /** The axis caption, e.g. "NOTIFY messages per second". */
  axisLabel?: string;
  references?: readonly ReferenceLine[];
  /** px, at least 320 (default 720). */
  width?: number;
}

/** One row of a latency chart: a series and its value for each of the chart's percentiles. */
export interface LatencyRow {
  series: string;
  /** The row's name on the left, e.g. with a mark (default: the series). */
  name?: string;
  /** One per percentile of the chart, in the same order; `null` is "n/a". */
  values: readonly (number | null)[];
}

/** Latency rows under one heading. */
export interface LatencyGroup {
  label: string;
  rows: readonly LatencyRow[];
}

/** Everything {@linkcode latencyChart} draws. */
export interface LatencyChartOptions {
  title: string;
  subtitle?: string;
  note?: string;
  /** The percentiles' names, e.g. `["p50", "p99", "p99.9"]` (at most 4). */
  percentiles: readonly string[];
  groups: readonly LatencyGroup[];
  /** A value's label (default {@linkcode formatMicros}: values in µs). */
  format?: (value: number) => string;
  axisLabel?: string;
  /** px, at least 320 (default 720). */
  width?: number;
}

const BAR_H = 18;
const BAR_PITCH = 24;
const HEADING_H = 22;
const GROUP_GAP = 8;
const LATENCY_PITCH = 36;

/**
 * A grouped horizontal bar chart: a heading per group, a bar per series
 * with its name on the left and its value at its end, an axis from 0 with a
 * few round ticks, dashed reference lines, a legend of the series.
 *
 * @example msgs/s per runtime, against the echo server
 * ```ts
 * import { barChart } from "./_svg.ts";
 * const svg = barChart({
 *   title: "Agent alone: NOTIFY messages per second",
 *   subtitle: "One pinned agent thread, load from bench/load.ts",
 *   groups: [{
 *     label: "16 conn × 16 deep",
 *     bars: [
 *       { series: "spoa (Deno)", value: 675_169 },
 *       { series: "echo server (Deno)", value: 851_558 },
 *     ],
 *   }],
 *   format: (v) => `${v.toLocaleString("en-US")} msgs/s`,
 * });
 * svg.startsWith("<svg"); // true
 * ```
 *
 * @param options The groups of bars, titles and formats.
 * @returns The SVG document.
 * @throws {RangeError} Without groups, with an empty group, a value that is
 * not a finite number of at least 0, or a reference to a group that does not exist.
 */
export function barChart(options: BarChartOptions): string {
  const width = checkCommon(options.title, options.width, options.groups.length);
  const format = options.format ?? formatCount;
  const tickFormat = options.tickFormat ?? formatCount;
  const references = options.references ?? [];
  let max = 0;
  const series: string[] = [];
  for (const group of options.groups) {
    if (group.bars.length === 0) {
      throw new RangeError(`Cannot draw group "${group.label}": it has no bars`);
    }
    for (const bar of group.bars) {
      checkValue(bar.value, `bar "${bar.series}" in "${group.label}"`, 0);
      if (bar.value !== null) max = Math.max(max, bar.value);
      if (!series.includes(bar.series)) series.push(bar.series);
    }
  }
  for (const ref of references) {
    checkValue(ref.value, `reference line "${ref.label}"`, 0);
    if (ref.group !== undefined && !options.groups.some((g) => g.label === ref.group)) {
      throw new RangeError(`Cannot draw reference line "${ref.label}": no group "${ref.group}"`);
    }
    max = Math.max(max, ref.value);
  }
  const label = (bar: Bar) => bar.value === null ? NA : bar.label ?? format(bar.value);
  const bars = options.groups.flatMap((g) => g.bars);
  const x0 = labelColumn(width, bars.map((b) => b.series));
  const right = Math.max(...bars.map((b) => textWidth(label(b), 12))) + 14;
  const plotW = Math.max(width - PAD - right - x0, 80);
  const ticks = linearTicks(max);
  const top = ticks.at(-1)!;
  const xOf = (v: number) => x0 + v / top * plotW;

  const head = header(width, options.title, options.subtitle, series.map(legendSwatch));
  const global = references.filter((r) => r.group === undefined);
  const plotTop = head.y + (global.length > 0 ? 16 : 0);
  const body: string[] = [];
  // Reference lines go over the bars, value labels (with their halo) over the lines.
  const lines: string[] = [];
  const labels: string[] = [];
  const desc: string[] = [];
  let y = plotTop;
  for (const group of options.groups) {
    body.push(heading(y, group.label));
    y += HEADING_H;
    const first = y;
    for (const bar of group.bars) {
      body.push(rowLabel(x0, y + BAR_PITCH / 2, bar.series));
      if (bar.value === null) {
        body.push(naText(x0 + 4, y + 16));
      } else {
        const w = xOf(bar.value) - x0;
        body.push(
          `<rect class="bar" x="${px(x0)}" y="${px(y + 3)}" width="${
            px(w)
          }" height="${BAR_H}" fill="${seriesColour(bar.series)}"/>`,
        );
        labels.push(boxedText(x0 + w + 5, y + 16, label(bar), 12));
      }
      y += BAR_PITCH;
    }
    for (const ref of references.filter((r) => r.group === group.label)) {
      lines.push(referenceLine(xOf(ref.value), first, y));
      labels.push(boxedText(xOf(ref.value) + 4, first - 6, ref.label, 11));
    }
    desc.push(`${group.label}: ${group.bars.map((b) => `${b.series} ${label(b)}`).join(", ")}`);
    y += GROUP_GAP;
  }
  const bottom = y - GROUP_GAP + 4;
  for (const ref of global) {
    const x = xOf(ref.value);
    const w = textWidth(ref.label, 11);
    const anchor = x + w / 2 > width - PAD ? "end" : x - w / 2 < x0 ? "start" : "middle";
    lines.push(referenceLine(x, plotTop - 2, bottom));
    labels.push(boxedText(x, plotTop - 6, ref.label, 11, anchor));
  }
  const ax = axis(
    ticks.map((t) => ({ x: xOf(t), label: tickFormat(t) })),
    plotTop,
    bottom,
    options.axisLabel,
  );
  const foot = footer(width, ax.y, options.note);
  for (const ref of references) desc.push(`${ref.label} at ${format(ref.value)}`);
  return svgDocument(width, foot.y + PAD, options.title, description(options.subtitle, desc), [
    ...head.svg,
    ...ax.grid,
    ...body,
    ...lines,
    ...labels,
    ...ax.svg,
    ...foot.svg,
  ]);
}

/**
 * A latency chart: a row per series, its percentiles as markers (one shape
 * per percentile, in the series' colour) joined by a line, each labelled
 * with its value, on a log scale; a legend of the shapes.
 *
 * @example p50, p99 and p99.9 per runtime
 * ```ts
 * import { latencyChart } from "./_svg.ts";
 * const svg = latencyChart({
 *   title: "Agent alone: latency",
 *   percentiles: ["p50", "p99", "p99.9"],
 *   groups: [{
 *     label: "16 conn × 16 deep",
 *     rows: [
 *       { series: "spoa (Deno)", values: [357, 990, 4592] },
 *       { series: "spoa (Bun)", values: [279, 1228, null] },
 *     ],
 *   }],
 * });
 * svg.includes("4.59 ms"); // true
 * ```
 *
 * @param options The groups of rows, the percentiles' names, titles.
 * @returns The SVG document.
 * @throws {RangeError} Without groups or percentiles, with an empty group, a
 * row whose value count differs from the percentiles', or a value that is
 * not a finite number > 0.
 */
export function latencyChart(options: LatencyChartOptions): string {
  const width = checkCommon(options.title, options.width, options.groups.length);
  const names = options.percentiles;
  if (names.length === 0 || names.length > SHAPES.length) {
    throw new RangeError(
      `Cannot draw latency chart "${options.title}": it has ${names.length} percentiles, not 1 to ${SHAPES.length}`,
    );
  }
  const format = options.format ?? formatMicros;
  const present: number[] = [];
  for (const group of options.groups) {
    if (group.rows.length === 0) {
      throw new RangeError(`Cannot draw group "${group.label}": it has no rows`);
    }
    for (const row of group.rows) {
      const what = `row "${row.series}" in "${group.label}"`;
      if (row.values.length !== names.length) {
        throw new RangeError(
          `Cannot draw ${what}: it has ${row.values.length} values for ${names.length} percentiles`,
        );
      }
      row.values.forEach((v, i) => checkValue(v, `${names[i]} of ${what}`, 1));
      present.push(...row.values.filter((v): v is number => v !== null));
    }
  }
  const rows = options.groups.flatMap((g) => g.rows);
  const x0 = labelColumn(width, rows.map((r) => r.name ?? r.series));
  const plotW = Math.max(width - PAD - 40 - x0, 80);
  const ticks = present.length > 0
    ? logTicks(Math.min(...present), Math.max(...present))
    : [100, 1000];
  const lo = Math.log10(ticks[0]!);
  const span = Math.log10(ticks.at(-1)!) - lo;
  const xOf = (v: number) => x0 + (Math.log10(v) - lo) / span * plotW;

  const legend = names.map((label, i) => ({ label, colour: "#ffffff", shape: SHAPES[i]! }));
  const head = header(width, options.title, options.subtitle, legend);
  const body: string[] = [];
  const desc: string[] = [];
  let y = head.y;
  for (const group of options.groups) {
    body.push(heading(y, group.label));
    y += HEADING_H;
    for (const row of group.rows) {
      body.push(...latencyRow(row, names, { x0, y, xOf, format, right: x0 + plotW + 40 }));
      const values = row.values.map((v, i) => `${names[i]} ${v === null ? NA : format(v)}`);
      desc.push(`${group.label}, ${row.name ?? row.series}: ${values.join(", ")}`);
      y += LATENCY_PITCH;
    }
    y += GROUP_GAP;
  }
  const ax = axis(
    ticks.map((t) => ({ x: xOf(t), label: format(t) })),
    head.y,
    y - GROUP_GAP + 4,
    options.axisLabel ?? "log scale",
  );
  const foot = footer(width, ax.y, options.note);
  return svgDocument(width, foot.y + PAD, options.title, description(options.subtitle, desc), [
    ...head.svg,
    ...ax.grid,
    ...body,
    ...ax.svg,
    ...foot.svg,
  ]);
}

/** Where a latency row is drawn. */
interface RowPlace {
  x0: number;
  y: number;
  xOf: (v: number) => number;
  format: (v: number) => string;
  right: number;
}

/** A row's name, its line, markers and labels (above, or below where they would overlap). */
function latencyRow(row: LatencyRow, names: readonly string[], at: RowPlace): string[] {
  const cy = at.y + LATENCY_PITCH / 2;
  const colour = seriesColour(row.series);
  const out = [rowLabel(at.x0, cy, row.name ?? row.series)];
  const xs = row.values.map((v) => v === null ? undefined : at.xOf(v));
  const drawn = xs.filter((x): x is number => x !== undefined);
  if (drawn.length === 0) return [...out, naText(at.x0 + 4, cy + 4)];
  out.push(
    `<line x1="${px(Math.min(...drawn))}" y1="${px(cy)}" x2="${px(Math.max(...drawn))}" y2="${
      px(cy)
    }" stroke="${colour}" stroke-width="3"/>`,
  );
  const labels: string[] = [];
  const ends = { above: -Infinity, below: -Infinity };
  row.values.forEach((v, i) => {
    const x = xs[i];
    if (v === null || x === undefined) return;
    out.push(marker(SHAPES[i]!, x, cy, 5.5, colour, "marker"));
    const label = at.format(v);
    const half = textWidth(label, 11) / 2;
    const cx = Math.min(Math.max(x, at.x0 + half), at.right - half);
    const side = cx - half >= ends.above + 4 || cx - half < ends.below + 4 ? "above" : "below";
    ends[side] = cx + half;
    labels.push(
      haloText(cx, side === "above" ? cy - 10 : cy + 19, label, 11, { "text-anchor": "middle" }),
    );
  });
  const missing = names.filter((_, i) => row.values[i] === null);
  if (missing.length > 0) {
    // Beside the markers drawn: after the last if it fits, else before the first.
    const note = `${missing.join(", ")} ${NA}`;
    const w = textWidth(note, 11);
    const after = Math.max(...drawn) + 10;
    const before = Math.min(...drawn) - 10;
    const [x, anchor] = after + w <= at.right
      ? [after, "start"]
      : before - w >= at.x0
      ? [before, "end"]
      : [at.right, "end"];
    labels.push(
      haloText(x, cy + 4, note, 11, { "text-anchor": anchor, fill: MUTED, "font-style": "italic" }),
    );
  }
  return [...out, ...labels];
}
