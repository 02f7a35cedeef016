/**
 * What a handler reads: a {@linkcode Message} and its {@linkcode Arg}s.
 *
 * Both are handles onto state the session owns and reuses from NOTIFY to
 * NOTIFY (so that reading a message allocates nothing). A handle works only
 * while its NOTIFY is being handled: once the NOTIFY is acknowledged (or its
 * handler deadline passed, or the connection closed), every call on it throws
 * an `Error` saying so, so that code kept past its NOTIFY (a timer, a
 * callback, a value kept across an `await` of an `async` handler that
 * already settled) can never read another request's data.
 *
 * @module
 */

import { INTERNAL, lateUse } from "../spop/errors.ts";
import {
  Arg as ArgSlot,
  DataType,
  decodeText,
  formatIPv4,
  type MessageReader,
  type Value,
} from "../spop.ts";

const EMPTY = new Uint8Array(0);
/** A private copy buffer larger than this is dropped after use (memory does not ratchet). */
const KEEP_COPY_BYTES = 16 * 1024;

/**
 * The state behind a message handle: offsets into a read buffer, or into a
 * private copy once the handler went asynchronous. Internal.
 */
export class MessageSlot {
  buf: Uint8Array = EMPTY;
  nameStart = 0;
  nameEnd = 0;
  count = 0;
  /** The arguments (`count` of them; the array may be longer). */
  args: ArgSlot[] = [];
  #copy: Uint8Array = EMPTY;

  /**
   * Points the slot at the message a reader is on (no copy).
   *
   * @param reader A reader positioned on a message.
   * @param buf The bytes the reader reads.
   */
  load(reader: MessageReader, buf: Uint8Array): void {
    this.buf = buf;
    this.nameStart = reader.nameStart;
    this.nameEnd = reader.nameEnd;
    this.count = reader.argCount;
    this.args = reader.takeArgs(this.args);
  }

  /**
   * Copies the bytes the slot points at into its own buffer, so that it stays
   * valid after the read buffer is reused (for handlers that finish later).
   * The buffer is kept for the next use unless it grew large.
   */
  detach(): void {
    const old = this.buf;
    let lo = this.nameStart;
    let hi = this.nameEnd;
    for (let i = 0; i < this.count; i++) {
      const arg = this.args[i]!;
      lo = Math.min(lo, arg.nameStart, arg.start);
      hi = Math.max(hi, arg.nameEnd, arg.end);
    }
    const size = hi - lo;
    if (this.#copy.length < size) this.#copy = new Uint8Array(Math.max(size, 256));
    const copy = this.#copy;
    copy.set(old.subarray(lo, hi));
    this.buf = copy;
    this.nameStart -= lo;
    this.nameEnd -= lo;
    for (let i = 0; i < this.count; i++) {
      const arg = this.args[i]!;
      arg.buf = copy;
      arg.start -= lo;
      arg.end -= lo;
      arg.nameStart -= lo;
      arg.nameEnd -= lo;
    }
  }

  /** Ends a use of the slot, letting a copy buffer that grew large go. */
  release(): void {
    this.count = 0;
    if (this.#copy.length > KEEP_COPY_BYTES) {
      this.#copy = EMPTY;
      this.buf = EMPTY;
      for (const arg of this.args) arg.buf = EMPTY;
    }
  }

  /** The private copy buffer's size (0 until a handler went asynchronous). */
  get copyCapacity(): number {
    return this.#copy.length;
  }
}

/** Options of {@linkcode Message.ip}. */
export interface IpOptions {
  /**
   * Give an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, common behind
   * dual-stack binds) as the IPv4 address it maps (`10.0.0.1`).
   */
  unmapIPv4?: boolean;
}

/**
 * A message from HAProxy with its arguments. Arguments are read by position
 * (0 first) or by name (`args ip=src` names it `ip`; `args src` leaves it
 * unnamed). The typed getters return `undefined` when the argument is
 * missing or of another type.
 *
 * A message is valid while its NOTIFY is handled: in a plain handler's own
 * call, and for an `async` handler until its NOTIFY is acknowledged.
 * Afterwards every method throws (`Cannot read argument 0: its NOTIFY was already
 * acknowledged`).
 *
 * @example Read the arguments of `args ip=src host=req.hdr(host)`
 * ```ts
 * import type { Message } from "./message.ts";
 *
 * function describe(message: Message): string {
 *   const ip = message.ip("ip", { unmapIPv4: true }) ?? "?";
 *   const host = message.string("host") ?? "";
 *   return `${message.name}: ${ip} asks for ${host}`;
 * }
 * ```
 */
export class Message {
  #slot: MessageSlot | null = null;
  readonly #handles: Arg[] = [];

  /**
   * Arms a handle on its state, or seals it (internal).
   *
   * @ignore
   */
  [INTERNAL](slot: MessageSlot | null): void {
    this.#slot = slot;
    // Sealing the message seals the arguments it handed out.
    if (slot === null) {
      const handles = this.#handles;
      for (let i = 0; i < handles.length; i++) handles[i]![INTERNAL](null);
    }
  }

  /** The message name (the `spoe-message` section's). */
  get name(): string {
    const s = live(this.#slot, "read the message name");
    return decodeText(s.buf, s.nameStart, s.nameEnd);
  }

  /** How many arguments the message has. */
  get size(): number {
    return live(this.#slot, "read the message size").count;
  }

  /**
   * An argument with its type and value.
   *
   * @param key Position (0 first) or name.
   * @returns The argument, or `undefined` if there is none.
   */
  arg(key: number | string): Arg | undefined {
    const slot = this.#slot;
    if (slot === null) throw lateArg(key);
    const i = indexOf(slot, key);
    if (i < 0) return undefined;
    const handles = this.#handles;
    while (handles.length <= i) handles.push(new Arg());
    const handle = handles[i]!;
    handle[INTERNAL](slot.args[i]!);
    return handle;
  }

  /**
   * An IPv4 or IPv6 address argument in text form.
   *
   * @param key Position or name.
   * @param options `unmapIPv4: true` gives `::ffff:a.b.c.d` as `a.b.c.d`.
   * @returns E.g. `"192.168.1.10"` or `"2001:db8::1"`.
   */
  ip(key: number | string, options?: IpOptions): string | undefined {
    const a = argOf(this.#slot, key);
    if (a === undefined) return undefined;
    if (a.type === DataType.IPV6 && options?.unmapIPv4 && isMappedIPv4(a.buf, a.start)) {
      return formatIPv4(a.buf, a.start + 12);
    }
    return a.type === DataType.IPV4 || a.type === DataType.IPV6 ? a.text() : undefined;
  }

  /**
   * Copies an address argument's bytes (4 for IPv4, 16 for IPv6) into
   * `target`, without allocating: for lookups and hashes on the hot path.
   *
   * @param key Position or name.
   * @param target Where to copy; 16 bytes hold either kind.
   * @returns 4 or 16; 0 when the argument is missing or not an address.
   * @throws {RangeError} When `target` is too short for the address.
   */
  ipBytes(key: number | string, target: Uint8Array): number {
    const a = argOf(this.#slot, key);
    if (a === undefined || (a.type !== DataType.IPV4 && a.type !== DataType.IPV6)) return 0;
    return copyBytes(a, target, 0);
  }

  /**
   * An integer argument as a number (HAProxy sends integer samples as
   * INT64).
   *
   * @param key Position or name.
   * @returns The value; `undefined` beyond ±(2^53-1), where {@linkcode Message.bigint} reads it.
   */
  int(key: number | string): number | undefined {
    const a = argOf(this.#slot, key);
    if (a === undefined || a.type < DataType.INT32 || a.type > DataType.UINT64) return undefined;
    return typeof a.int === "number" ? a.int : undefined;
  }

  /**
   * An integer argument as a bigint, exact over the whole 64-bit range.
   *
   * @param key Position or name.
   * @returns The value.
   */
  bigint(key: number | string): bigint | undefined {
    const a = argOf(this.#slot, key);
    if (a === undefined || a.type < DataType.INT32 || a.type > DataType.UINT64) return undefined;
    return BigInt(a.int);
  }

  /**
   * A STRING argument.
   *
   * @param key Position or name.
   * @returns The text.
   */
  string(key: number | string): string | undefined {
    const a = argOf(this.#slot, key);
    return a?.type === DataType.STRING ? a.text() : undefined;
  }

  /**
   * A BINARY argument, as a copy.
   *
   * @param key Position or name.
   * @returns The bytes.
   */
  binary(key: number | string): Uint8Array | undefined {
    const a = argOf(this.#slot, key);
    return a?.type === DataType.BINARY ? a.bytes().slice() : undefined;
  }

  /**
   * A BOOL argument.
   *
   * @param key Position or name.
   * @returns The boolean.
   */
  boolean(key: number | string): boolean | undefined {
    const a = argOf(this.#slot, key);
    return a?.type === DataType.BOOL ? a.bool : undefined;
  }

  /**
   * Whether an argument is NULL (HAProxy sends NULL when a fetch fails).
   *
   * @param key Position or name.
   * @returns `true` for a NULL argument, `false` otherwise (also if missing).
   */
  isNull(key: number | string): boolean {
    return argOf(this.#slot, key)?.type === DataType.NULL;
  }
}

/**
 * One argument of a {@linkcode Message}: its type, name and value. Valid as
 * long as its message.
 */
export class Arg {
  #slot: ArgSlot | null = null;

  /**
   * Arms a handle on its state, or seals it (internal).
   *
   * @ignore
   */
  [INTERNAL](slot: ArgSlot | null): void {
    this.#slot = slot;
  }

  /** The SPOP type, e.g. `DataType.IPV4`. */
  get type(): DataType {
    return live(this.#slot, "read an argument's type").type;
  }

  /** The argument's name (`args ip=src` names it `ip`); `""` for an unnamed one. */
  get name(): string {
    return live(this.#slot, "read an argument's name").name();
  }

  /** The number of bytes of an IPV4, IPV6, STRING or BINARY value; 0 for other types. */
  get byteLength(): number {
    const a = live(this.#slot, "read an argument's length");
    return a.end - a.start;
  }

  /**
   * The value as text: STRING and BINARY as UTF-8, addresses in their usual
   * notation, numbers and booleans as JavaScript prints them, NULL as `""`.
   *
   * @returns A new string.
   */
  text(): string {
    return live(this.#slot, "read an argument").text();
  }

  /**
   * The value as a plain JavaScript value: `null`, a boolean, a number (a
   * bigint beyond 2^53-1), a string (STRING, and addresses as text), or a
   * copy of BINARY bytes.
   *
   * @returns A value that stays valid after the NOTIFY.
   */
  value(): Value {
    return live(this.#slot, "read an argument").value();
  }

  /**
   * A copy of the value's bytes (an address's 4 or 16, a STRING's or
   * BINARY's own); empty for other types.
   *
   * @returns New bytes, the caller's to keep.
   */
  bytes(): Uint8Array {
    return live(this.#slot, "read an argument").bytes().slice();
  }

  /**
   * Copies the value's bytes into `target` without allocating (for hot
   * paths: an address into a reused 16-byte buffer).
   *
   * @param target Where to copy.
   * @param offset Where in `target`; 0 by default.
   * @returns How many bytes were copied: {@linkcode Arg.byteLength}.
   * @throws {RangeError} When they do not fit.
   */
  copyTo(target: Uint8Array, offset = 0): number {
    return copyBytes(live(this.#slot, "read an argument"), target, offset);
  }
}

/**
 * Arms a handle on a slot (the session does this for each handler call).
 * Internal.
 *
 * @param message The handle.
 * @param slot The state, or `null` to seal the handle.
 */
export function bindMessage(message: Message, slot: MessageSlot | null): void {
  message[INTERNAL](slot);
}

/** The state of a live handle; throws for a sealed one. */
function live<T>(slot: T | null, what: string): T {
  if (slot === null) throw lateUse(what);
  return slot;
}

/** Where an argument is, by position or name; -1 when there is none. */
function indexOf(s: MessageSlot, key: number | string): number {
  if (typeof key === "number") return Number.isInteger(key) && key >= 0 && key < s.count ? key : -1;
  for (let i = 0; i < s.count; i++) {
    const a = s.args[i]!;
    if (asciiEquals(a.buf, a.nameStart, a.nameEnd, key)) return i;
  }
  return -1;
}

/** An argument's state, by position or name; throws for a sealed message. */
function argOf(s: MessageSlot | null, key: number | string): ArgSlot | undefined {
  if (s === null) throw lateArg(key);
  const i = indexOf(s, key);
  return i < 0 ? undefined : s.args[i];
}

/** The error of a late argument read, built apart from the hot path. */
function lateArg(key: number | string): Error {
  return lateUse(`read argument ${typeof key === "number" ? key : JSON.stringify(key)}`);
}

/** Copies an argument's value bytes into `target` at `offset`, by hand (no view is made). */
function copyBytes(a: ArgSlot, target: Uint8Array, offset: number): number {
  const start = a.start;
  const n = a.end - start;
  if (offset < 0 || offset + n > target.length) throw copyRange(n, offset, target.length);
  const src = a.buf;
  for (let i = 0; i < n; i++) target[offset + i] = src[start + i]!;
  return n;
}

/** Kept out of the copy so that it stays small enough to inline. */
function copyRange(n: number, offset: number, length: number): RangeError {
  return new RangeError(`Cannot copy ${n} bytes to offset ${offset} of a ${length}-byte array`);
}

function isMappedIPv4(buf: Uint8Array, off: number): boolean {
  for (let i = 0; i < 10; i++) if (buf[off + i] !== 0) return false;
  return buf[off + 10] === 0xff && buf[off + 11] === 0xff;
}

/** Compares bytes with a string char by char (argument names are ASCII). */
function asciiEquals(buf: Uint8Array, start: number, end: number, text: string): boolean {
  if (end - start !== text.length) return false;
  for (let i = 0; i < text.length; i++) {
    if (buf[start + i] !== text.charCodeAt(i)) return false;
  }
  return true;
}
