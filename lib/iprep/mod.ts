/**
 * The IP-reputation service of HAProxy's example agent, written on the
 * public API like any user's agent: message `check-client-ip` with one IPv4
 * or IPv6 argument (named or not) gets `ip_score`, an integer 0..100 sent as
 * UINT32, in scope `sess` (HAProxy sees `sess.<var-prefix>.ip_score`). Other
 * messages, and this one with other arguments, are acknowledged without a
 * score.
 *
 * Scores come from block and allow lists when it has them (see `lists.ts`
 * and `table.ts`), and are random (or a fixed function of a seed) for
 * addresses on no list.
 *
 * @module
 */

import { Agent, DataType, type Histogram } from "../mod.ts";
import type { DefaultScore } from "./explain.ts";
import { type IpTable, UNLISTED } from "./table.ts";

export type { DefaultScore };

/** The message this service answers. */
export const MESSAGE = "check-client-ip";
/** The variable it sets. */
export const VARIABLE = "ip_score";

/** Options of {@linkcode ipReputation}. */
export interface IpReputationOptions {
  /** Count the scores given in this histogram (see {@linkcode SCORE_BUCKETS}). */
  scores?: Histogram;
  /** Make each score a fixed function of the seed and the address. */
  seed?: number;
  /** Source of randomness in [0, 1) when there is no seed; `Math.random` by default. */
  random?: () => number;
  /**
   * The lists' table in use (read at each message, so that a reload takes
   * effect at the next one); none by default.
   */
  table?: () => IpTable | undefined;
  /**
   * The score of addresses on no list: a number 0..100, or `"random"` (random,
   * or a function of `seed`). `"random"` by default.
   */
  defaultScore?: DefaultScore;
}

/**
 * The score a seed gives an address: a keyed hash (FNV-1a, then MurmurHash3's
 * finaliser) reduced to 0..100, so tests can predict it.
 *
 * @param seed 0..2^32-1.
 * @param bytes Bytes holding the address (4 or 16 of them).
 * @param start Where the address starts in `bytes`; 0 by default.
 * @param end Where it ends (exclusive); `bytes.length` by default.
 * @returns 0..100.
 *
 * @example Usage
 * ```ts
 * import { seededScore } from "./mod.ts";
 *
 * seededScore(7, new Uint8Array([127, 0, 0, 1])) === seededScore(7, new Uint8Array([127, 0, 0, 1])); // true
 * ```
 */
export function seededScore(
  seed: number,
  bytes: Uint8Array,
  start = 0,
  end: number = bytes.length,
): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = start; i < end; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) % 101;
}

/**
 * Builds the IP-reputation agent.
 *
 * @param options A seed for reproducible scores, or a random source.
 * @returns An agent handling `check-client-ip`.
 */
export function ipReputation(options: IpReputationOptions = {}): Agent {
  const { seed, scores, table } = options;
  const random = options.random ?? Math.random;
  const fixed = options.defaultScore === undefined || options.defaultScore === "random"
    ? -1
    : options.defaultScore;
  // The address is copied here, not into a new array per message.
  const address = new Uint8Array(16);
  return new Agent().on(MESSAGE, (message, reply) => {
    if (message.size !== 1) return;
    let score: number;
    const lists = table?.();
    if (seed === undefined && lists === undefined && fixed < 0) {
      // A random score needs the address's type only, not its bytes.
      const type = message.arg(0)!.type;
      if (type !== DataType.IPV4 && type !== DataType.IPV6) return;
      score = Math.floor(random() * 101);
    } else {
      const length = message.ipBytes(0, address);
      if (length === 0) return;
      score = lists === undefined ? UNLISTED : lists.bytes(address, length);
      if (score === UNLISTED) {
        score = fixed >= 0
          ? fixed
          : seed === undefined
          ? Math.floor(random() * 101)
          : seededScore(seed, address, 0, length);
      }
    }
    reply.setVar("sess", VARIABLE, score, DataType.UINT32);
    scores?.observe(score);
  });
}

/** Buckets of the scores histogram: tens, so that `le="10"` counts scores 0..10. */
export const SCORE_BUCKETS: readonly number[] = [10, 20, 30, 40, 50, 60, 70, 80, 90];
