/**
 * The layout that `bench/_svg.ts`'s charts share: the header (title,
 * subtitle, legend), group headings and row names, the axis with its grid,
 * reference lines, the note at the bottom, the document around it all, and
 * the checks of the input.
 *
 * @module
 */

import {
  escapeXml,
  FONT,
  GRID,
  HALO,
  INK,
  MUTED,
  PAD,
  px,
  seriesColour,
  text,
  textWidth,
  WIDTH,
  wrap,
} from "./_svg_parts.ts";

/** What a missing value is drawn as. */
export const NA = "n/a";

/** A legend entry: a swatch in a colour, or one of the latency chart's marker shapes. */
export interface LegendItem {
  label: string;
  colour: string;
  /** A marker shape instead of a square swatch. */
  shape?: Shape;
}

/** The latency chart's marker shapes, one per percentile. */
export type Shape = "circle" | "square" | "diamond" | "triangle";
export const SHAPES: readonly Shape[] = ["circle", "square", "diamond", "triangle"];

/** A marker centred on (x, y), about `2r` across, with a thin dark outline (yellow shows on white). */
export function marker(
  shape: Shape,
  x: number,
  y: number,
  r: number,
  fill: string,
  cls?: string,
): string {
  const style = `${
    cls === undefined ? "" : `class="${escapeXml(cls)}" `
  }fill="${fill}" stroke="${INK}" stroke-width="0.75"`;
  switch (shape) {
    case "circle":
      return `<circle cx="${px(x)}" cy="${px(y)}" r="${px(r)}" ${style}/>`;
    case "square": {
      const s = r * 0.9;
      return `<rect x="${px(x - s)}" y="${px(y - s)}" width="${px(2 * s)}" height="${
        px(2 * s)
      }" ${style}/>`;
    }
    case "diamond": {
      const d = r * 1.25;
      return `<path d="M${px(x)} ${px(y - d)}L${px(x + d)} ${px(y)}L${px(x)} ${px(y + d)}L${
        px(x - d)
      } ${px(y)}Z" ${style}/>`;
    }
    case "triangle": {
      const t = r * 1.2;
      return `<path d="M${px(x)} ${px(y - t)}L${px(x + t)} ${px(y + t * 0.8)}L${px(x - t)} ${
        px(y + t * 0.8)
      }Z" ${style}/>`;
    }
  }
}

/**
 * The title, the subtitle (wrapped) and the legend (flowing over lines),
 * from the top of the chart.
 *
 * @returns The elements and the y below them.
 */
export function header(
  width: number,
  title: string,
  subtitle: string | undefined,
  legend: readonly LegendItem[],
): { svg: string[]; y: number } {
  const svg = [text(PAD, PAD + 17, title, { "font-size": 18, "font-weight": "bold", fill: INK })];
  let y = PAD + 24;
  for (const line of wrap(subtitle ?? "", width - 2 * PAD, 13)) {
    y += 17;
    svg.push(text(PAD, y, line, { "font-size": 13, fill: MUTED }));
  }
  y += 10;
  let x = PAD;
  let rowY = y;
  for (const item of legend) {
    const w = 18 + textWidth(item.label, 12);
    if (x > PAD && x + w > width - PAD) {
      x = PAD;
      rowY += 20;
    }
    svg.push(
      item.shape === undefined
        ? `<rect x="${px(x)}" y="${px(rowY + 2)}" width="12" height="12" fill="${item.colour}"/>`
        : marker(item.shape, x + 6, rowY + 8, 5, item.colour),
      text(x + 18, rowY + 12.5, item.label, { "font-size": 12, fill: INK }),
    );
    x += w + 18;
  }
  return { svg, y: legend.length > 0 ? rowY + 26 : y };
}

/**
 * Vertical grid lines at the ticks from `top` to `bottom`, the axis line
 * and the tick labels under it, and the axis caption if any.
 *
 * @returns The grid (to draw first), the axis and labels, and the y below them.
 */
export function axis(
  ticks: readonly { x: number; label: string }[],
  top: number,
  bottom: number,
  caption: string | undefined,
): { grid: string[]; svg: string[]; y: number } {
  const grid = ticks.map((t) =>
    `<line x1="${px(t.x)}" y1="${px(top)}" x2="${px(t.x)}" y2="${px(bottom)}" stroke="${GRID}"/>`
  );
  const first = ticks[0]!.x;
  const last = ticks.at(-1)!.x;
  const svg = [
    `<line x1="${px(first)}" y1="${px(bottom)}" x2="${px(last)}" y2="${
      px(bottom)
    }" stroke="${MUTED}"/>`,
    ...ticks.map((t) =>
      text(t.x, bottom + 15, t.label, { "font-size": 11, fill: MUTED, "text-anchor": "middle" })
    ),
  ];
  let y = bottom + 20;
  if (caption !== undefined && caption !== "") {
    y += 15;
    svg.push(
      text((first + last) / 2, y, caption, {
        "font-size": 12,
        fill: MUTED,
        "text-anchor": "middle",
      }),
    );
  }
  return { grid, svg, y };
}

/** The whole document: white background, accessible name and description, the body. */
export function svgDocument(
  width: number,
  height: number,
  title: string,
  description: string,
  body: readonly string[],
): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${
      px(height)
    }" viewBox="0 0 ${width} ${px(height)}" role="img" aria-label="${
      escapeXml(title)
    }" font-family="${escapeXml(FONT)}">`,
    `<title>${escapeXml(title)}</title>`,
    `<desc>${escapeXml(description)}</desc>`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    ...body,
    `</svg>`,
    "",
  ].join("\n");
}

/** Checks the title and width and that there are groups; returns the width. */
export function checkCommon(title: string, width: number | undefined, groups: number): number {
  if (typeof title !== "string" || title.trim() === "") {
    throw new TypeError("Cannot draw a chart without a title");
  }
  const w = width ?? WIDTH;
  if (!Number.isInteger(w) || w < 320) {
    throw new RangeError(
      `Cannot draw chart "${title}" ${w} px wide: the width must be an integer of at least 320`,
    );
  }
  if (groups === 0) throw new RangeError(`Cannot draw chart "${title}": it has no groups`);
  return w;
}

/** Throws unless `value` is null or a finite number: at least 0, or above 0 when `min` is 1. */
export function checkValue(value: unknown, what: string, min: 0 | 1): void {
  if (value === null) return;
  if (typeof value !== "number") {
    throw new TypeError(`Cannot draw ${what}: its value is not a number or null`);
  }
  if (!Number.isFinite(value) || value < 0 || (min === 1 && value === 0)) {
    throw new RangeError(
      `Cannot draw ${what}: its value ${value} is not a finite number ${
        min === 0 ? "of at least" : "above"
      } 0`,
    );
  }
}

/** The x where bars start: after the longest row name (at most 35 % of the width). */
export function labelColumn(width: number, names: readonly string[]): number {
  const widest = Math.max(...names.map((n) => textWidth(n, 12)));
  return PAD + Math.min(widest, width * 0.35) + 10;
}

/** Text in INK (unless `attrs` say otherwise) with a white halo: it stays readable over lines. */
export function haloText(
  x: number,
  y: number,
  content: string,
  size: number,
  attrs: Record<string, string | number> = {},
): string {
  return text(x, y, content, { "font-size": size, fill: INK, ...HALO, ...attrs });
}

/**
 * Text in INK on a white box as wide as the text is estimated to be: lines
 * drawn before it (grid, reference lines) stop at the box.
 */
export function boxedText(
  x: number,
  y: number,
  content: string,
  size: number,
  anchor: "start" | "middle" | "end" = "start",
): string {
  const w = textWidth(content, size) + 4;
  const left = anchor === "start" ? x - 2 : anchor === "middle" ? x - w / 2 : x - w + 2;
  return `<rect x="${px(left)}" y="${px(y - size)}" width="${px(w)}" height="${
    px(size * 1.3)
  }" fill="#ffffff"/>\n` +
    text(x, y, content, { "font-size": size, fill: INK, "text-anchor": anchor });
}

/** A group's heading, bold, from the left edge, in the row that starts at `y`. */
export function heading(y: number, label: string): string {
  return text(PAD, y + 15, label, { "font-size": 13, "font-weight": "bold", fill: INK, ...HALO });
}

/** A row's name, right-aligned before the plot, on the row's centre line `cy`. */
export function rowLabel(x0: number, cy: number, name: string): string {
  return text(x0 - 8, cy + 4, name, { "font-size": 12, fill: INK, "text-anchor": "end" });
}

/** "n/a" where a value is missing. */
export function naText(x: number, y: number): string {
  return text(x, y, NA, { "font-size": 12, fill: MUTED, "font-style": "italic" });
}

/** A legend entry for a series, in its colour. */
export function legendSwatch(name: string): { label: string; colour: string } {
  return { label: name, colour: seriesColour(name) };
}

/** A dashed reference line from `y1` down to `y2`, over the bars. */
export function referenceLine(x: number, y1: number, y2: number): string {
  return `<line class="reference" x1="${px(x)}" y1="${px(y1)}" x2="${px(x)}" y2="${
    px(y2)
  }" stroke="${INK}" stroke-width="1.5" stroke-dasharray="5 3"/>`;
}

/** The note under the axis, wrapped; returns the elements and the y below. */
export function footer(
  width: number,
  y: number,
  note: string | undefined,
): { svg: string[]; y: number } {
  const svg: string[] = [];
  if (note !== undefined && note !== "") y += 6;
  for (const line of wrap(note ?? "", width - 2 * PAD, 11)) {
    y += 15;
    svg.push(text(PAD, y, line, { "font-size": 11, fill: MUTED }));
  }
  return { svg, y: svg.length > 0 ? y + 2 : y };
}

/** The `<desc>`: the subtitle, then what each group shows, as sentences. */
export function description(subtitle: string | undefined, parts: readonly string[]): string {
  return [subtitle, ...parts].filter((s) => s !== undefined && s !== "").join(". ");
}
