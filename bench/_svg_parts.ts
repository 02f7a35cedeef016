/**
 * The pieces that `bench/_svg.ts`'s charts share: XML escaping, rounded
 * coordinates, an estimate of text width (there is no font to measure in a
 * pure function), the series palette, number formats, axis ticks and the
 * header (title, subtitle, legend) and axis of a chart. Everything here is
 * pure: strings in, strings out, the same bytes for the same input.
 *
 * @module
 */

/** The charts' width in px unless told otherwise. */
export const WIDTH = 720;
/** Space around the chart's content, px. */
export const PAD = 16;
/** A system font stack (no web fonts: GitHub shows SVGs as images). */
export const FONT =
  "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif";
/** Text colours, dark enough on the white background in both GitHub themes. */
export const INK = "#1f2328";
export const MUTED = "#57606a";
export const GRID = "#d8dee4";
/** A white outline under text that may cross grid lines (headings, value labels). */
export const HALO = { stroke: "#ffffff", "stroke-width": 3, "paint-order": "stroke" } as const;

/**
 * Escapes text for XML content and attribute values: `&`, `<`, `>`, both
 * quotes; control characters (not allowed in XML 1.0) become U+FFFD.
 *
 * @example Escaping a label
 * ```ts
 * import { escapeXml } from "./_svg_parts.ts";
 * escapeXml(`a < b & "c"`); // "a &lt; b &amp; &quot;c&quot;"
 * ```
 */
export function escapeXml(text: string): string {
  return text
    .replace(/[^\t\n\r\x20-\uffff]/g, "\ufffd")
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

/** A coordinate with at most one decimal, never `-0`: committed charts diff cleanly. */
export function px(value: number): string {
  const r = Math.round(value * 10) / 10;
  return String(r === 0 ? 0 : r);
}

/**
 * The width of a line of text in px, estimated from its characters (narrow,
 * wide and the rest) for a sans-serif font; bold adds 6 %.
 */
export function textWidth(text: string, size: number, bold = false): number {
  let em = 0;
  for (const ch of text) {
    if (" .,:;'|!ijlI()[]".includes(ch)) em += 0.32;
    else if ("mwMW@%".includes(ch)) em += 0.9;
    else if (ch >= "A" && ch <= "Z") em += 0.7;
    else em += 0.6;
  }
  // On the wide side (DejaVu Sans, Linux's usual fallback): text wraps early rather than overflows.
  return em * size * (bold ? 1.08 : 1);
}

/** Splits text into lines of at most `width` px (estimated) at spaces. */
export function wrap(text: string, width: number, size: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter((w) => w !== "")) {
    const next = line === "" ? word : `${line} ${word}`;
    if (line !== "" && textWidth(next, size) > width) {
      lines.push(line);
      line = word;
    } else {
      line = next;
    }
  }
  if (line !== "") lines.push(line);
  return lines;
}

/** A `<text>` element; `attrs` are written as given (values escaped). */
export function text(
  x: number,
  y: number,
  content: string,
  attrs: Record<string, string | number> = {},
): string {
  const extra = Object.entries(attrs).map(([k, v]) =>
    ` ${k}="${typeof v === "number" ? px(v) : escapeXml(v)}"`
  ).join("");
  return `<text x="${px(x)}" y="${px(y)}"${extra}>${escapeXml(content)}</text>`;
}

/** The Okabe–Ito palette (colour-blind safe), by the series it stands for. */
const KNOWN: Readonly<Record<string, string>> = {
  "spoa (Deno)": "#0072B2",
  "spoa (Bun)": "#E69F00",
  "C agent": "#009E73",
  "echo server (Deno)": "#56B4E9",
  "echo server (Bun)": "#F0E442",
  "HAProxy alone": "#7f7f7f",
};
const SPARE = ["#D55E00", "#CC79A7", "#000000", "#56B4E9", "#009E73", "#E69F00"];

/**
 * The colour of a series, the same in every chart: a fixed Okabe–Ito colour
 * for the series the benchmarks draw (`spoa (Deno)`, `spoa (Bun)`,
 * `C agent`, `echo server (Deno)`, `echo server (Bun)`, `HAProxy alone`),
 * and for any other name one of the rest, chosen by a hash of the name.
 *
 * @example The colour of a series
 * ```ts
 * import { seriesColour } from "./_svg_parts.ts";
 * seriesColour("spoa (Deno)"); // "#0072B2"
 * ```
 */
export function seriesColour(name: string): string {
  const known = KNOWN[name];
  if (known !== undefined) return known;
  let hash = 0;
  for (let i = 0; i < name.length; i++) hash = (hash * 31 + name.charCodeAt(i)) >>> 0;
  return SPARE[hash % SPARE.length]!;
}

/** Three significant digits, trailing zeros dropped. */
function sig3(value: number): number {
  return Number(value.toPrecision(3));
}

/**
 * A count with an SI prefix and three significant digits: `819654` →
 * `"820 k"`, `1073103` → `"1.07 M"`, `0.78` → `"0.78"`, `0` → `"0"`.
 *
 * @example Formatting msgs/s
 * ```ts
 * import { formatCount } from "./_svg_parts.ts";
 * `${formatCount(1_073_103)} msgs/s`; // "1.07 M msgs/s"
 * ```
 */
export function formatCount(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  const r = sig3(value);
  const abs = Math.abs(r);
  if (abs >= 1e9) return `${sig3(r / 1e9)} G`;
  if (abs >= 1e6) return `${sig3(r / 1e6)} M`;
  if (abs >= 1e3) return `${sig3(r / 1e3)} k`;
  return String(r === 0 ? 0 : r);
}

/**
 * A duration given in µs: `253` → `"253 µs"`, `2104` → `"2.1 ms"`,
 * `1_250_000` → `"1.25 s"` (three significant digits).
 *
 * @example Formatting a latency
 * ```ts
 * import { formatMicros } from "./_svg_parts.ts";
 * formatMicros(5680); // "5.68 ms"
 * ```
 */
export function formatMicros(us: number): string {
  if (!Number.isFinite(us)) return String(us);
  const r = sig3(us);
  if (Math.abs(r) >= 1e6) return `${sig3(r / 1e6)} s`;
  if (Math.abs(r) >= 1e3) return `${sig3(r / 1e3)} ms`;
  return `${r === 0 ? 0 : r} µs`;
}

/**
 * Ticks from 0 to a round top at or above `max`, about five of them
 * (1, 2, 2.5 or 5 × 10ⁿ apart).
 *
 * @example Ticks for msgs/s
 * ```ts
 * import { linearTicks } from "./_svg_parts.ts";
 * linearTicks(914_281); // [0, 200000, 400000, 600000, 800000, 1000000]
 * ```
 */
export function linearTicks(max: number): number[] {
  if (!(max > 0)) return [0, 1];
  const raw = max / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * mag;
  const count = Math.ceil(max / step - 1e-9);
  const ticks: number[] = [];
  for (let i = 0; i <= count; i++) ticks.push(Number((i * step).toPrecision(12)));
  return ticks;
}

/**
 * Ticks of a log scale covering `[min, max]` (both above 0): 1, 2, 5 × 10ⁿ
 * over up to three decades, powers of ten beyond. The first and last ticks
 * are the scale's ends.
 *
 * @example Ticks for latencies from 161 µs to 8.3 ms
 * ```ts
 * import { logTicks } from "./_svg_parts.ts";
 * logTicks(161, 8288); // [100, 200, 500, 1000, 2000, 5000, 10000]
 * ```
 */
export function logTicks(min: number, max: number): number[] {
  const steps = Math.log10(max / min) > 3 ? [1] : [1, 2, 5];
  const all: number[] = [];
  for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) {
    for (const s of steps) all.push(Number((s * 10 ** e).toPrecision(12)));
  }
  const lo = all.filter((t) => t <= min).at(-1) ?? all[0]!;
  let hi = all.find((t) => t >= max) ?? all.at(-1)!;
  if (hi === lo) hi = all[all.indexOf(lo) + 1] ?? lo * 10;
  return all.filter((t) => t >= lo && t <= hi);
}
