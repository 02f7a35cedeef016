/**
 * The built-in IP-reputation service as an agent module: what `spoa` runs
 * without `--agent`, loaded the same way as any other agent module.
 * `spoa --seed N --block FILE ...` passes its flags on as the module's
 * arguments:
 *
 * - `--block FILE[=SCORE]`, `--allow FILE[=SCORE]` (each repeatable): lists
 *   of addresses, CIDRs or ranges (formats: `formats.ts`); block entries score
 *   0 and allow entries 100 unless the flag or the entry says otherwise;
 * - `--default-score N|random`: the score of addresses on no list; `random`
 *   without lists, 50 with lists;
 * - `--reload-interval SECONDS`: how often list files are checked for
 *   changes (10 by default; 0: only SIGHUP reloads);
 * - `--max-shrink PERCENT`: a reload that would lose more than this share of
 *   a list's entries is refused (50 by default; 100 allows any);
 * - `--seed N`: random scores become a fixed function of N and the address.
 *
 * The lists are loaded once, by the module's `setup` on the main thread,
 * into shared memory that every worker reads; `GET /lookup?ip=ADDR` on the
 * `--metrics` server tells why an address gets its score.
 *
 * ```sh
 * spoa --agent lib/iprep/agent.ts -- --block drop.txt   # the same as: spoa --block drop.txt
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { Agent, AgentContext, SetupContext } from "../mod.ts";
import { type DefaultScore, explain } from "./explain.ts";
import { type IpDatabase, type ListSpec, parseListSpec } from "./lists.ts";
import { ipReputation, SCORE_BUCKETS } from "./mod.ts";
import { ListWatcher } from "./reload.ts";
import { IpTable } from "./table.ts";

/** The default score of unlisted addresses when lists are given. */
export const LISTED_DEFAULT_SCORE = 50;
/** How often list files are checked for changes by default, in seconds. */
export const DEFAULT_RELOAD_SECONDS = 10;
/** The share of a list's entries a reload may lose by default, in percent. */
export const DEFAULT_MAX_SHRINK_PERCENT = 50;

/** The service's arguments, as `parseArgs` options (the command line passes them on). */
export const SERVICE_OPTIONS = {
  seed: { type: "string" },
  block: { type: "string", multiple: true },
  allow: { type: "string", multiple: true },
  "default-score": { type: "string" },
  "reload-interval": { type: "string" },
  "max-shrink": { type: "string" },
} as const;

/** The service's options, read from the module's arguments. */
export interface ServiceOptions {
  seed: number | undefined;
  lists: ListSpec[];
  defaultScore: DefaultScore;
  reloadSeconds: number;
  maxShrinkPercent: number;
}

/** What the service shares with its workers and its routes. */
export interface ServiceShared {
  /** The lists and their table; `undefined` without lists. */
  db: IpDatabase | undefined;
  defaultScore: DefaultScore;
}

/**
 * Reads the module's arguments.
 *
 * @param args For example `["--block", "drop.txt=10", "--default-score", "60"]`.
 * @returns The options.
 * @throws {Error} Naming the argument that cannot be used.
 */
export function parseServiceArgs(args: readonly string[]): ServiceOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...args],
      strict: true,
      allowPositionals: false,
      options: SERVICE_OPTIONS,
    }));
  } catch (err) {
    throw new Error(`Cannot use the arguments of the IP-reputation service: ${oneLine(err)}`);
  }
  const lists = [
    ...(values.block ?? []).map((text) => parseListSpec("block", text)),
    ...(values.allow ?? []).map((text) => parseListSpec("allow", text)),
  ];
  const seed = values.seed === undefined ? undefined : integer("--seed", values.seed, 0xffff_ffff);
  const given = values["default-score"];
  const defaultScore: DefaultScore = given === undefined
    ? (lists.length === 0 ? "random" : LISTED_DEFAULT_SCORE)
    : given === "random"
    ? "random"
    : integer("--default-score", given, 100, "or random");
  const reload = values["reload-interval"];
  const shrink = values["max-shrink"];
  return {
    seed,
    lists,
    defaultScore,
    reloadSeconds: reload === undefined
      ? DEFAULT_RELOAD_SECONDS
      : integer("--reload-interval", reload, 86_400),
    maxShrinkPercent: shrink === undefined
      ? DEFAULT_MAX_SHRINK_PERCENT
      : integer("--max-shrink", shrink, 100),
  };
}

function integer(flag: string, text: string, max: number, or = ""): number {
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(value <= max)) {
    throw new Error(
      `Invalid value for ${flag}: "${text}" (expected an integer from 0 to ${max}${
        or === "" ? "" : ` ${or}`
      })`,
    );
  }
  return value;
}

/**
 * Loads the lists once, on the main thread, and keeps them current: a SIGHUP
 * and a change of a list file reload them, off the serving threads.
 *
 * @param context The module's setup context.
 * @returns What every worker and route shares.
 */
export async function setup(context: SetupContext): Promise<ServiceShared> {
  const options = parseServiceArgs(context.args);
  const { defaultScore } = options;
  if (options.lists.length === 0) return { db: undefined, defaultScore };
  const watcher = new ListWatcher({
    specs: options.lists,
    intervalMs: options.reloadSeconds * 1000,
    maxShrink: options.maxShrinkPercent / 100,
    log: context.log,
    metrics: context.metrics,
    publish: (db) => context.publish({ db, defaultScore } satisfies ServiceShared),
    signal: context.signal,
  });
  context.onReload(() => void watcher.reload("reload requested"));
  return { db: await watcher.start(), defaultScore };
}

/** `GET /lookup?ip=ADDR`: why the address gets its score, as JSON. */
export const routes = {
  "/lookup": (request: Request, shared: unknown): Response => {
    const { db, defaultScore } =
      (shared ?? { db: undefined, defaultScore: "random" }) as ServiceShared;
    const ip = new URL(request.url).searchParams.get("ip");
    if (ip === null || ip === "") {
      return Response.json({ error: "missing the ip parameter: /lookup?ip=ADDR" }, {
        status: 400,
      });
    }
    const answer = explain(db, ip, defaultScore);
    if (answer === undefined) {
      return Response.json({ error: `not an IPv4 or IPv6 address: ${JSON.stringify(ip)}` }, {
        status: 400,
      });
    }
    return Response.json(answer);
  },
};

/**
 * Builds the IP-reputation agent of a worker.
 *
 * @param context The worker's context: the module's arguments, and the lists `setup` shared.
 * @returns The agent.
 * @throws {Error} For arguments that cannot be used.
 */
export default function ipReputationModule(context: AgentContext): Agent {
  const options = parseServiceArgs(context.args);
  const scores = context.metrics.histogram({
    name: "spoa_iprep_score",
    help: "IP reputation scores given (0 worst, 100 best).",
    buckets: SCORE_BUCKETS,
  });
  let table = tableOf(context.shared);
  context.onShared((value) => table = tableOf(value));
  return ipReputation({
    scores,
    ...(options.seed === undefined ? {} : { seed: options.seed }),
    defaultScore: options.defaultScore,
    table: () => table,
  });
}

function tableOf(shared: unknown): IpTable | undefined {
  const db = (shared as ServiceShared | undefined)?.db;
  return db === undefined ? undefined : new IpTable(db.table);
}

function oneLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0]!;
}
