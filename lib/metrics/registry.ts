/**
 * Metrics kept in plain shared memory: each thread owns a
 * {@linkcode MetricsRegistry} whose values live in a `Float64Array` over a
 * `SharedArrayBuffer`. The thread is the only writer of its values (a plain
 * store, no lock, no message); the main thread reads every registry's values
 * when it is scraped and sums them ({@linkcode renderPrometheus}). A value is
 * one aligned 64-bit slot, so a reader sees either the old or the new number.
 *
 * Families and their series are described by a {@linkcode MetricsLayout},
 * which changes only when a family or a series is added: a worker sends it
 * to the main thread then, never per frame.
 *
 * @module
 */

/** The kinds of metric (Prometheus' `# TYPE`). */
export type MetricType = "counter" | "gauge" | "histogram";

/** Label values by label name. */
export type Labels = Readonly<Record<string, string>>;

/** How to define a metric family. */
export interface MetricOptions {
  /** The name, e.g. `myagent_cache_hits_total` (`[a-zA-Z_:][a-zA-Z0-9_:]*`). */
  name: string;
  /** One line saying what it counts, and in which unit. */
  help: string;
  /** The names of its labels, if any (`[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`). */
  labelNames?: readonly string[];
}

/** How to define a histogram. */
export interface HistogramOptions extends MetricOptions {
  /** The buckets' upper bounds, increasing; `+Inf` is added. */
  buckets: readonly number[];
}

/** One series of a family in a layout. */
export interface SeriesLayout {
  /** Its label values, in the order of the family's label names. */
  labels: string[];
  /** Its first slot in the values. */
  offset: number;
}

/** One family in a layout. */
export interface FamilyLayout {
  name: string;
  help: string;
  type: MetricType;
  labelNames: string[];
  /** A histogram's upper bounds, without `+Inf`. */
  buckets?: number[];
  series: SeriesLayout[];
}

/** What a registry holds, as plain data that can be posted to another thread. */
export interface MetricsLayout {
  families: FamilyLayout[];
}

/** Series one family may have: a label fed from a request cannot grow memory without bound. */
export const MAX_SERIES_PER_FAMILY = 1000;
/** Slots of one registry (8 bytes each). */
export const DEFAULT_CAPACITY = 1 << 16;

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A counter series: only goes up. */
export interface Counter {
  /**
   * Adds to the counter.
   *
   * @param value How much (1 by default; never negative).
   */
  inc(value?: number): void;
  /**
   * The series with these label values (made on first use, then the same
   * object: keep it to count without allocating).
   *
   * @param labels A value for each of the family's label names.
   * @returns The series.
   */
  with(labels: Labels): Counter;
}

/** A gauge series: a value that goes up and down. */
export interface Gauge {
  /** Sets the value. */
  set(value: number): void;
  /** Adds to the value (1 by default). */
  inc(value?: number): void;
  /** Subtracts from the value (1 by default). */
  dec(value?: number): void;
  /** The series with these label values (see {@linkcode Counter.with}). */
  with(labels: Labels): Gauge;
}

/** A histogram series: counts observations into buckets. */
export interface Histogram {
  /** Counts one observation (for a duration: in seconds). */
  observe(value: number): void;
  /** The series with these label values (see {@linkcode Counter.with}). */
  with(labels: Labels): Histogram;
}

/** Registers metric families: what agent modules get as `context.metrics`. */
export interface Metrics {
  /**
   * Defines a counter, or returns the one of that name already defined the
   * same way.
   *
   * @example Count cache hits and misses
   * ```ts
   * import { MetricsRegistry } from "./registry.ts";
   *
   * const metrics = new MetricsRegistry();
   * const lookups = metrics.counter({
   *   name: "myagent_cache_lookups_total",
   *   help: "Cache lookups by result.",
   *   labelNames: ["result"],
   * });
   * const hits = lookups.with({ result: "hit" }); // keep it: no allocation per use
   * hits.inc();
   * ```
   */
  counter(options: MetricOptions): Counter;
  /** Defines a gauge (see {@linkcode Metrics.counter}). */
  gauge(options: MetricOptions): Gauge;
  /** Defines a histogram (see {@linkcode Metrics.counter}). */
  histogram(options: HistogramOptions): Histogram;
}

interface Family {
  layout: FamilyLayout;
  /** Slots per series. */
  width: number;
  byKey: Map<string, SeriesHandle>;
  /** Warned that the family is full. */
  full: boolean;
}

/** The registry of one thread. */
export class MetricsRegistry implements Metrics {
  /** The shared memory of the values. */
  readonly buffer: SharedArrayBuffer;
  /** The values: counters and gauges one slot, histograms buckets + `+Inf` + sum. */
  readonly values: Float64Array;
  readonly #families = new Map<string, Family>();
  #used = 0;
  #onChange: (() => void) | undefined;
  #warn: (text: string) => void;

  /**
   * @param options `capacity` in slots; `warn` hears of families or memory
   * that are full (once each); `onChange` hears of new families and series.
   */
  constructor(
    options: { capacity?: number; warn?: (text: string) => void; onChange?: () => void } = {},
  ) {
    const capacity = options.capacity ?? DEFAULT_CAPACITY;
    this.buffer = new SharedArrayBuffer(capacity * 8);
    this.values = new Float64Array(this.buffer);
    this.#warn = options.warn ?? (() => {});
    this.#onChange = options.onChange;
  }

  /** Where to report layout changes (a worker posts its layout to the main thread). */
  set onChange(fn: (() => void) | undefined) {
    this.#onChange = fn;
  }

  /** Where to report full families and memory. */
  set warn(fn: (text: string) => void) {
    this.#warn = fn;
  }

  counter(options: MetricOptions): Counter {
    if (typeof options?.name === "string" && !options.name.endsWith("_total")) {
      throw new RangeError(
        `Cannot define counter "${options.name}": a counter's name ends in _total`,
      );
    }
    return this.#family("counter", options, undefined).root;
  }

  gauge(options: MetricOptions): Gauge {
    return this.#family("gauge", options, undefined).root;
  }

  histogram(options: HistogramOptions): Histogram {
    const buckets = options?.buckets;
    if (!Array.isArray(buckets) || buckets.length === 0) {
      throw new TypeError(
        `Cannot define histogram "${options?.name}": buckets must be a non-empty array of numbers`,
      );
    }
    for (let i = 0; i < buckets.length; i++) {
      const b = buckets[i];
      if (typeof b !== "number" || !Number.isFinite(b) || (i > 0 && b <= buckets[i - 1]!)) {
        throw new RangeError(
          `Cannot define histogram "${options.name}": buckets must be finite and increasing (at ${i}: ${b})`,
        );
      }
    }
    return this.#family("histogram", options, [...buckets]).root;
  }

  /** The families and series defined so far, as plain data. */
  layout(): MetricsLayout {
    return {
      families: [...this.#families.values()].map((f) => ({
        ...f.layout,
        series: f.layout.series.slice(),
      })),
    };
  }

  #family(type: MetricType, options: MetricOptions, buckets: number[] | undefined) {
    if (options === null || typeof options !== "object") {
      throw new TypeError(`Cannot define ${type}: options must be an object`);
    }
    const { name, help } = options;
    const labelNames = options.labelNames ?? [];
    if (typeof name !== "string" || !NAME.test(name)) {
      throw new RangeError(`Cannot define ${type} "${name}": not a valid metric name`);
    }
    if (typeof help !== "string") {
      throw new TypeError(`Cannot define ${type} "${name}": help must be a string`);
    }
    if (!Array.isArray(labelNames)) {
      throw new TypeError(`Cannot define ${type} "${name}": labelNames must be an array`);
    }
    for (const label of labelNames) {
      if (typeof label !== "string" || !LABEL.test(label) || label.startsWith("__")) {
        throw new RangeError(`Cannot define ${type} "${name}": "${label}" is not a label name`);
      }
      if (type === "histogram" && label === "le") {
        throw new RangeError(`Cannot define histogram "${name}": "le" is its buckets' label`);
      }
    }
    if (new Set(labelNames).size !== labelNames.length) {
      throw new RangeError(`Cannot define ${type} "${name}": a label name appears twice`);
    }
    const existing = this.#families.get(name);
    if (existing !== undefined) {
      const l = existing.layout;
      if (
        l.type !== type || l.labelNames.join() !== labelNames.join() ||
        (l.buckets ?? []).join() !== (buckets ?? []).join()
      ) {
        throw new RangeError(
          `Cannot define ${type} "${name}": it is already defined as another ${l.type}`,
        );
      }
      return { root: this.#root(existing) };
    }
    const family: Family = {
      layout: {
        name,
        help,
        type,
        labelNames: [...labelNames],
        ...(buckets === undefined ? {} : { buckets }),
        series: [],
      },
      width: buckets === undefined ? 1 : buckets.length + 2,
      byKey: new Map(),
      full: false,
    };
    this.#families.set(name, family);
    const root = this.#root(family);
    this.#onChange?.();
    return { root };
  }

  /** The family's handle: its only series when it has no labels. */
  #root(family: Family): SeriesHandle {
    if (family.layout.labelNames.length === 0) return this.#series(family, []);
    return new SeriesHandle(this, family, -1);
  }

  /** The series of these label values, made if new (internal to {@linkcode SeriesHandle}). */
  seriesOf(family: Family, labels: Labels): SeriesHandle {
    const names = family.layout.labelNames;
    if (labels === null || typeof labels !== "object") {
      throw new TypeError(`Cannot use ${family.layout.name}: labels must be an object`);
    }
    const values: string[] = [];
    for (const n of names) {
      const v = labels[n];
      if (typeof v !== "string") {
        throw new TypeError(
          `Cannot use ${family.layout.name}: label "${n}" needs a string value (labels: ${
            names.join(", ")
          })`,
        );
      }
      values.push(v);
    }
    if (Object.keys(labels).length !== names.length) {
      throw new TypeError(
        `Cannot use ${family.layout.name}: its labels are ${names.join(", ") || "none"}`,
      );
    }
    return this.#series(family, values);
  }

  #series(family: Family, values: string[]): SeriesHandle {
    const key = values.join("\u0000");
    const known = family.byKey.get(key);
    if (known !== undefined) return known;
    const name = family.layout.name;
    if (
      family.layout.series.length >= MAX_SERIES_PER_FAMILY ||
      this.#used + family.width > this.values.length
    ) {
      if (!family.full) {
        family.full = true;
        this.#warn(
          family.layout.series.length >= MAX_SERIES_PER_FAMILY
            ? `metric ${name} has ${MAX_SERIES_PER_FAMILY} series, the limit: new label values are not counted`
            : `metrics memory is full (${this.values.length} slots): ${name} gets no new series`,
        );
      }
      return new SeriesHandle(this, family, -2);
    }
    const offset = this.#used;
    this.#used += family.width;
    family.layout.series.push({ labels: values, offset });
    const handle = new SeriesHandle(this, family, offset);
    family.byKey.set(key, handle);
    this.#onChange?.();
    return handle;
  }
}

/**
 * A family's handle (offset -1: labels needed), one series (offset ≥ 0), or
 * a series that could not be made (offset -2: counts nothing).
 */
class SeriesHandle implements Counter, Gauge, Histogram {
  readonly #registry: MetricsRegistry;
  readonly #family: Family;
  readonly #values: Float64Array;
  /** The first slot (internal: sessions count into it directly). */
  readonly offset: number;
  readonly #buckets: readonly number[] | undefined;

  constructor(registry: MetricsRegistry, family: Family, offset: number) {
    this.#registry = registry;
    this.#family = family;
    this.#values = registry.values;
    this.offset = offset;
    this.#buckets = family.layout.buckets;
  }

  with(labels: Labels): SeriesHandle {
    return this.#registry.seriesOf(this.#family, labels);
  }

  inc(value = 1): void {
    const at = this.#slot("inc");
    if (this.#family.layout.type === "counter" && !(value >= 0)) {
      throw new RangeError(
        `Cannot add ${value} to counter ${this.#family.layout.name}: counters only go up`,
      );
    }
    if (at >= 0) this.#values[at]! += value;
  }

  dec(value = 1): void {
    const at = this.#slot("dec", "gauge");
    if (at >= 0) this.#values[at]! -= value;
  }

  set(value: number): void {
    const at = this.#slot("set", "gauge");
    if (at >= 0) this.#values[at] = value;
  }

  observe(value: number): void {
    this.observeMany(value, 1);
  }

  /**
   * Counts `count` observations of one value (internal: a sampled
   * observation standing for the calls that were not timed).
   */
  observeMany(value: number, count: number): void {
    const at = this.#slot("observe", "histogram");
    if (at < 0) return;
    const buckets = this.#buckets!;
    let i = 0;
    while (i < buckets.length && value > buckets[i]!) i++;
    const values = this.#values;
    values[at + i]! += count;
    values[at + buckets.length + 1]! += value * count;
  }

  #slot(method: string, only?: MetricType): number {
    const { name, type, labelNames } = this.#family.layout;
    if (only !== undefined ? type !== only : type === "histogram") {
      throw new TypeError(`Cannot ${method} ${name}: it is a ${type}`);
    }
    if (this.offset === -1) {
      throw new TypeError(
        `Cannot ${method} ${name} without labels: use .with({ ${labelNames.join(", ")} })`,
      );
    }
    return this.offset;
  }
}

export type { Family as _Family };

/**
 * The first slot of a series in its registry's values, for counting into it
 * directly on a hot path (negative for a series that could not be made:
 * stores there do nothing). Internal.
 *
 * @param series A series from a registry's `counter`, `gauge` or `histogram`.
 * @returns Its first slot.
 */
export function slotOf(series: Counter | Gauge | Histogram): number {
  return (series as SeriesHandle).offset;
}

/**
 * Has `send` hear of the registry's layout each time families or series are
 * added, once per microtask however many were added (a thread posts it to
 * the one that renders). Internal.
 *
 * @param registry The registry.
 * @param send Gets the new layout.
 */
export function onLayoutChange(registry: MetricsRegistry, send: (layout: MetricsLayout) => void) {
  let queued = false;
  registry.onChange = () => {
    if (queued) return;
    queued = true;
    queueMicrotask(() => {
      queued = false;
      send(registry.layout());
    });
  };
}
