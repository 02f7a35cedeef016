/**
 * The built-in IP-reputation service as an agent module: what `spoa` runs
 * without `--agent`, loaded the same way as any other agent module. Its one
 * argument is `--seed N` (`spoa --seed N` passes it on); without a seed,
 * scores are random.
 *
 * ```sh
 * spoa --agent lib/iprep/agent.ts -- --seed 7   # the same as: spoa --seed 7
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { Agent, AgentContext } from "../mod.ts";
import { ipReputation, SCORE_BUCKETS } from "./mod.ts";

/**
 * Builds the IP-reputation agent from the module arguments.
 *
 * @param context The worker's context; `args` may hold `--seed N`.
 * @returns The agent.
 * @throws {Error} For arguments other than `--seed` with an integer 0..2^32-1.
 */
export default function ipReputationModule(context: AgentContext): Agent {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...context.args],
      strict: true,
      allowPositionals: false,
      options: { seed: { type: "string" } },
    }));
  } catch (err) {
    throw new Error(`Cannot use the arguments of the IP-reputation service: ${oneLine(err)}`);
  }
  const scores = context.metrics.histogram({
    name: "spoa_iprep_score",
    help: "IP reputation scores given (0 worst, 100 best).",
    buckets: SCORE_BUCKETS,
  });
  if (values.seed === undefined) return ipReputation({ scores });
  const seed = /^\d+$/.test(values.seed) ? Number(values.seed) : NaN;
  if (!(seed <= 0xffff_ffff)) {
    throw new Error(
      `Invalid value for --seed: "${values.seed}" (expected an integer from 0 to 4294967295)`,
    );
  }
  return ipReputation({ seed, scores });
}

function oneLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0]!;
}
