/**
 * Agent modules: a TypeScript or JavaScript module whose default export is
 * the agent, loaded by path or URL (`spoa --agent MODULE`, or
 * `serve(new URL(...))`). The default export is one of:
 *
 * - an {@linkcode Agent};
 * - a plain object mapping message names to handlers, so that a module needs
 *   no import at all;
 * - a function called once per worker with an {@linkcode AgentContext}, that
 *   returns (or resolves to) either of the above.
 *
 * Anything else is refused with one {@linkcode AgentModuleError} whose
 * message says why: `Cannot load agent module ./x.ts: <reason>`.
 *
 * @module
 */

import process from "node:process";
import { pathToFileURL } from "node:url";
import { Agent, AGENT_BRAND, type Handler } from "../agent/handler.ts";
import { errorDetail, errorText, type Logger } from "../agent/log.ts";
import { DataType } from "../spop.ts";
import { type Metrics, MetricsRegistry } from "../metrics/registry.ts";
import { ModuleSetup, type Routes, type SetupContext, SharedView } from "./setup.ts";

/** What the default-export function of an agent module is called with. */
export interface AgentContext {
  /** The worker running this copy of the agent: 1 to `workers`, or 0 on the main thread. */
  readonly workerId: number;
  /** How many workers run the agent (0 when it runs on the main thread). */
  readonly workers: number;
  /** The module's own arguments (those after `--` on the command line). */
  readonly args: readonly string[];
  /** The worker's logger. */
  readonly log: Logger;
  /** The `Agent` class, so that a module needs no import. */
  readonly Agent: typeof Agent;
  /** SPOP data types, for `reply.setVar(..., type)`. */
  readonly DataType: typeof DataType;
  /**
   * The agent's own counters, gauges and histograms, exported with spoa's
   * on `--metrics` (every worker's summed). Define them here, once, and keep
   * the series: counting is then a store into shared memory.
   */
  readonly metrics: Metrics;
  /**
   * The value the module's `setup` export shared (see `setup.ts`), the latest
   * one published; `undefined` when the module has no `setup`. Keep `context`
   * and read this, or follow changes with {@linkcode AgentContext.onShared}.
   */
  readonly shared: unknown;
  /**
   * Calls `listener` with each value the module's `setup` publishes from now
   * on (after a reload), on this worker's thread.
   *
   * @param listener Gets the new value.
   */
  onShared(listener: (value: unknown) => void): void;
}

/** An object mapping message names to their handlers. */
export type Handlers = Readonly<Record<string, Handler>>;

/** What an agent module's default export may be. */
export type AgentExport =
  | Agent
  | Handlers
  | ((context: AgentContext) => Agent | Handlers | PromiseLike<Agent | Handlers>);

/** A module that cannot be used as an agent; the message says why. */
export class AgentModuleError extends Error {
  /**
   * Builds the error.
   *
   * @param module The module as given (path or URL).
   * @param reason Why it cannot be used.
   */
  constructor(readonly module: string, readonly reason: string) {
    super(`Cannot load agent module ${module}: ${reason}`);
    this.name = "AgentModuleError";
  }
}

/**
 * The URL of a module given as a path (relative to the working directory)
 * or as a URL (`file:`, `https:`, ...).
 *
 * @param module A path or URL.
 * @returns The module's URL.
 */
export function moduleUrl(module: string | URL): URL {
  if (module instanceof URL) return module;
  // A scheme of two letters or more (one letter is a Windows drive).
  if (/^[a-z][a-z0-9+.-]+:/i.test(module)) return new URL(module);
  return pathToFileURL(module.startsWith("/") ? module : `${process.cwd()}/${module}`);
}

/** Where an agent module runs: the parts of its {@linkcode AgentContext} that vary. */
export interface AgentPlace {
  /** 1 to `workers`, or 0 on the main thread. */
  workerId: number;
  /** How many workers run it (0 on the main thread). */
  workers: number;
  /** The module's arguments. */
  args: readonly string[];
  /** The thread's logger; the module gets its `agent` child. */
  log: Logger;
  /** The thread's metrics registry (a private one by default). */
  metrics?: Metrics;
  /** What the module's `setup` shares, as this thread sees it. */
  shared?: SharedView;
}

/**
 * Imports an agent module and makes its agent.
 *
 * @param module A path or URL.
 * @param place Where it runs, for the context of a default-export function.
 * @param label The module as the user named it, for errors.
 * @returns The agent.
 * @throws {AgentModuleError} When the module cannot be imported or its default
 * export is not usable.
 */
export async function loadAgentModule(
  module: string | URL,
  place: AgentPlace,
  label: string = String(module),
): Promise<Agent> {
  const shared = place.shared ?? new SharedView(undefined);
  const context: AgentContext = {
    workerId: place.workerId,
    workers: place.workers,
    args: Object.freeze([...place.args]),
    log: place.log.child("agent"),
    Agent,
    DataType,
    metrics: place.metrics ?? new MetricsRegistry(),
    get shared() {
      return shared.value;
    },
    onShared: (listener) => shared.listen(listener),
  };
  const namespace = await importModule(module, label);
  if (!("default" in namespace) || namespace.default === undefined) {
    throw new AgentModuleError(
      label,
      "it has no default export (export default an Agent, an object of handlers, or a function)",
    );
  }
  return await agentOf(namespace.default, context, label);
}

/** Imports a module (once per thread: later imports get the same namespace). */
async function importModule(module: string | URL, label: string): Promise<Record<string, unknown>> {
  try {
    return await import(moduleUrl(module).href);
  } catch (err) {
    throw new AgentModuleError(label, importError(err));
  }
}

/** Paths the `--metrics` server keeps for itself. */
const OWN_PATHS = ["/metrics", "/health"];

/**
 * Imports an agent module on the main thread and runs its `setup` export, if
 * it has one, and reads its `routes`.
 *
 * @param module A path or URL.
 * @param place The module's arguments, its workers, a logger and metrics.
 * @param label The module as the user named it, for errors.
 * @returns The running setup and the routes (none when not exported).
 * @throws {AgentModuleError} When the module cannot be imported, `setup` is
 * not a function or fails, or `routes` is not an object of functions.
 */
export async function setupAgentModule(
  module: string | URL,
  place: { args: readonly string[]; workers: number; log: Logger; metrics: Metrics },
  label: string = String(module),
): Promise<{ setup: ModuleSetup; routes: Routes }> {
  const namespace = await importModule(module, label);
  const routes = routesOf(namespace, label);
  const setup = namespace.setup;
  if (setup === undefined) return { setup: ModuleSetup.NONE, routes };
  if (typeof setup !== "function") {
    throw new AgentModuleError(label, `its setup export is ${describe(setup)}, not a function`);
  }
  try {
    return {
      setup: await ModuleSetup.run(setup as (context: SetupContext) => unknown, {
        ...place,
        log: place.log.child("agent"),
      }),
      routes,
    };
  } catch (err) {
    throw new AgentModuleError(label, `its setup failed: ${firstLine(errorText(err))}`);
  }
}

/**
 * Reads an agent module's `routes` export (for a thread that serves them
 * without running the module's setup).
 *
 * @param module A path or URL.
 * @param label The module as the user named it, for errors.
 * @returns The routes (none when not exported).
 * @throws {AgentModuleError} As {@linkcode setupAgentModule}.
 */
export async function agentModuleRoutes(module: string | URL, label: string): Promise<Routes> {
  return routesOf(await importModule(module, label), label);
}

function routesOf(namespace: Record<string, unknown>, label: string): Routes {
  const routes = namespace.routes;
  if (routes === undefined) return {};
  if (routes === null || typeof routes !== "object" || Array.isArray(routes)) {
    throw new AgentModuleError(
      label,
      `its routes export is ${describe(routes)}: export an object mapping paths to functions`,
    );
  }
  for (const [path, route] of Object.entries(routes)) {
    if (!path.startsWith("/") || OWN_PATHS.includes(path)) {
      throw new AgentModuleError(
        label,
        `its route ${JSON.stringify(path)} is not a path of its own (start with "/"; ` +
          `${OWN_PATHS.join(" and ")} are spoa's)`,
      );
    }
    if (typeof route !== "function") {
      throw new AgentModuleError(
        label,
        `its route ${JSON.stringify(path)} is ${describe(route)}, not a function`,
      );
    }
  }
  return routes as Routes;
}

/**
 * Makes the agent a module's default export describes.
 *
 * @param value The default export.
 * @param context What a function is called with.
 * @param label The module's name for errors.
 * @returns The agent.
 * @throws {AgentModuleError} When `value` is not usable.
 */
export async function agentOf(
  value: unknown,
  context: AgentContext,
  label: string,
): Promise<Agent> {
  if (typeof value !== "function") return fromValue(value, label, "its default export");
  let result: unknown;
  try {
    result = value(context);
  } catch (err) {
    throw new AgentModuleError(label, `its default export threw: ${firstLine(errorText(err))}`);
  }
  if (isThenable(result)) {
    try {
      result = await result;
    } catch (err) {
      throw new AgentModuleError(
        label,
        `its default export rejected: ${firstLine(errorText(err))}`,
      );
    }
  }
  if (typeof result === "function") {
    throw new AgentModuleError(
      label,
      "its default export returned a function: return an Agent or an object of handlers",
    );
  }
  return fromValue(result, label, "what its default export returned");
}

function fromValue(value: unknown, label: string, what: string): Agent {
  if (value instanceof Agent) return nonEmpty(value, label, what);
  if (isForeignAgent(value)) {
    // An Agent of another copy of the library (the module imported its own).
    const agent = new Agent();
    for (const name of value.messages) agent.on(name, value.handler(name)!);
    return nonEmpty(agent, label, what);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new AgentModuleError(
      label,
      `${what} is ${describe(value)}: use an Agent, an object mapping message names to ` +
        `handlers, or a function returning either`,
    );
  }
  const agent = new Agent();
  for (const [name, handler] of Object.entries(value)) {
    if (typeof handler !== "function") {
      throw new AgentModuleError(
        label,
        `the handler for message ${JSON.stringify(name)} is ${describe(handler)}, not a function`,
      );
    }
    if (name === "") throw new AgentModuleError(label, "a handler has an empty message name");
    agent.on(name, handler as Handler);
  }
  return nonEmpty(agent, label, what);
}

function nonEmpty(agent: Agent, label: string, what: string): Agent {
  if (agent.messages.length === 0) {
    throw new AgentModuleError(label, `${what} handles no message`);
  }
  return agent;
}

interface AgentLike {
  readonly messages: string[];
  handler(name: string): Handler | undefined;
}

function isForeignAgent(value: unknown): value is AgentLike {
  return typeof value === "object" && value !== null &&
    (value as Record<symbol, unknown>)[AGENT_BRAND] === true;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === "object" || typeof value === "function") && value !== null &&
    typeof (value as { then?: unknown }).then === "function";
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  const type = typeof value;
  return type === "object" ? "an object" : `a ${type}`;
}

/**
 * One line for a failed import: Deno puts the location on a line of its own
 * (`at file:///x.ts:1:17`), Bun gives build errors as an AggregateError of
 * messages with positions.
 */
function importError(err: unknown): string {
  const errors = (err as { errors?: unknown }).errors;
  if (err instanceof AggregateError && Array.isArray(errors) && errors.length > 0) {
    const first = errors[0] as { message?: unknown; position?: { line?: number; column?: number } };
    const at = first.position?.line === undefined
      ? ""
      : ` (line ${first.position.line}, column ${(first.position.column ?? 0) + 1})`;
    return `SyntaxError: ${String(first.message ?? first)}${at}`;
  }
  const text = errorText(err);
  const message = err instanceof Error ? err.message : "";
  const location = /^\s*at (\S+:\d+:\d+)\s*$/m.exec(message)?.[1];
  const line = firstLine(text);
  return location === undefined || line.includes(location) ? line : `${line} (at ${location})`;
}

function firstLine(text: string): string {
  const line = text.split("\n").map((l) => l.trim()).find((l) => l !== "") ?? "";
  return line.replace(/^Uncaught /, "");
}

/**
 * Logs errors that agent code leaves uncaught (a throw in its own timer, a
 * rejection nobody handles) instead of ending the process or worker and the
 * connections it serves.
 *
 * @param log Where to log them.
 */
export function logUncaught(log: Logger): void {
  process.on("uncaughtException", (err) => {
    log.error(`uncaught error in agent code: ${errorDetail(err)}`);
  });
  process.on("unhandledRejection", (reason) => {
    log.error(`unhandled rejection in agent code: ${errorDetail(reason)}`);
  });
}
