import { test } from "node:test";
import assert from "node:assert/strict";
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from "../lib/spop.ts";
import { hex, toHex } from "./_hex.ts";

/** Parses with parseIPv6 into a fresh buffer; undefined when refused. */
function v6(text: string): Uint8Array | undefined {
  const out = new Uint8Array(16);
  return parseIPv6(text, out, 0) ? out : undefined;
}

function v4(text: string): Uint8Array | undefined {
  const out = new Uint8Array(4);
  return parseIPv4(text, out, 0) ? out : undefined;
}

test("formatIPv4() formats 4 bytes at an offset as a dotted quad", () => {
  assert.equal(formatIPv4(hex("c0 a8 01 0a"), 0), "192.168.1.10");
  assert.equal(formatIPv4(hex("ff 00 00 00 00 ff ff"), 3), "0.0.255.255");
  assert.equal(formatIPv4(hex("ff ff ff ff"), 0), "255.255.255.255");
  assert.equal(formatIPv4(hex("00 00 00 00"), 0), "0.0.0.0");
});

test("formatIPv6() writes lower-case groups without leading zeros", () => {
  assert.equal(
    formatIPv6(hex("20 01 0d b8 ab cd 00 12 0a 0b 0c 0d 0e 0f 10 11"), 0),
    "2001:db8:abcd:12:a0b:c0d:e0f:1011",
  );
  assert.equal(
    formatIPv6(hex("ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff"), 0),
    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
  );
});

test("formatIPv6() compresses the longest zero run", () => {
  const cases: [string, string][] = [
    ["20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01", "2001:db8::1"],
    ["20 01 0d b8 00 00 00 01 00 00 00 00 00 00 00 01", "2001:db8:0:1::1"],
    ["20 01 00 00 00 00 0d b8 00 00 00 00 00 00 00 01", "2001:0:0:db8::1"],
    ["00 01 00 00 00 00 00 02 00 00 00 00 00 00 00 03", "1:0:0:2::3"],
    ["00 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00", "1::"],
    ["00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01", "::1"],
    ["00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00", "::"],
    ["00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00", "0:1::"],
    ["00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 00", "0:0:0:1::"],
  ];
  for (const [bytes, text] of cases) assert.equal(formatIPv6(hex(bytes), 0), text, bytes);
});

test("formatIPv6() compresses the first zero run on a tie", () => {
  assert.equal(
    formatIPv6(hex("20 01 0d b8 00 00 00 00 00 01 00 00 00 00 00 01"), 0),
    "2001:db8::1:0:0:1",
  );
  assert.equal(
    formatIPv6(hex("00 00 00 00 00 01 00 01 00 00 00 00 00 01 00 01"), 0),
    "::1:1:0:0:1:1",
  );
});

test("formatIPv6() does not compress a single zero group", () => {
  assert.equal(
    formatIPv6(hex("20 01 0d b8 00 00 00 01 00 01 00 01 00 01 00 01"), 0),
    "2001:db8:0:1:1:1:1:1",
  );
  assert.equal(
    formatIPv6(hex("00 00 00 01 00 02 00 03 00 04 00 05 00 06 00 07"), 0),
    "0:1:2:3:4:5:6:7",
  );
  assert.equal(
    formatIPv6(hex("00 01 00 02 00 03 00 04 00 05 00 06 00 07 00 00"), 0),
    "1:2:3:4:5:6:7:0",
  );
});

test("formatIPv6() writes IPv4-mapped addresses in dotted form", () => {
  assert.equal(
    formatIPv6(hex("00 00 00 00 00 00 00 00 00 00 ff ff c0 00 02 01"), 0),
    "::ffff:192.0.2.1",
  );
  assert.equal(
    formatIPv6(hex("00 00 00 00 00 00 00 00 00 00 ff ff 00 00 00 00"), 0),
    "::ffff:0.0.0.0",
  );
  // Only ::ffff:0:0/96 is mapped; a neighbour is plain hex.
  assert.equal(
    formatIPv6(hex("00 00 00 00 00 00 00 00 00 01 ff ff c0 00 02 01"), 0),
    "::1:ffff:c000:201",
  );
});

test("formatIPv6() reads 16 bytes at an offset", () => {
  const buf = hex("aa bb 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01 cc");
  assert.equal(formatIPv6(buf, 2), "2001:db8::1");
});

test("parseIPv4() parses dotted quads at an offset", () => {
  const out = hex("ee ee ee ee ee ee");
  assert.equal(parseIPv4("192.168.1.10", out, 1), true);
  assert.equal(toHex(out), "ee c0 a8 01 0a ee");
  assert.equal(toHex(v4("0.0.0.0")!), "00 00 00 00");
  assert.equal(toHex(v4("255.255.255.255")!), "ff ff ff ff");
  assert.equal(toHex(v4("10.0.100.9")!), "0a 00 64 09");
});

test("parseIPv4() rejects malformed text", () => {
  const bad = [
    "01.2.3.4",
    "1.2.3.00",
    "1.02.3.4",
    "256.0.0.1",
    "1.2.3.999",
    "1.2.3.1000",
    "1.2.3",
    "1.2.3.4.5",
    "1..3.4",
    ".1.2.3",
    "1.2.3.",
    "",
    "a.b.c.d",
    "1.2.3.0x4",
    "1.2.3.-4",
    "1.2.3.+4",
    " 1.2.3.4",
    "1.2.3.4 ",
    "1.2.3.4e0",
    "1.2.3.٤",
    "::1",
  ];
  for (const text of bad) assert.equal(v4(text), undefined, JSON.stringify(text));
});

test("parseIPv4() leaves out untouched on failure", () => {
  for (const text of ["01.2.3.4", "1.2.3.256", "1.2.3", "1.2.3.x"]) {
    const out = hex("ee ee ee ee ee ee");
    assert.equal(parseIPv4(text, out, 1), false);
    assert.equal(toHex(out), "ee ee ee ee ee ee", text);
  }
});

test("parseIPv6() parses :: forms, full groups and dotted tails", () => {
  const cases: [string, string][] = [
    ["::", "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"],
    ["::1", "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01"],
    ["1::", "00 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00"],
    ["2001:db8::1", "20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01"],
    ["1:2:3:4:5:6:7:8", "00 01 00 02 00 03 00 04 00 05 00 06 00 07 00 08"],
    ["2001:0DB8:ABCD:0012:0000:0000:0000:0001", "20 01 0d b8 ab cd 00 12 00 00 00 00 00 00 00 01"],
    ["1:2:3:4::5:6:7", "00 01 00 02 00 03 00 04 00 00 00 05 00 06 00 07"],
    ["::ffff:1.2.3.4", "00 00 00 00 00 00 00 00 00 00 ff ff 01 02 03 04"],
    ["64:ff9b::1.2.3.4", "00 64 ff 9b 00 00 00 00 00 00 00 00 01 02 03 04"],
    ["::1.2.3.4", "00 00 00 00 00 00 00 00 00 00 00 00 01 02 03 04"],
    ["1:2:3:4:5:6:1.2.3.4", "00 01 00 02 00 03 00 04 00 05 00 06 01 02 03 04"],
  ];
  for (const [text, bytes] of cases) assert.equal(toHex(v6(text) ?? new Uint8Array()), bytes, text);
});

test("parseIPv6() writes 16 bytes at an offset", () => {
  const out = new Uint8Array(18).fill(0xee);
  assert.equal(parseIPv6("::1", out, 1), true);
  assert.equal(toHex(out), "ee 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 ee");
});

test("parseIPv6() rejects malformed text", () => {
  const bad = [
    "",
    ":",
    ":::",
    "1::2::3",
    "::1::",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:8::",
    "::1:2:3:4:5:6:7:8",
    "1:2:3:4::5:6:7:8",
    "12345::",
    "::10000",
    "1:2:3:4:5:6:7:g",
    ":1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:",
    "1::2:",
    "1.2.3.4::",
    "1.2.3.4:1::",
    "::1.2.3.4:1",
    "1:2:3:4:5:6:7:1.2.3.4",
    "1:2:3:4:5:1.2.3.4",
    "::1.2.3",
    "::1.2.3.256",
    "::01.2.3.4",
    "1.2.3.4",
    "fe80::1%eth0",
    "fe80::1%1",
    "[::1]",
    " ::1",
    "::1 ",
    "::+1",
    "::0x1",
  ];
  for (const text of bad) assert.equal(v6(text), undefined, JSON.stringify(text));
});

test("parseIPv6() leaves out untouched on failure", () => {
  for (const text of ["1::2::3", "1:2:3:4:5:6:7:8:9", "::1.2.3.256", "fe80::1%eth0", "12345::"]) {
    const out = new Uint8Array(18).fill(0xee);
    assert.equal(parseIPv6(text, out, 1), false);
    assert.ok(out.every((b) => b === 0xee), text);
  }
});

test("parseIPv4() then formatIPv4() round-trips canonical text", () => {
  for (const text of ["0.0.0.0", "1.2.3.4", "10.20.30.40", "127.0.0.1", "255.255.255.255"]) {
    assert.equal(formatIPv4(v4(text)!, 0), text);
  }
});

test("parseIPv6() then formatIPv6() round-trips canonical text", () => {
  const canonical = [
    "::",
    "::1",
    "1::",
    "2001:db8::1",
    "2001:db8:0:1:1:1:1:1",
    "2001:db8::1:0:0:1",
    "fe80::1:2:3:4",
    "1:2:3:4:5:6:7:8",
    "::ffff:192.0.2.1",
    "64:ff9b::102:304",
    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
  ];
  for (const text of canonical) assert.equal(formatIPv6(v6(text)!, 0), text);
});

test("parseIPv6() then formatIPv6() gives RFC 5952 text for other notations", () => {
  const cases: [string, string][] = [
    ["2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
    ["0:0:0:0:0:0:0:0", "::"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["1:2:3:4::5:6:7", "1:2:3:4:0:5:6:7"],
    ["::ffff:c000:0201", "::ffff:192.0.2.1"],
    ["0:0:0:0:0:FFFF:1.2.3.4", "::ffff:1.2.3.4"],
  ];
  for (const [text, expected] of cases) assert.equal(formatIPv6(v6(text)!, 0), expected, text);
});

test("formatIPv6() then parseIPv6() round-trips every pattern of zero groups", () => {
  // Every way of zeroing groups in an address of 8 non-zero groups.
  for (let mask = 0; mask < 256; mask++) {
    const bytes = new Uint8Array(16);
    for (let g = 0; g < 8; g++) if (mask & (1 << g)) bytes[g * 2 + 1] = g + 1;
    const text = formatIPv6(bytes, 0);
    assert.equal(toHex(v6(text) ?? new Uint8Array()), toHex(bytes), text);
  }
});
