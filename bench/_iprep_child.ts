/**
 * The in-process half of `bench/iprep.ts`, run under Deno or Bun (no Deno
 * API here): `_iprep_child.ts FILE,FILE REPEATS` loads the lists, measures
 * and prints one JSON line.
 *
 * @module
 */

import process from "node:process";
import { loadDatabase } from "../lib/iprep/lists.ts";
import { IpTable } from "../lib/iprep/table.ts";
import { generator } from "./_lists.ts";

/** What it measures. */
export interface ChildResult {
  loadMs: number[];
  rssAddedBytes: number;
  v4Ns: { p50: number; p99: number };
  v6Ns: { p50: number; p99: number };
  intervals: [number, number];
}

/** Collects garbage where the runtime lets us (Deno needs `--v8-flags=--expose-gc`). */
function collect(): void {
  const g = globalThis as { gc?: () => void; Bun?: { gc(force: boolean): void } };
  if (g.Bun !== undefined) g.Bun.gc(true);
  else g.gc?.();
}

/** The median and 99th percentile of mean ns per lookup over batches of 1,000. */
function timeLookups(
  lookup: (i: number) => number,
  addresses: number,
): { p50: number; p99: number } {
  const batch = 1000;
  const means: number[] = [];
  let sink = 0;
  for (let start = 0; start + batch <= addresses; start += batch) {
    const t = performance.now();
    for (let i = start; i < start + batch; i++) sink += lookup(i);
    means.push(((performance.now() - t) * 1e6) / batch);
  }
  if (sink === -1) console.error(sink); // Keeps the loop from being optimised away.
  means.sort((a, b) => a - b);
  return {
    p50: means[Math.floor(means.length / 2)]!,
    p99: means[Math.floor(means.length * 0.99)]!,
  };
}

export function child(files: string[], repeats: number): ChildResult {
  const specs = files.map((file) => ({ kind: "block" as const, file, score: 0 }));
  collect();
  const before = process.memoryUsage.rss();
  const loadMs: number[] = [];
  let db = loadDatabase(specs, { generation: 1 });
  for (let r = 0; r < repeats; r++) {
    db = undefined as never;
    collect();
    const t = performance.now();
    db = loadDatabase(specs, { generation: 1 });
    loadMs.push(performance.now() - t);
  }
  collect();
  const rssAddedBytes = process.memoryUsage.rss() - before;
  const table = new IpTable(db.table);
  const random = generator(7);
  const count = 2_000_000;
  const v4 = new Uint32Array(count);
  for (let i = 0; i < count; i++) v4[i] = Math.floor(random() * 2 ** 32);
  const v6 = new Uint32Array(count * 2);
  for (let i = 0; i < count * 2; i++) v6[i] = Math.floor(random() * 2 ** 32);
  // Warm up, then measure.
  timeLookups((i) => table.v4(v4[i]!), count);
  const v4Ns = timeLookups((i) => table.v4(v4[i]!), count);
  const v6Lookup = (i: number) =>
    table.v6(0x20000000 | (v6[2 * i]! & 0x1fffffff), v6[2 * i + 1]!, v6[i]!, 1);
  timeLookups(v6Lookup, count);
  const v6Ns = timeLookups(v6Lookup, count);
  return { loadMs, rssAddedBytes, v4Ns, v6Ns, intervals: table.intervals };
}

if (import.meta.main) {
  const [files, repeats] = process.argv.slice(2);
  console.log(JSON.stringify(child(files!.split(","), Number(repeats ?? 3))));
}
