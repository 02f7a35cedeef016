/**
 * Text forms of the IPV4 and IPV6 data types (`../shared/docs/spop.md` §2.2):
 * 4 or 16 bytes in network order on the wire. Formatting follows RFC 5952
 * (lower case, longest zero run as `::`, IPv4-mapped addresses in dotted form).
 *
 * @module
 */

/**
 * Formats the 4 bytes at `off` as a dotted quad.
 *
 * @param buf The bytes.
 * @param off Offset of the first byte.
 * @returns For example `"192.168.1.10"`.
 */
export function formatIPv4(buf: Uint8Array, off: number): string {
  return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
}

/**
 * Formats the 16 bytes at `off` as RFC 5952 text.
 *
 * @param buf The bytes.
 * @param off Offset of the first byte.
 * @returns For example `"2001:db8::1"` or `"::ffff:192.0.2.1"`.
 */
export function formatIPv6(buf: Uint8Array, off: number): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((buf[off + i]! << 8) | buf[off + i + 1]!);
  const mapped = groups[5] === 0xffff && groups.slice(0, 5).every((g) => g === 0);
  if (mapped) return `::ffff:${formatIPv4(buf, off + 12)}`;
  // The longest run of two or more zero groups becomes "::" (the first on a tie).
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  const head = hex.slice(0, bestStart).join(":");
  const tail = hex.slice(bestStart + bestLen).join(":");
  return `${head}::${tail}`;
}

const DECIMAL_OCTET = /^(?:0|[1-9][0-9]{0,2})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/**
 * Parses a dotted quad into 4 bytes at `off`.
 *
 * @param text For example `"10.0.0.1"`; no leading zeros.
 * @param out Where the bytes go.
 * @param off Offset of the first byte.
 * @returns `false` (and leaves `out` alone) when `text` is not an IPv4 address.
 */
export function parseIPv4(text: string, out: Uint8Array, off: number): boolean {
  const parts = text.split(".");
  if (parts.length !== 4) return false;
  const bytes: number[] = [];
  for (const part of parts) {
    if (!DECIMAL_OCTET.test(part)) return false;
    const n = Number(part);
    if (n > 255) return false;
    bytes.push(n);
  }
  out.set(bytes, off);
  return true;
}

/**
 * Parses RFC 4291 text (with `::` and a dotted IPv4 tail) into 16 bytes at
 * `off`. Zone ids (`%eth0`) are not addresses and are refused.
 *
 * @param text For example `"2001:db8::1"`.
 * @param out Where the bytes go.
 * @param off Offset of the first byte.
 * @returns `false` (and leaves `out` alone) when `text` is not an IPv6 address.
 */
export function parseIPv6(text: string, out: Uint8Array, off: number): boolean {
  const halves = text.split("::");
  if (halves.length > 2) return false;
  const head = groupsOf(halves[0]!);
  const tail = halves.length === 2 ? groupsOf(halves[1]!) : [];
  if (head === null || tail === null) return false;
  // A dotted IPv4 tail is only allowed at the very end, never before "::".
  if (halves.length === 2 && head.includes(-1)) return false;
  const count = head.length + tail.length;
  if (halves.length === 2 ? count > 7 : count !== 8) return false;
  const groups = [...head, ...new Array<number>(8 - count).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    const g = groups[i]!;
    if (g === -1) {
      // Two placeholder slots stand for the dotted tail, parsed below.
      continue;
    }
    bytes[i * 2] = g >> 8;
    bytes[i * 2 + 1] = g & 0xff;
  }
  const last = (halves.length === 2 ? halves[1]! : halves[0]!).split(":").at(-1)!;
  if (last.includes(".") && !parseIPv4(last, bytes, 12)) return false;
  out.set(bytes, off);
  return true;
}

/** Hex groups of one side of "::"; a dotted tail counts as two groups (-1, -1). */
function groupsOf(side: string): number[] | null {
  if (side === "") return [];
  const groups: number[] = [];
  const parts = side.split(":");
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (HEX_GROUP.test(part)) {
      groups.push(parseInt(part, 16));
    } else if (i === parts.length - 1 && part.includes(".")) {
      groups.push(-1, -1);
    } else {
      return null;
    }
  }
  return groups;
}
