import { test } from "node:test";
import assert from "node:assert/strict";
import {
  barChart,
  type BarChartOptions,
  escapeXml,
  formatCount,
  formatMicros,
  latencyChart,
  type LatencyChartOptions,
  seriesColour,
} from "../bench/_svg.ts";

/**
 * Checks that `svg` is well-formed XML as the charts write it (elements,
 * double-quoted attributes, text, no comments or CDATA): tags balance, one
 * root `<svg>`, every `&` starts an entity, no raw `<` in attribute values.
 * Returns the elements, in document order, with their attributes and text.
 */
function parseXml(svg: string): { name: string; attrs: Record<string, string>; text: string }[] {
  const elements: { name: string; attrs: Record<string, string>; text: string }[] = [];
  const open: { name: string; attrs: Record<string, string>; text: string }[] = [];
  const entities = /&(?!(?:amp|lt|gt|quot|#39|#\d+);)/;
  let i = 0;
  let roots = 0;
  while (i < svg.length) {
    const lt = svg.indexOf("<", i);
    const between = lt < 0 ? svg.slice(i) : svg.slice(i, lt);
    assert.doesNotMatch(between, entities, `bare & in text near ${i}`);
    assert.ok(!between.includes(">"), `bare > in text near ${i}`);
    if (open.length === 0) assert.equal(between.trim(), "", `text outside the root near ${i}`);
    else open.at(-1)!.text += between;
    if (lt < 0) break;
    const gt = svg.indexOf(">", lt);
    assert.ok(gt > lt, `unterminated tag at ${lt}`);
    const tag = svg.slice(lt + 1, gt);
    if (tag.startsWith("/")) {
      assert.equal(open.pop()?.name, tag.slice(1), `unbalanced </${tag.slice(1)}> at ${lt}`);
    } else {
      const m = /^([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)$/.exec(tag);
      assert.ok(m, `malformed tag <${tag}>`);
      const attrs: Record<string, string> = {};
      for (const [, k, v] of m[2]!.matchAll(/([\w:-]+)="([^"]*)"/g)) {
        assert.doesNotMatch(v!, entities, `bare & in ${k}="${v}"`);
        assert.ok(!(k! in attrs), `duplicate attribute ${k} in <${m[1]}>`);
        attrs[k!] = v!;
      }
      if (open.length === 0) roots++;
      const element = { name: m[1]!, attrs, text: "" };
      elements.push(element);
      if (m[3] !== "/") open.push(element);
    }
    i = gt + 1;
  }
  assert.deepEqual(open.map((e) => e.name), [], "unclosed elements");
  assert.equal(roots, 1, "one root element");
  assert.equal(elements[0]?.name, "svg");
  return elements;
}

function bars(svg: string) {
  return parseXml(svg).filter((e) => e.name === "rect" && e.attrs.class === "bar");
}

function num(value: string | undefined): number {
  assert.ok(value !== undefined && /^-?\d+(\.\d)?$/.test(value), `a rounded number: ${value}`);
  return Number(value);
}

const AGENT: BarChartOptions = {
  title: "Agent alone",
  subtitle: "16 × 16, one pinned thread",
  groups: [
    {
      label: "depth 16",
      bars: [
        { series: "spoa (Deno)", value: 675_169 },
        { series: "spoa (Bun)", value: 785_145 },
        { series: "echo server (Deno)", value: 851_558 },
      ],
    },
    { label: "depth 1", bars: [{ series: "spoa (Deno)", value: 58_949 }] },
  ],
  format: (v) => `${formatCount(v)} msgs/s`,
};

const LATENCY: LatencyChartOptions = {
  title: "Latency",
  percentiles: ["p50", "p99", "p99.9"],
  groups: [{
    label: "depth 16",
    rows: [
      { series: "spoa (Deno)", values: [100, 1000, 10000] },
      { series: "spoa (Bun)", values: [279, 1228, 3608] },
    ],
  }],
};

test("barChart() writes well-formed XML with a title, role and aria-label", () => {
  const svg = barChart(AGENT);
  const elements = parseXml(svg);
  const root = elements[0]!;
  assert.equal(root.attrs.role, "img");
  assert.equal(root.attrs["aria-label"], "Agent alone");
  assert.equal(root.attrs.width, "720");
  assert.equal(elements.find((e) => e.name === "title")?.text, "Agent alone");
  assert.match(elements.find((e) => e.name === "desc")!.text, /spoa \(Bun\) 785 k msgs\/s/);
  assert.equal(elements[3]?.name, "rect", "a white background first");
  assert.equal(elements[3]?.attrs.fill, "#ffffff");
  assert.ok(svg.endsWith("</svg>\n"));
});

test("latencyChart() writes well-formed XML with a title, role and aria-label", () => {
  const elements = parseXml(latencyChart(LATENCY));
  assert.equal(elements[0]!.attrs.role, "img");
  assert.equal(elements[0]!.attrs["aria-label"], "Latency");
  const labels = elements.filter((e) => e.name === "text").map((e) => e.text);
  for (const label of ["100 µs", "1 ms", "10 ms", "279 µs", "1.23 ms", "3.61 ms", "p99.9"]) {
    assert.ok(labels.includes(label), label);
  }
});

test("barChart() escapes &, <, >, and quotes in every text", () => {
  const nasty = `A&B <script> "q" 'a'`;
  const svg = barChart({
    title: nasty,
    subtitle: nasty,
    note: nasty,
    axisLabel: nasty,
    groups: [{ label: nasty, bars: [{ series: nasty, value: 1, label: nasty }] }],
    references: [{ value: 1, label: nasty }],
  });
  const elements = parseXml(svg);
  assert.ok(!svg.includes("<script>"));
  assert.equal(
    elements[0]!.attrs["aria-label"],
    "A&amp;B &lt;script&gt; &quot;q&quot; &#39;a&#39;",
  );
  const texts = elements.filter((e) => e.name === "text" && e.text.startsWith("A&amp;B"));
  assert.ok(texts.length >= 6, `${texts.length} escaped texts`);
});

test("escapeXml() escapes markup and replaces control characters", () => {
  assert.equal(escapeXml(`<a href="x">&'</a>`), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
  assert.equal(escapeXml("a\u0000b\u001bc\td\ne"), "a\ufffdb\ufffdc\td\ne");
});

test("barChart() gives the same bytes for the same input, with rounded coordinates", () => {
  const a = barChart(AGENT);
  assert.equal(a, barChart(AGENT));
  assert.equal(a, barChart({ ...JSON.parse(JSON.stringify(AGENT)), format: AGENT.format }));
  for (const e of parseXml(a)) {
    for (const k of ["x", "y", "width", "height", "x1", "x2", "y1", "y2"]) {
      if (e.attrs[k] !== undefined && e.attrs[k] !== "100%") num(e.attrs[k]);
    }
  }
  assert.equal(latencyChart(LATENCY), latencyChart(LATENCY));
});

test("barChart() draws bars as long as their values, from one origin", () => {
  const found = bars(barChart(AGENT));
  assert.equal(found.length, 4);
  const values = [675_169, 785_145, 851_558, 58_949];
  const x0 = found[0]!.attrs.x;
  const perUnit = num(found[2]!.attrs.width) / 851_558;
  found.forEach((bar, i) => {
    assert.equal(bar.attrs.x, x0);
    assert.ok(Math.abs(num(bar.attrs.width) - values[i]! * perUnit) <= 0.1, `bar ${i}`);
  });
  assert.deepEqual(found.map((b) => b.attrs.fill), [
    seriesColour("spoa (Deno)"),
    seriesColour("spoa (Bun)"),
    seriesColour("echo server (Deno)"),
    seriesColour("spoa (Deno)"),
  ]);
});

test("barChart() puts round ticks on its axis and grows with its bars", () => {
  const labels = parseXml(barChart(AGENT)).filter((e) => e.name === "text").map((e) => e.text);
  for (const tick of ["0", "200 k", "400 k", "600 k", "800 k", "1 M"]) {
    assert.ok(labels.includes(tick), tick);
  }
  const one = { ...AGENT, groups: [AGENT.groups[0]!] };
  const height = (o: BarChartOptions) => num(parseXml(barChart(o))[0]!.attrs.height);
  assert.ok(height(AGENT) > height(one));
});

test("barChart() draws a reference line at its value, across all groups or one", () => {
  const svg = barChart({
    title: "Ratio",
    groups: [
      { label: "HAProxy 2.6", bars: [{ series: "spoa (Deno)", value: 0.5 }] },
      { label: "HAProxy 3.4", bars: [{ series: "spoa (Deno)", value: 0.75 }] },
    ],
    references: [
      { value: 1, label: "HAProxy alone" },
      { value: 0.8, label: "target 0.80", group: "HAProxy 2.6" },
    ],
  });
  const elements = parseXml(svg);
  const [b26, b34] = bars(svg);
  const lines = elements.filter((e) => e.name === "line" && e.attrs.class === "reference");
  assert.equal(lines.length, 2);
  const [target, alone] = lines;
  const x0 = num(b26!.attrs.x);
  const perUnit = num(b26!.attrs.width) / 0.5;
  // Each coordinate is rounded to 0.1 px.
  assert.ok(Math.abs(num(alone!.attrs.x1) - (x0 + perUnit)) <= 0.25);
  assert.ok(Math.abs(num(target!.attrs.x1) - (x0 + 0.8 * perUnit)) <= 0.25);
  assert.ok(Math.abs(num(b34!.attrs.width) - 0.75 * perUnit) <= 0.25);
  // The target spans the 2.6 bar only; HAProxy alone spans both.
  assert.ok(num(target!.attrs.y2) < num(b34!.attrs.y));
  assert.ok(num(alone!.attrs.y2) > num(b34!.attrs.y));
  const texts = elements.filter((e) => e.name === "text").map((e) => e.text);
  assert.ok(texts.includes("HAProxy alone") && texts.includes("target 0.80"));
});

test("barChart() draws a null value as n/a, without a bar", () => {
  const svg = barChart({
    title: "t",
    groups: [{
      label: "g",
      bars: [{ series: "spoa (Deno)", value: null }, { series: "spoa (Bun)", value: 2 }],
    }],
  });
  assert.equal(bars(svg).length, 1);
  const texts = parseXml(svg).filter((e) => e.name === "text").map((e) => e.text);
  assert.ok(texts.includes("n/a"));
  assert.match(parseXml(svg).find((e) => e.name === "desc")!.text, /spoa \(Deno\) n\/a/);
});

test("barChart() rejects values that are not finite numbers of at least 0", () => {
  for (const value of [NaN, -1, Infinity]) {
    assert.throws(
      () => barChart({ title: "t", groups: [{ label: "g", bars: [{ series: "s", value }] }] }),
      new RangeError(
        `Cannot draw bar "s" in "g": its value ${value} is not a finite number of at least 0`,
      ),
    );
  }
  assert.throws(
    () =>
      barChart({
        title: "t",
        groups: [{ label: "g", bars: [{ series: "s", value: "1" as unknown as number }] }],
      }),
    new TypeError(`Cannot draw bar "s" in "g": its value is not a number or null`),
  );
  assert.throws(
    () =>
      barChart({
        title: "t",
        groups: [{ label: "g", bars: [{ series: "s", value: 1 }] }],
        references: [{ value: NaN, label: "r" }],
      }),
    new RangeError(
      `Cannot draw reference line "r": its value NaN is not a finite number of at least 0`,
    ),
  );
});

test("barChart() rejects empty charts and groups, unknown groups and a missing title", () => {
  assert.throws(
    () => barChart({ title: "t", groups: [] }),
    new RangeError(`Cannot draw chart "t": it has no groups`),
  );
  assert.throws(
    () => barChart({ title: "t", groups: [{ label: "g", bars: [] }] }),
    new RangeError(`Cannot draw group "g": it has no bars`),
  );
  assert.throws(
    () =>
      barChart({
        title: "t",
        groups: [{ label: "g", bars: [{ series: "s", value: 1 }] }],
        references: [{ value: 1, label: "r", group: "h" }],
      }),
    new RangeError(`Cannot draw reference line "r": no group "h"`),
  );
  assert.throws(
    () => barChart({ ...AGENT, title: " " }),
    new TypeError("Cannot draw a chart without a title"),
  );
  assert.throws(
    () => barChart({ ...AGENT, width: 100 }),
    new RangeError(
      `Cannot draw chart "Agent alone" 100 px wide: the width must be an integer of at least 320`,
    ),
  );
});

test("latencyChart() places values on a log scale", () => {
  const elements = parseXml(latencyChart(LATENCY));
  const marks = elements.filter((e) => e.name === "circle" && e.attrs.class === "marker");
  assert.equal(marks.length, 2, "one p50 circle per row");
  const shapes = (name: string) =>
    elements.filter((e) => e.name === name && e.attrs.class === "marker");
  const rects = shapes("rect");
  const path = shapes("path");
  // p50 100 µs (circle), p99 1 ms (square), p99.9 10 ms (diamond): a decade apart each.
  const x50 = num(marks[0]!.attrs.cx);
  const x99 = num(rects[0]!.attrs.x) + num(rects[0]!.attrs.width) / 2;
  const x999 = Number(/^M(\S+) /.exec(path[0]!.attrs.d!)![1]);
  assert.ok(x99 - x50 > 100);
  assert.ok(Math.abs(x99 - x50 - (x999 - x99)) <= 0.2, `${x50} ${x99} ${x999}`);
});

test("latencyChart() draws null values as n/a", () => {
  const svg = latencyChart({
    ...LATENCY,
    groups: [{
      label: "g",
      rows: [
        { series: "spoa (Deno)", values: [200, null, 4000] },
        { series: "spoa (Bun)", values: [null, null, null] },
      ],
    }],
  });
  const texts = parseXml(svg).filter((e) => e.name === "text").map((e) => e.text);
  assert.ok(texts.includes("p99 n/a"));
  assert.ok(texts.includes("n/a"));
  assert.equal(parseXml(svg).filter((e) => e.attrs.class === "marker").length, 2);
});

test("latencyChart() rejects values not above 0 and rows of the wrong length", () => {
  const chart = (values: (number | null)[], percentiles = ["p50", "p99"]) => () =>
    latencyChart({
      title: "t",
      percentiles,
      groups: [{ label: "g", rows: [{ series: "s", values }] }],
    });
  assert.throws(
    chart([0, 1]),
    new RangeError(`Cannot draw p50 of row "s" in "g": its value 0 is not a finite number above 0`),
  );
  assert.throws(
    chart([1, NaN]),
    new RangeError(
      `Cannot draw p99 of row "s" in "g": its value NaN is not a finite number above 0`,
    ),
  );
  assert.throws(
    chart([1]),
    new RangeError(`Cannot draw row "s" in "g": it has 1 values for 2 percentiles`),
  );
  assert.throws(
    chart([], []),
    new RangeError(`Cannot draw latency chart "t": it has 0 percentiles, not 1 to 4`),
  );
  assert.throws(
    () => latencyChart({ ...LATENCY, groups: [{ label: "g", rows: [] }] }),
    new RangeError(`Cannot draw group "g": it has no rows`),
  );
});

test("seriesColour() gives each series one colour, in every chart", () => {
  assert.equal(seriesColour("spoa (Deno)"), "#0072B2");
  assert.equal(seriesColour("spoa (Bun)"), "#E69F00");
  assert.equal(seriesColour("C agent"), "#009E73");
  assert.equal(seriesColour("someone else"), seriesColour("someone else"));
  const inBars = bars(barChart(AGENT))[0]!.attrs.fill;
  const inLatency = parseXml(latencyChart(LATENCY)).find((e) => e.attrs.class === "marker")!
    .attrs.fill;
  assert.equal(inBars, inLatency);
});

test("formatCount() and formatMicros() keep three significant digits", () => {
  assert.deepEqual(
    [0, 0.78, 999, 53_871, 819_654, 999_700, 1_073_103, 2.5e9].map(formatCount),
    ["0", "0.78", "999", "53.9 k", "820 k", "1 M", "1.07 M", "2.5 G"],
  );
  assert.deepEqual(
    [99.5, 253, 999.9, 2104, 5680, 1_250_000].map(formatMicros),
    ["99.5 µs", "253 µs", "1 ms", "2.1 ms", "5.68 ms", "1.25 s"],
  );
});
