import { test } from "node:test";
import assert from "node:assert/strict";
import { MAX_SERIES_PER_FAMILY, MetricsRegistry } from "../lib/metrics/registry.ts";
import { type MetricsSource, renderPrometheus, retire } from "../lib/metrics/render.ts";

const source = (r: MetricsRegistry): MetricsSource => ({ layout: r.layout(), values: r.values });

test("renderPrometheus() writes counters, gauges and histograms in the text format 0.0.4", () => {
  const r = new MetricsRegistry({ capacity: 64 });
  const hits = r.counter({ name: "x_hits_total", help: "Hits.", labelNames: ["result"] });
  hits.with({ result: "hit" }).inc();
  hits.with({ result: "hit" }).inc(2);
  hits.with({ result: 'a "quoted"\\ \nvalue' }).inc();
  r.gauge({ name: "x_level", help: "A level\nover two lines." }).set(-1.5);
  const h = r.histogram({ name: "x_seconds", help: "Durations.", buckets: [0.1, 1] });
  for (const v of [0.05, 0.1, 0.5, 3]) h.observe(v);
  assert.equal(
    renderPrometheus([source(r)]),
    [
      "# HELP x_hits_total Hits.",
      "# TYPE x_hits_total counter",
      'x_hits_total{result="hit"} 3',
      'x_hits_total{result="a \\"quoted\\"\\\\ \\nvalue"} 1',
      "# HELP x_level A level\\nover two lines.",
      "# TYPE x_level gauge",
      "x_level -1.5",
      "# HELP x_seconds Durations.",
      "# TYPE x_seconds histogram",
      'x_seconds_bucket{le="0.1"} 2',
      'x_seconds_bucket{le="1"} 3',
      'x_seconds_bucket{le="+Inf"} 4',
      "x_seconds_sum 3.65",
      "x_seconds_count 4",
      "",
    ].join("\n"),
  );
});

test("renderPrometheus() sums the series of several registries (one per worker)", () => {
  const workers = [1, 2].map(() => new MetricsRegistry({ capacity: 64 }));
  workers[0]!.counter({ name: "m_total", help: "M.", labelNames: ["k"] }).with({ k: "a" }).inc(2);
  const second = workers[1]!.counter({ name: "m_total", help: "M.", labelNames: ["k"] });
  second.with({ k: "b" }).inc(5);
  second.with({ k: "a" }).inc(3);
  assert.equal(
    renderPrometheus(workers.map(source)),
    '# HELP m_total M.\n# TYPE m_total counter\nm_total{k="a"} 5\nm_total{k="b"} 5\n',
  );
});

test("retire() keeps an ended worker's counters and histograms, drops its gauges, and folds", () => {
  const make = (n: number) => {
    const r = new MetricsRegistry({ capacity: 64 });
    r.counter({ name: "c_total", help: "C." }).inc(n);
    r.gauge({ name: "open", help: "Open." }).set(n);
    r.histogram({ name: "h", help: "H.", buckets: [1] }).observe(n);
    return source(r);
  };
  const folded = retire(retire(undefined, make(2)), make(3));
  assert.equal(folded.values.length, 1 + 3); // One counter slot, one histogram of 3 slots.
  assert.equal(
    renderPrometheus([folded]),
    [
      "# HELP c_total C.",
      "# TYPE c_total counter",
      "c_total 5",
      "# HELP h H.",
      "# TYPE h histogram",
      'h_bucket{le="1"} 0',
      'h_bucket{le="+Inf"} 2',
      "h_sum 5",
      "h_count 2",
      "",
    ].join("\n"),
  );
});

test("MetricsRegistry refuses bad definitions with errors that name the metric", () => {
  const r = new MetricsRegistry({ capacity: 64 });
  assert.throws(
    () => r.counter({ name: "hits", help: "" }),
    new RangeError(`Cannot define counter "hits": a counter's name ends in _total`),
  );
  assert.throws(
    () => r.gauge({ name: "1abc", help: "" }),
    new RangeError(`Cannot define gauge "1abc": not a valid metric name`),
  );
  assert.throws(
    () => r.gauge({ name: "g", help: "", labelNames: ["__x"] }),
    new RangeError(`Cannot define gauge "g": "__x" is not a label name`),
  );
  assert.throws(
    () => r.histogram({ name: "h", help: "", buckets: [1, 1] }),
    new RangeError(`Cannot define histogram "h": buckets must be finite and increasing (at 1: 1)`),
  );
  assert.throws(
    () => r.histogram({ name: "h", help: "", labelNames: ["le"], buckets: [1] }),
    new RangeError(`Cannot define histogram "h": "le" is its buckets' label`),
  );
  r.gauge({ name: "g", help: "" });
  assert.throws(
    () =>
      r.counter({ name: "g_total", help: "" }) &&
      r.histogram({ name: "g", help: "", buckets: [1] }),
    new RangeError(`Cannot define histogram "g": it is already defined as another gauge`),
  );
  const labelled = r.counter({ name: "l_total", help: "", labelNames: ["a"] });
  assert.throws(
    () => labelled.inc(),
    new TypeError("Cannot inc l_total without labels: use .with({ a })"),
  );
  assert.throws(
    () => labelled.with({ b: "x" }),
    new TypeError('Cannot use l_total: label "a" needs a string value (labels: a)'),
  );
  assert.throws(
    () => labelled.with({ a: "x" }).inc(-1),
    new RangeError("Cannot add -1 to counter l_total: counters only go up"),
  );
});

test("MetricsRegistry gives the same series back, and bounds the series of a family", () => {
  const warnings: string[] = [];
  const r = new MetricsRegistry({ warn: (t) => warnings.push(t) });
  const c = r.counter({ name: "by_user_total", help: "", labelNames: ["user"] });
  assert.equal(c.with({ user: "a" }), c.with({ user: "a" }));
  assert.equal(
    r.counter({ name: "by_user_total", help: "", labelNames: ["user"] }).with({ user: "a" }),
    c.with({ user: "a" }),
  );
  for (let i = 0; i < MAX_SERIES_PER_FAMILY + 50; i++) c.with({ user: `u${i}` }).inc();
  assert.equal(r.layout().families[0]!.series.length, MAX_SERIES_PER_FAMILY);
  assert.deepEqual(warnings, [
    `metric by_user_total has ${MAX_SERIES_PER_FAMILY} series, the limit: new label values are not counted`,
  ]);
  assert.match(renderPrometheus([source(r)]), /by_user_total\{user="u998"\} 1\n$/);
});
