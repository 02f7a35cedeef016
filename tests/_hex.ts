/**
 * Hex helpers for byte-exact tests.
 *
 * @module
 */

/**
 * Parses hex pairs, ignoring whitespace: `hex("00 00 00 07")`.
 *
 * @param text Hex digits, two per byte, with any spacing.
 * @returns The bytes.
 */
export function hex(text: string): Uint8Array {
  const digits = text.replace(/\s+/g, "");
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(digits)) throw new SyntaxError(`Cannot parse hex: "${text}"`);
  const out = new Uint8Array(digits.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(digits.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/**
 * Formats bytes as lower-case hex pairs separated by spaces.
 *
 * @param bytes The bytes.
 * @returns For example `"00 00 00 07"`.
 */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

/**
 * Hex of an ASCII string's bytes, for building expected frames readably.
 *
 * @param text ASCII text.
 * @returns Its bytes as hex pairs.
 */
export function ascii(text: string): string {
  return toHex(new TextEncoder().encode(text));
}
