/**
 * `spoa lookup ADDRESS [--block ...] [--allow ...] [--default-score ...]`:
 * its command line. Parsing never exits (see `cli.ts`).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { SERVICE_OPTIONS } from "./iprep/agent.ts";
import {
  asArgs,
  checkServiceArgs,
  describeParseError,
  envName,
  envValue,
  UsageError,
} from "./cli.ts";

/** The flags of `spoa lookup` (and their variables). */
const LIST_FLAGS = ["block", "allow", "default-score"] as const;

/** What `spoa lookup` was asked. */
export interface LookupOptions {
  /** The address to explain. */
  address: string;
  /** The lists and default score, as the built-in service's arguments. */
  serviceArgs: string[];
}

/**
 * Parses `spoa lookup ADDRESS [--block ...] [--allow ...] [--default-score ...]`
 * (the arguments after `lookup`); the lists may also come from `SPOA_BLOCK`,
 * `SPOA_ALLOW` and `SPOA_DEFAULT_SCORE`.
 *
 * @param argv The arguments after `lookup`.
 * @param env The environment.
 * @returns The address and the lists.
 * @throws {UsageError} For a missing address or a bad flag.
 */
export function parseLookup(
  argv: string[],
  env: Readonly<Record<string, string>> = {},
): LookupOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: true,
      options: {
        block: SERVICE_OPTIONS.block,
        allow: SERVICE_OPTIONS.allow,
        "default-score": SERVICE_OPTIONS["default-score"],
      },
    });
  } catch (err) {
    throw new UsageError(describeParseError(err));
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 1) {
    throw new UsageError(
      "spoa lookup needs one address, e.g. spoa lookup 192.0.2.1 --block drop.txt",
    );
  }
  const given: Record<string, unknown> = { ...values };
  for (const long of LIST_FLAGS) {
    const text = env[envName(long)];
    if (given[long] === undefined && text !== undefined) {
      given[long] = envValue(SERVICE_OPTIONS[long], text);
    }
  }
  const serviceArgs = asArgs(given, LIST_FLAGS);
  checkServiceArgs(serviceArgs);
  return { address: positionals[0]!, serviceArgs };
}
