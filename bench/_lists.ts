/**
 * Synthetic IP-reputation lists for the benchmarks: IPv4 and IPv6 CIDRs at
 * random (a fixed seed), with prefix lengths mixed as in public block lists
 * (mostly host routes and /24s, some wider), written as FireHOL-style netsets.
 *
 * @module
 */

import { writeFileSync } from "node:fs";
import path from "node:path";

/** A deterministic generator of numbers in [0, 1). */
export function generator(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    s ^= s >>> 12;
    return (Math.imul(s, 0x297a2d39) >>> 0) / 2 ** 32;
  };
}

/** A prefix length as public lists have them: 60 % /32, 30 % /24, 10 % /16 to /23. */
function v4Prefix(random: () => number): number {
  const r = random();
  return r < 0.6 ? 32 : r < 0.9 ? 24 : 16 + Math.floor(random() * 8);
}

/**
 * Writes the lists.
 *
 * @param dir Where.
 * @param v4 How many IPv4 CIDRs.
 * @param v6 How many IPv6 CIDRs.
 * @returns The files: IPv4 list, IPv6 list.
 */
export function writeLists(dir: string, v4 = 1_000_000, v6 = 100_000): [string, string] {
  const random = generator(2026);
  const lines: string[] = ["# synthetic IPv4 block list"];
  for (let i = 0; i < v4; i++) {
    const a = Math.floor(random() * 2 ** 32);
    const p = v4Prefix(random);
    lines.push(`${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}/${p}`);
  }
  const v4File = path.join(dir, "block-v4.netset");
  writeFileSync(v4File, lines.join("\n") + "\n");
  const hex = () => Math.floor(random() * 65536).toString(16);
  const six: string[] = ["# synthetic IPv6 block list"];
  for (let i = 0; i < v6; i++) {
    // Global unicast (2000::/3), /32 to /64 as providers' and customers' blocks are.
    const first = (0x2000 + Math.floor(random() * 0x2000)).toString(16);
    six.push(`${first}:${hex()}:${hex()}:${hex()}::/${32 + Math.floor(random() * 33)}`);
  }
  const v6File = path.join(dir, "block-v6.netset");
  writeFileSync(v6File, six.join("\n") + "\n");
  return [v4File, v6File];
}
