/**
 * "Why this score?": every list and entry that holds an address, which one
 * decided, and the score it gets. Served as `GET /lookup?ip=ADDR` on the
 * `--metrics` server and printed by `spoa lookup ADDR`.
 *
 * @module
 */

import { blockText, isMapped, readIPv4, readIPv6, wordsToBig } from "./_addr.ts";
import { type EntriesData, NO_SCORE } from "./entries.ts";
import { fileStamp, type IpDatabase, type LoadedList, readList } from "./lists.ts";
import { IpTable, UNLISTED } from "./table.ts";

/** The score of addresses on no list: a number, or random ones. */
export type DefaultScore = number | "random";

/** One entry that holds the address. */
export interface Match {
  /** The list's file. */
  list: string;
  kind: "block" | "allow";
  /** The entry as CIDR (`192.0.2.0/24`) or range (`192.0.2.5-192.0.2.9`). */
  entry: string;
  /** Its line in the file. */
  line: number;
  /** The score it gives (its own, or its list's). */
  score: number;
  /** Whether it is the entry of its list that decides (the most specific). */
  decides: boolean;
}

/** The answer to "why this score?". */
export interface Explanation {
  /** The address as asked, in canonical form (`::ffff:a.b.c.d` as `a.b.c.d`). */
  ip: string;
  /** The score HAProxy gets; `"random"` for an unlisted address with a random default. */
  score: number | "random";
  /** What decided: an allow list, a block list, or the default. */
  decided_by: "allow" | "block" | "default";
  /** The default score of unlisted addresses. */
  default_score: DefaultScore;
  /** The table generation the answer comes from (0: no lists). */
  generation: number;
  /** Every entry holding the address, list by list. */
  matches: Match[];
  /**
   * Lists whose file changed since the table in use was loaded (a reload is
   * due, or failed): their matches come from the file as it is now.
   */
  stale: string[];
  /** Lists that could not be read again, with why. */
  errors: string[];
}

/**
 * Reads an address given as text.
 *
 * @param text `"192.0.2.1"`, `"2001:db8::1"` or `"::ffff:192.0.2.1"`.
 * @returns Its family and 128-bit value (an IPv4-mapped address as IPv4), or `undefined`.
 */
export function readAddress(text: string): { bits: 32 | 128; value: bigint } | undefined {
  const bytes = new TextEncoder().encode(text);
  const v4 = readIPv4(bytes, 0, bytes.length);
  if (v4 >= 0) return { bits: 32, value: BigInt(v4) };
  const words = new Uint32Array(4);
  if (!readIPv6(bytes, 0, bytes.length, words, 0)) return undefined;
  if (isMapped(words, 0)) return { bits: 32, value: BigInt(words[3]!) };
  return { bits: 128, value: wordsToBig(words, 0) };
}

/**
 * Explains the score of an address. The lists' files are read again (the
 * table keeps no entries), about half a second for a million entries.
 *
 * @param db The lists (or `undefined` when none are loaded).
 * @param text The address.
 * @param defaultScore The score of unlisted addresses.
 * @returns The explanation, or `undefined` when `text` is not an address.
 */
export function explain(
  db: IpDatabase | undefined,
  text: string,
  defaultScore: DefaultScore,
): Explanation | undefined {
  const address = readAddress(text);
  if (address === undefined) return undefined;
  const matches: Match[] = [];
  const stale: string[] = [];
  const errors: string[] = [];
  for (const list of db?.lists ?? []) {
    let entries: EntriesData;
    try {
      entries = readList(list.file).entries.data();
    } catch (err) {
      errors.push(err instanceof Error ? err.message : String(err));
      continue;
    }
    if (fileStamp(list.file) !== list.stamp) stale.push(list.file);
    matches.push(...matchesIn(list, entries, address));
  }
  const table = db === undefined ? undefined : new IpTable(db.table);
  const listed = table === undefined
    ? UNLISTED
    : address.bits === 32
    ? table.v4(Number(address.value))
    : table.v6(
      Number((address.value >> 96n) & 0xffff_ffffn),
      Number((address.value >> 64n) & 0xffff_ffffn),
      Number((address.value >> 32n) & 0xffff_ffffn),
      Number(address.value & 0xffff_ffffn),
    );
  const decided = matches.filter((m) => m.decides);
  const kind = decided.some((m) => m.kind === "allow")
    ? "allow"
    : decided.length > 0
    ? "block"
    : "default";
  return {
    ip: blockText(address.value, address.value, address.bits).replace(/\/(32|128)$/, ""),
    score: listed === UNLISTED ? defaultScore : listed,
    decided_by: kind,
    default_score: defaultScore,
    generation: db?.generation ?? 0,
    matches,
    stale,
    errors,
  };
}

/** The entries of one list holding the address, the deciding one marked. */
function matchesIn(
  list: LoadedList,
  e: EntriesData,
  address: { bits: 32 | 128; value: bigint },
): Match[] {
  const found: { first: bigint; last: bigint; line: number; score: number }[] = [];
  if (address.bits === 32) {
    const a = Number(address.value);
    for (let i = 0; i < e.v4Count; i++) {
      if (e.v4First[i]! <= a && a <= e.v4Last[i]!) {
        found.push({
          first: BigInt(e.v4First[i]!),
          last: BigInt(e.v4Last[i]!),
          line: e.v4Line[i]!,
          score: e.v4Score[i] === NO_SCORE ? list.score : e.v4Score[i]!,
        });
      }
    }
  } else {
    for (let i = 0; i < e.v6Count; i++) {
      const first = wordsToBig(e.v6First, i * 4);
      const last = wordsToBig(e.v6Last, i * 4);
      if (first <= address.value && address.value <= last) {
        found.push({
          first,
          last,
          line: e.v6Line[i]!,
          score: e.v6Score[i] === NO_SCORE ? list.score : e.v6Score[i]!,
        });
      }
    }
  }
  // The narrowest decides; between equals, the lowest score of a block list, the highest of an allow list.
  let best = -1;
  found.forEach((m, i) => {
    if (best < 0) return void (best = i);
    const b = found[best]!;
    const wm = m.last - m.first;
    const wb = b.last - b.first;
    if (wm < wb || (wm === wb && (list.kind === "block" ? m.score < b.score : m.score > b.score))) {
      best = i;
    }
  });
  return found.map((m, i) => ({
    list: list.file,
    kind: list.kind,
    entry: blockText(m.first, m.last, address.bits),
    line: m.line,
    score: m.score,
    decides: i === best,
  }));
}
