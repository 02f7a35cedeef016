import { test } from "node:test";
import assert from "node:assert/strict";
import { parseList } from "../lib/iprep/formats.ts";
import { NO_SCORE } from "../lib/iprep/entries.ts";
import { buildTable, IpTable, type ListSource, UNLISTED } from "../lib/iprep/table.ts";
import { parseIPv4, parseIPv6 } from "../lib/spop.ts";

const encoder = new TextEncoder();

function list(kind: "block" | "allow", score: number, text: string): ListSource {
  return { kind, score, entries: parseList(encoder.encode(text), `${kind}.txt`).entries.data() };
}

function tableOf(...lists: ListSource[]): IpTable {
  return new IpTable(buildTable(lists));
}

/** The score of an address in text form. */
function score(table: IpTable, address: string): number {
  const bytes = new Uint8Array(16);
  if (parseIPv4(address, bytes, 0)) return table.bytes(bytes, 4);
  assert.ok(parseIPv6(address, bytes, 0), `bad test address ${address}`);
  return table.bytes(bytes, 16);
}

test("IpTable gives block scores, allow scores and UNLISTED", () => {
  const table = tableOf(
    list("block", 0, "192.0.2.0/24\n2001:db8::/32\n"),
    list("allow", 100, "192.0.2.7\n"),
  );
  assert.equal(score(table, "192.0.2.1"), 0);
  assert.equal(score(table, "192.0.2.7"), 100);
  assert.equal(score(table, "192.0.3.1"), UNLISTED);
  assert.equal(score(table, "2001:db8:1::5"), 0);
  assert.equal(score(table, "2001:db9::"), UNLISTED);
});

test("IpTable scores the first and last address of a prefix and not their neighbours", () => {
  const table = tableOf(list("block", 10, "10.1.0.0/16\n2001:db8:4::/48\n"));
  assert.equal(score(table, "10.0.255.255"), UNLISTED);
  assert.equal(score(table, "10.1.0.0"), 10);
  assert.equal(score(table, "10.1.255.255"), 10);
  assert.equal(score(table, "10.2.0.0"), UNLISTED);
  assert.equal(score(table, "2001:db8:3:ffff:ffff:ffff:ffff:ffff"), UNLISTED);
  assert.equal(score(table, "2001:db8:4::"), 10);
  assert.equal(score(table, "2001:db8:4:ffff:ffff:ffff:ffff:ffff"), 10);
  assert.equal(score(table, "2001:db8:5::"), UNLISTED);
});

test("IpTable handles host routes, /0 and the ends of the address space", () => {
  const table = tableOf(
    list("block", 40, "0.0.0.0/0\n::/0\n"),
    list(
      "block",
      5,
      "0.0.0.0/32\n255.255.255.255/32\n::/128\nffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff\n",
    ),
  );
  assert.equal(score(table, "0.0.0.0"), 5);
  assert.equal(score(table, "0.0.0.1"), 40);
  assert.equal(score(table, "255.255.255.254"), 40);
  assert.equal(score(table, "255.255.255.255"), 5);
  assert.equal(score(table, "::"), 5);
  assert.equal(score(table, "::1"), 40);
  assert.equal(score(table, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 5);
  assert.equal(score(table, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"), 40);
});

test("IpTable lets the most specific entry of one list decide, nested or adjacent", () => {
  const table = tableOf(
    list(
      "block",
      0,
      "10.0.0.0/8 30\n10.1.0.0/16 60\n10.1.2.0/24 20\n10.1.3.0/24 20\n10.1.2.9 90\n",
    ),
  );
  assert.equal(score(table, "10.9.9.9"), 30);
  assert.equal(score(table, "10.1.9.9"), 60);
  assert.equal(score(table, "10.1.2.8"), 20);
  assert.equal(score(table, "10.1.2.9"), 90);
  assert.equal(score(table, "10.1.2.10"), 20);
  assert.equal(score(table, "10.1.3.255"), 20);
  assert.equal(score(table, "10.1.4.0"), 60);
  assert.equal(score(table, "10.2.0.0"), 30);
});

test("IpTable takes the lowest block score across lists and the highest allow score", () => {
  const table = tableOf(
    list("block", 30, "198.51.100.0/24\n"),
    list("block", 10, "198.51.100.0/25\n"),
    list("allow", 80, "198.51.100.64/26\n"),
    list("allow", 95, "198.51.100.96/27\n"),
  );
  assert.equal(score(table, "198.51.100.1"), 10);
  assert.equal(score(table, "198.51.100.129"), 30);
  assert.equal(score(table, "198.51.100.65"), 80);
  assert.equal(score(table, "198.51.100.100"), 95);
});

test("IpTable looks IPv4-mapped IPv6 addresses up as IPv4, and lists may hold them", () => {
  const table = tableOf(list("block", 0, "192.0.2.0/24\n::ffff:198.51.100.0/120\n"));
  assert.equal(score(table, "::ffff:192.0.2.200"), 0);
  assert.equal(score(table, "198.51.100.3"), 0);
  assert.equal(score(table, "::ffff:198.51.100.3"), 0);
  assert.equal(score(table, "::ffff:198.51.101.3"), UNLISTED);
  assert.equal(score(table, "::192.0.2.1"), UNLISTED, "IPv4-compatible is not mapped");
});

test("IpTable scores the first and last address of a range", () => {
  const table = tableOf(list("block", 0, "10.0.0.5,10.0.0.9,15\n167772200,167772210\n"));
  assert.equal(score(table, "10.0.0.4"), UNLISTED);
  assert.equal(score(table, "10.0.0.5"), 15);
  assert.equal(score(table, "10.0.0.9"), 15);
  assert.equal(score(table, "10.0.0.10"), UNLISTED);
  assert.equal(score(table, "10.0.0.40"), 0);
  assert.equal(score(table, "10.0.0.50"), 0);
  assert.equal(score(table, "10.0.0.51"), UNLISTED);
});

test("IpTable with no lists, or empty ones, has every address unlisted", () => {
  const table = tableOf();
  assert.equal(score(table, "1.2.3.4"), UNLISTED);
  assert.equal(score(table, "2001:db8::1"), UNLISTED);
  assert.deepEqual(table.intervals, [1, 1]);
});

/** A deterministic generator for the randomized comparison. */
function generator(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

test("IpTable agrees with a plain reading of the rules on random overlapping lists", () => {
  const random = generator(42);
  interface Entry {
    first: number;
    last: number;
    score: number;
  }
  for (let round = 0; round < 30; round++) {
    // Within one /16, then across the boundary of two (10.1.0.0).
    const region = round % 2 === 0 ? 0x0a000000 : 0x0a00fe00;
    const sources: ListSource[] = [];
    const plain: { kind: "block" | "allow"; entries: Entry[] }[] = [];
    const listCount = 1 + Math.floor(random() * 4);
    for (let l = 0; l < listCount; l++) {
      const kind = random() < 0.3 ? "allow" : "block";
      const listScore = Math.floor(random() * 101);
      const lines: string[] = [];
      const entries: Entry[] = [];
      for (let i = 0; i < 1 + random() * 30; i++) {
        // Addresses within 1,024 of each other, so that entries overlap often.
        const base = region + Math.floor(random() * 1024);
        const own = random() < 0.5 ? Math.floor(random() * 101) : NO_SCORE;
        let first: number;
        let last: number;
        if (random() < 0.5) {
          const prefix = 22 + Math.floor(random() * 11);
          const size = 2 ** (32 - prefix);
          first = base - (base % size);
          last = first + size - 1;
        } else {
          first = base;
          last = Math.min(base + Math.floor(random() * 200), region + 0x3ff);
        }
        const text = (n: number) => `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
        lines.push(`${text(first)},${text(last)}${own === NO_SCORE ? "" : `,${own}`}`);
        entries.push({ first, last, score: own === NO_SCORE ? listScore : own });
      }
      sources.push(list(kind, listScore, lines.join("\n")));
      plain.push({ kind, entries });
    }
    const table = tableOf(...sources);
    for (let a = region - 1; a <= region + 0x400; a++) {
      let allow = -1;
      let block = 256;
      for (const { kind, entries } of plain) {
        let best: Entry | undefined;
        for (const e of entries) {
          if (a < e.first || a > e.last) continue;
          const wider = best !== undefined && e.last - e.first > best.last - best.first;
          const same = best !== undefined && e.last - e.first === best.last - best.first;
          if (wider) continue;
          if (
            best === undefined || !same ||
            (kind === "block" ? e.score < best.score : e.score > best.score)
          ) best = e;
        }
        if (best === undefined) continue;
        if (kind === "allow") allow = Math.max(allow, best.score);
        else block = Math.min(block, best.score);
      }
      const expected = allow >= 0 ? allow : block <= 100 ? block : UNLISTED;
      assert.equal(table.v4(a), expected, `round ${round}, address ${a.toString(16)}`);
    }
  }
});
