/**
 * Loading the lists and keeping them current: the first load at start, then
 * a reload on request (SIGHUP) and whenever a list file changes (polled).
 * Each load runs on a thread of its own; a load that fails (a bad line, an
 * empty file, a list that shrank too much) keeps the last good database and
 * logs why.
 *
 * @module
 */

import type { Logger } from "../agent/log.ts";
import type { Gauge, Metrics } from "../metrics/registry.ts";
import { fileStamp, type IpDatabase, type ListSpec, loadDatabase } from "./lists.ts";
import type { LoadAnswer, LoadRequest } from "./load_worker.ts";

/** Options of {@linkcode ListWatcher}. */
export interface WatcherOptions {
  specs: readonly ListSpec[];
  /** How often list files are checked for changes; 0 turns polling off. */
  intervalMs: number;
  /** The largest share (0..1) of its entries a list may lose in one reload. */
  maxShrink: number;
  log: Logger;
  /** Where the lists' sizes and the reloads' outcomes are exported. */
  metrics?: Metrics;
  /** Gets each database after the first. */
  publish(db: IpDatabase): void;
  /** Stops polling when it aborts. */
  signal?: AbortSignal;
  /** The load thread's module; `./load_worker.ts` by default. */
  workerUrl?: URL;
}

/** Loads the lists once, then again when asked or when a file changes. */
export class ListWatcher {
  readonly #options: WatcherOptions;
  #db: IpDatabase | undefined;
  #stamps: string[] = [];
  #loading: Promise<void> | undefined;
  #again: string | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  readonly #gauges: ReturnType<typeof gaugesOf>;

  constructor(options: WatcherOptions) {
    this.#options = options;
    this.#gauges = gaugesOf(options.metrics, options.specs);
  }

  /** The latest good database. */
  get db(): IpDatabase | undefined {
    return this.#db;
  }

  /**
   * Loads the lists for the first time and starts watching them.
   *
   * @returns The database.
   * @throws {Error} When a list cannot be loaded (the message names the file and line).
   */
  async start(): Promise<IpDatabase> {
    const started = performance.now();
    const db = await this.#load(1);
    this.#accepted(db, "start", performance.now() - started);
    const { intervalMs, signal } = this.#options;
    if (intervalMs > 0 && !signal?.aborted) {
      this.#timer = setInterval(() => this.#poll(), intervalMs);
      signal?.addEventListener("abort", () => clearInterval(this.#timer), { once: true });
    }
    return db;
  }

  /**
   * Loads the lists again (at once, or after a load in progress).
   *
   * @param reason Why, for the log (`"SIGHUP"`, `"lists/a.txt changed"`).
   * @returns When this reload has finished, whatever its outcome.
   */
  reload(reason: string): Promise<void> {
    if (this.#loading !== undefined) {
      this.#again = reason;
      return this.#loading;
    }
    this.#loading = this.#reload(reason).finally(() => {
      this.#loading = undefined;
      const again = this.#again;
      this.#again = undefined;
      if (again !== undefined && !this.#options.signal?.aborted) void this.reload(again);
    });
    return this.#loading;
  }

  async #reload(reason: string): Promise<void> {
    const started = performance.now();
    const generation = (this.#db?.generation ?? 0) + 1;
    try {
      const db = await this.#load(generation);
      if (this.#options.signal?.aborted) return;
      this.#accepted(db, reason, performance.now() - started);
      this.#options.publish(db);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.#gauges?.failed(performance.now() - started);
      this.#options.log.error(
        `lists not reloaded (${reason}), generation ${
          this.#db?.generation ?? 0
        } stays in use: ${message}`,
        { reason },
      );
    }
  }

  #accepted(db: IpDatabase, reason: string, ms: number): void {
    this.#db = db;
    this.#gauges?.loaded(db, ms);
    const sizes = db.lists.map((l) =>
      `${l.file} (${l.kind}, ${l.count} ${l.count === 1 ? "entry" : "entries"}, ${l.format})`
    );
    this.#options.log.info(
      `lists loaded, generation ${db.generation}${reason === "start" ? "" : ` (${reason})`} in ${
        Math.round(ms)
      } ms: ${sizes.join(", ")}`,
      { generation: db.generation },
    );
  }

  #poll(): void {
    if (this.#loading !== undefined) return;
    const stamps = this.#options.specs.map((spec) => fileStamp(spec.file));
    const changed = this.#options.specs.find((_, i) => stamps[i] !== this.#stamps[i]);
    if (changed !== undefined) void this.reload(`${changed.file} changed`);
  }

  /** Reads the lists on a thread of its own (on this one if no thread can start). */
  async #load(generation: number): Promise<IpDatabase> {
    const { specs, maxShrink } = this.#options;
    // Stamped before reading: a change while reading shows at the next poll.
    const stamps = specs.map((spec) => fileStamp(spec.file));
    const previous = new Map(this.#db?.lists.map((l) => [l.file, l.count]) ?? []);
    const request: LoadRequest = {
      specs: [...specs],
      generation,
      previous: [...previous],
      maxShrink,
    };
    // A failed load is not tried again until a file changes again (or SIGHUP).
    this.#stamps = stamps;
    return await loadOffThread(request, this.#options.workerUrl).catch((err) => {
      if (!(err instanceof ThreadUnavailable)) throw err;
      this.#options.log.debug(`loading the lists on this thread: ${err.message}`);
      return loadDatabase(specs, { generation, previous, maxShrink });
    });
  }
}

/** No load thread could be started. */
class ThreadUnavailable extends Error {}

function loadOffThread(request: LoadRequest, url?: URL): Promise<IpDatabase> {
  let worker: Worker;
  try {
    worker = new Worker((url ?? new URL("./load_worker.ts", import.meta.url)).href, {
      type: "module",
    });
  } catch (err) {
    return Promise.reject(new ThreadUnavailable(String(err)));
  }
  return new Promise<IpDatabase>((resolve, reject) => {
    worker.onmessage = (event: MessageEvent<LoadAnswer>) => {
      worker.terminate();
      const answer = event.data;
      if (answer.ok) resolve(answer.db);
      else reject(new Error(answer.message));
    };
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      worker.terminate();
      reject(new ThreadUnavailable(event.message));
    };
    worker.postMessage(request);
  });
}

/** The lists' gauges and the reload counters. */
function gaugesOf(metrics: Metrics | undefined, specs: readonly ListSpec[]) {
  if (metrics === undefined) return undefined;
  const entries = metrics.gauge({
    name: "spoa_iprep_list_entries",
    help: "Entries (addresses, CIDRs, ranges) of each list in the table in use.",
    labelNames: ["list", "kind"],
  });
  const perList: Gauge[] = specs.map((spec) => entries.with({ list: spec.file, kind: spec.kind }));
  const generation = metrics.gauge({
    name: "spoa_iprep_table_generation",
    help: "Generation of the table in use: 1 at start, one more at each successful reload.",
  });
  const reloads = metrics.counter({
    name: "spoa_iprep_reloads_total",
    help: "Reloads of the lists, by outcome (a failed one keeps the table in use).",
    labelNames: ["outcome"],
  });
  const success = reloads.with({ outcome: "success" });
  const failure = reloads.with({ outcome: "failure" });
  const lastOk = metrics.gauge({
    name: "spoa_iprep_last_reload_success",
    help: "1 if the last load of the lists succeeded, 0 if it failed.",
  });
  const lastAt = metrics.gauge({
    name: "spoa_iprep_last_reload_timestamp_seconds",
    help: "When the lists were last loaded or failed to load, since the epoch.",
  });
  const lastTook = metrics.gauge({
    name: "spoa_iprep_last_reload_duration_seconds",
    help: "How long the last load of the lists took.",
  });
  const last = (ok: boolean, ms: number) => {
    lastOk.set(ok ? 1 : 0);
    lastAt.set(Date.now() / 1000);
    lastTook.set(ms / 1000);
  };
  return {
    loaded(db: IpDatabase, ms: number) {
      db.lists.forEach((list, i) => perList[i]!.set(list.count));
      generation.set(db.generation);
      if (db.generation > 1) success.inc();
      last(true, ms);
    },
    failed(ms: number) {
      failure.inc();
      last(false, ms);
    },
  };
}
