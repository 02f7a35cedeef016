/**
 * What an agent module may do once, before its workers start, and share with
 * all of them: its named export `setup`, run on the main thread with a
 * {@linkcode SetupContext}. What `setup` returns, and every later value it
 * publishes, reaches each worker's agent as `context.shared` (a structured
 * clone: a `SharedArrayBuffer` in it is shared memory, not a copy). So data
 * that every worker reads (a table, a rule set) is loaded once, kept once,
 * and replaced in every worker at once when it changes.
 *
 * A module may also export `routes`: HTTP handlers served under their paths
 * on the `--metrics` server, each given the request and the latest shared
 * value.
 *
 * ```ts ignore
 * export async function setup(context) {
 *   const rules = await loadRules(context.args[0]);
 *   context.onReload(async () => context.publish(await loadRules(context.args[0]))); // SIGHUP
 *   return rules;
 * }
 * export const routes = { "/rules": (_request, rules) => Response.json(rules) };
 * export default (context) => ({ "check": (message, reply) => { ... context.shared ... } });
 * ```
 *
 * @module
 */

import { createLogger, errorText, type Logger } from "../agent/log.ts";
import type { Metrics } from "../metrics/registry.ts";

/** What an agent module's `setup` export is called with, once, on the main thread. */
export interface SetupContext {
  /** The module's arguments (the same as its workers get). */
  readonly args: readonly string[];
  /** How many workers will run the agent (0: it runs on the main thread). */
  readonly workers: number;
  /** The main thread's logger (the module's `agent` child). */
  readonly log: Logger;
  /** Counters, gauges and histograms exported on `--metrics`, as in workers. */
  readonly metrics: Metrics;
  /** Aborts when the agent shuts down: stop timers and watchers then. */
  readonly signal: AbortSignal;
  /**
   * Replaces the shared value in every worker (and in workers started
   * later). It must survive a structured clone; a value that does not is
   * refused with a `DataCloneError` here, whatever the number of workers.
   */
  publish(value: unknown): void;
  /** Calls `listener` on each reload request (SIGHUP to `spoa`, `server.reload()`). */
  onReload(listener: () => void): void;
}

/** An HTTP handler of an agent module, served on the `--metrics` server. */
export type Route = (request: Request, shared: unknown) => Response | Promise<Response>;

/** The routes an agent module exports, by path (`"/lookup"`). */
export type Routes = Readonly<Record<string, Route>>;

const NO_LOG: Logger = createLogger({ sink: () => {} });

/** A module's setup, once run: the shared value and its changes. */
export class ModuleSetup {
  #shared: unknown;
  readonly #listeners: ((value: unknown) => void)[] = [];
  readonly #reloads: (() => void)[] = [];
  readonly #abort = new AbortController();
  readonly #log: Logger;

  /** A setup that shares nothing (the module has no `setup` export). */
  static readonly NONE: ModuleSetup = new ModuleSetup(NO_LOG);

  private constructor(log: Logger) {
    this.#log = log;
  }

  /**
   * Runs a module's `setup` export.
   *
   * @param setup The export.
   * @param place The module's arguments, its workers, a logger and metrics.
   * @returns The running setup, holding the value `setup` returned.
   * @throws What `setup` throws or rejects with.
   */
  static async run(
    setup: (context: SetupContext) => unknown,
    place: { args: readonly string[]; workers: number; log: Logger; metrics: Metrics },
  ): Promise<ModuleSetup> {
    const running = new ModuleSetup(place.log);
    const context: SetupContext = {
      args: Object.freeze([...place.args]),
      workers: place.workers,
      log: place.log,
      metrics: place.metrics,
      signal: running.#abort.signal,
      publish: (value) => running.#publish(value),
      onReload: (listener) => void running.#reloads.push(listener),
    };
    const first = await setup(context);
    cloneable(first, "the value setup returned");
    running.#shared = first;
    return running;
  }

  /** The latest value. */
  get shared(): unknown {
    return this.#shared;
  }

  /**
   * Calls `listener` with each value published from now on.
   *
   * @param listener Gets the new value.
   */
  onPublish(listener: (value: unknown) => void): void {
    this.#listeners.push(listener);
  }

  /**
   * What an agent on this thread sees of the shared value: the latest one,
   * following every publish.
   *
   * @returns A view that follows this setup.
   */
  view(): SharedView {
    const view = new SharedView(this.#shared);
    this.onPublish((value) => view.set(value));
    return view;
  }

  /** Asks the module to reload (its `onReload` listeners run). */
  reload(): void {
    for (const listener of this.#reloads) {
      try {
        listener();
      } catch (err) {
        this.#log.error(`the agent module's reload failed: ${errorText(err)}`);
      }
    }
  }

  /** Stops the setup: its `signal` aborts. */
  close(): void {
    this.#abort.abort();
  }

  #publish(value: unknown): void {
    if (this.#abort.signal.aborted) return;
    cloneable(value, "a published value");
    this.#shared = value;
    for (const listener of this.#listeners) listener(value);
  }
}

/**
 * Throws when `value` cannot reach workers (a structured clone of it fails),
 * whatever the number of workers, so that a module behaves the same on one
 * thread and on many.
 */
function cloneable(value: unknown, what: string): void {
  try {
    structuredClone(value);
  } catch (err) {
    const error = new Error(
      `Cannot share ${what}: workers cannot get a copy of it (${errorText(err)}); share data, ` +
        "typed arrays and SharedArrayBuffers, not functions or class instances",
    );
    error.name = "DataCloneError";
    throw error;
  }
}

/**
 * What a worker's agent sees of the shared value: the latest one, and a way
 * to hear of the next. Internal.
 */
export class SharedView {
  #value: unknown;
  readonly #listeners: ((value: unknown) => void)[] = [];

  constructor(value: unknown) {
    this.#value = value;
  }

  get value(): unknown {
    return this.#value;
  }

  /** Takes a new value and tells the listeners. */
  set(value: unknown): void {
    this.#value = value;
    for (const listener of this.#listeners) listener(value);
  }

  listen(listener: (value: unknown) => void): void {
    this.#listeners.push(listener);
  }
}
