import { test } from "node:test";
import assert from "node:assert/strict";
import { ListError, parseList } from "../lib/iprep/formats.ts";
import { NO_SCORE } from "../lib/iprep/entries.ts";
import { ipv4Text, ipv6Text } from "../lib/iprep/_addr.ts";

const encoder = new TextEncoder();

/** Each entry as `first-last score @line`, IPv4 then IPv6. */
function read(text: string | Uint8Array): { format: string | undefined; entries: string[] } {
  const bytes = typeof text === "string" ? encoder.encode(text) : text;
  const { format, entries } = parseList(bytes, "list.txt");
  const e = entries.data();
  const out: string[] = [];
  const score = (s: number) => (s === NO_SCORE ? "-" : String(s));
  for (let i = 0; i < e.v4Count; i++) {
    out.push(
      `${ipv4Text(e.v4First[i]!)}-${ipv4Text(e.v4Last[i]!)} ${score(e.v4Score[i]!)} @${
        e.v4Line[i]
      }`,
    );
  }
  for (let i = 0; i < e.v6Count; i++) {
    out.push(
      `${ipv6Text(e.v6First, i * 4)}-${ipv6Text(e.v6Last, i * 4)} ${score(e.v6Score[i]!)} @${
        e.v6Line[i]
      }`,
    );
  }
  return { format, entries: out };
}

function refuses(text: string, message: string): void {
  assert.throws(() => parseList(encoder.encode(text), "list.txt"), (err: unknown) => {
    assert.ok(err instanceof ListError, String(err));
    assert.equal(err.message, message);
    return true;
  });
}

test("parseList() reads a FireHOL netset: comments, addresses and CIDRs", () => {
  const { format, entries } = read(
    "#\n# firehol_level1\n#\n\n1.0.0.0/24\n2.56.192.0/22\n5.188.10.7\n\n",
  );
  assert.equal(format, "plain");
  assert.deepEqual(entries, [
    "1.0.0.0-1.0.0.255 - @5",
    "2.56.192.0-2.56.195.255 - @6",
    "5.188.10.7-5.188.10.7 - @7",
  ]);
});

test("parseList() reads Spamhaus DROP text, ignoring what follows the CIDR", () => {
  const { format, entries } = read(
    "; Spamhaus DROP List 2026/12/06\n; Last-Modified: x\n1.10.16.0/20 ; SBL256894\n" +
      "2a06:e480::/29 ; SBL301771\n",
  );
  assert.equal(format, "plain");
  assert.deepEqual(entries, [
    "1.10.16.0-1.10.31.255 - @3",
    "2a06:e480::-2a06:e487:ffff:ffff:ffff:ffff:ffff:ffff - @4",
  ]);
});

test("parseList() reads Spamhaus DROP NDJSON and skips its metadata line", () => {
  const { format, entries } = read(
    '{"cidr":"1.10.16.0/20","sblid":"SBL256894","rir":"apnic"}\n' +
      '{"cidr":"2001:db8::/32","sblid":"SBL1","rir":"ripencc"}\n' +
      '{"type":"metadata","timestamp":1796572727,"size":2,"records":2}\n',
  );
  assert.equal(format, "json");
  assert.deepEqual(entries, [
    "1.10.16.0-1.10.31.255 - @1",
    "2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff - @2",
  ]);
});

test("parseList() reads ranges: dotted, decimal, quoted, with or without a score", () => {
  const { format, entries } = read(
    '"16777216","16777471","AU","Australia"\n' +
      "1.0.4.0,1.0.7.255,30\n" +
      "1.0.8.0 , 1.0.8.9\n" +
      "281470698520576,281470698520831\n" +
      "2001:db8::1,2001:db8::ff,90\n",
  );
  assert.equal(format, "ranges");
  assert.deepEqual(entries, [
    "1.0.0.0-1.0.0.255 - @1",
    "1.0.4.0-1.0.7.255 30 @2",
    "1.0.8.0-1.0.8.9 - @3",
    // 281470698520576 is ::ffff:1.0.0.0, an IPv4-mapped address: stored as IPv4.
    "1.0.0.0-1.0.0.255 - @4",
    "2001:db8::1-2001:db8::ff 90 @5",
  ]);
});

test("parseList() reads scored lines, where each entry's score is its own", () => {
  const { format, entries } = read("10.0.0.0/8 40\n10.1.0.0/16\t5 # noisy\n::1 100\n");
  assert.equal(format, "scored");
  assert.deepEqual(entries, [
    "10.0.0.0-10.255.255.255 40 @1",
    "10.1.0.0-10.1.255.255 5 @2",
    "::1-::1 100 @3",
  ]);
});

test("parseList() takes CRLF lines, a byte-order mark and host bits in a CIDR", () => {
  const bytes = new Uint8Array([0xef, 0xbb, 0xbf, ...encoder.encode("10.1.2.3/8\r\n::1/0\r\n")]);
  assert.deepEqual(read(bytes).entries, [
    "10.0.0.0-10.255.255.255 - @1",
    // ::/0 holds the IPv4-mapped addresses too, which are looked up as IPv4.
    "0.0.0.0-255.255.255.255 - @2",
    "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff - @2",
  ]);
});

test("parseList() stores IPv4-mapped IPv6 entries as IPv4, and splits entries that cover them", () => {
  assert.deepEqual(read("::ffff:192.0.2.0/120\n::ffff:0:0/95\n").entries, [
    "192.0.2.0-192.0.2.255 - @1",
    "0.0.0.0-255.255.255.255 - @2",
    "::fffe:0:0-::ffff:255.255.255.255 - @2",
  ]);
});

test("parseList() gives an empty file, or one of comments, no entries", () => {
  assert.deepEqual(read(""), { format: undefined, entries: [] });
  assert.deepEqual(read("# nothing\n; here\n// either\n\n"), { format: undefined, entries: [] });
});

test("parseList() names the file and line of an address it cannot read", () => {
  refuses("1.2.3.4\n1.2.3\n", 'list.txt:2: "1.2.3" is not an IPv4 or IPv6 address or CIDR');
  refuses("1.2.3.4\n256.1.1.1\n", 'list.txt:2: "256.1.1.1" is not an IPv4 or IPv6 address or CIDR');
  refuses("1.2.3.4\n1.2.3.4/33\n", 'list.txt:2: "1.2.3.4/33" has a prefix length outside 0..32');
  refuses("::1\n::1/129\n", 'list.txt:2: "::1/129" has a prefix length outside 0..128');
  refuses("1.2.3.4\n1.2.3.4/\n", 'list.txt:2: "1.2.3.4/" has a prefix length outside 0..32');
  refuses(
    "::1\n1:2:3:4:5:6:7:8:9\n",
    'list.txt:2: "1:2:3:4:5:6:7:8:9" is not an IPv4 or IPv6 address or CIDR',
  );
  refuses("::1\n1::2::3\n", 'list.txt:2: "1::2::3" is not an IPv4 or IPv6 address or CIDR');
  refuses(
    "::1\nfe80::1%eth0\n",
    'list.txt:2: "fe80::1%eth0" is not an IPv4 or IPv6 address or CIDR',
  );
  refuses("# a\nexample.com\n", 'list.txt:2: "example.com" is not an IPv4 or IPv6 address or CIDR');
});

test("parseList() refuses a scored line with a bad score or a missing one", () => {
  refuses(
    "10.0.0.0/8 40\n10.1.0.0/16 101\n",
    'list.txt:2: score "101" is not an integer from 0 to 100',
  );
  refuses(
    "10.0.0.0/8 40\n10.1.0.0/16\n",
    'list.txt:2: expected "ADDRESS SCORE" (the format of this file\'s first entry)',
  );
  refuses(
    "10.0.0.0/8 40\n10.1.0.0/16 4 0\n",
    'list.txt:2: expected "ADDRESS SCORE" (the format of this file\'s first entry)',
  );
});

test("parseList() refuses bad ranges, naming the line", () => {
  refuses(
    "1.0.0.0,1.0.0.9\n1.0.0.9,1.0.0.0\n",
    "list.txt:2: a range's first address is after its last",
  );
  refuses(
    "1.0.0.0,1.0.0.9\n1.0.0.0,::1\n",
    "list.txt:2: a range's first and last addresses must be both IPv4 or both IPv6",
  );
  refuses(
    "1.0.0.0,1.0.0.9\n1.0.0.0\n",
    'list.txt:2: expected "FIRST,LAST[,SCORE]" (the format of this file)',
  );
  refuses(
    "1.0.0.0,1.0.0.9\n1.0.0.0,1.0.0.9,200\n",
    'list.txt:2: score "200" is not an integer from 0 to 100',
  );
  refuses('1.0.0.0,1.0.0.9\n"1.0.0.0,1.0.0.9\n', "list.txt:2: a quoted field has no closing quote");
  refuses(
    "1,2\n1,340282366920938463463374607431768211456\n",
    'list.txt:2: "340282366920938463463374607431768211456" is above the largest IPv6 address',
  );
  refuses("1.0.0.0,1.0.0.9\nx,1.0.0.9\n", 'list.txt:2: "x" is not an IPv4 or IPv6 address');
});

test("parseList() refuses JSON lines that are not objects with a cidr", () => {
  refuses(
    '{"cidr":"10.0.0.0/8"}\n{"cidr":\n',
    "list.txt:2: not a JSON object (the format of this file's first entry)",
  );
  refuses(
    '{"cidr":"10.0.0.0/8"}\n{"sblid":"SBL1"}\n',
    'list.txt:2: a JSON line without a "cidr" string',
  );
  refuses(
    '{"cidr":"10.0.0.0/8"}\n{"cidr":"10.0.0.0/40"}\n',
    'list.txt:2: "10.0.0.0/40" has a prefix length outside 0..32',
  );
  refuses(
    '{"cidr":"10.0.0.0/8"}\n[1]\n',
    "list.txt:2: not a JSON object (the format of this file's first entry)",
  );
});

test("parseList() reads a list a byte at a time the same as whole (line ends anywhere)", () => {
  const text = "10.0.0.0/8\n\n 192.0.2.1 # x\n2001:db8::/48\n";
  const whole = read(text).entries;
  // The same content with every line ending style and trailing blanks.
  assert.deepEqual(read(text.replaceAll("\n", "\r\n")).entries, whole);
  assert.deepEqual(read(text.replaceAll("\n", " \t\n")).entries, whole);
  assert.deepEqual(read(text.trimEnd()).entries, whole);
});
