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

import { lateUse } from "./errors.ts";
import {
  Arg as ArgSlot,
  DataType,
  decodeText,
  formatIPv4,
  type MessageReader,
  type Value,
} from "./spop.ts";

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
  readonly args: ArgSlot[] = [];
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
    const count = reader.argCount;
    while (this.args.length < count) this.args.push(new ArgSlot());
    for (let i = 0; i < count; i++) {
      const from = reader.arg(i)!;
      const to = this.args[i]!;
      to.buf = buf;
      to.type = from.type;
      to.bool = from.bool;
      to.int = from.int;
      to.start = from.start;
      to.end = from.end;
      to.nameStart = from.nameStart;
      to.nameEnd = from.nameEnd;
    }
    this.count = count;
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

  /** Forgets the bytes (and a copy buffer that grew large). */
  release(): void {
    this.buf = EMPTY;
    for (let i = 0; i < this.count; i++) this.args[i]!.buf = EMPTY;
    this.count = 0;
    if (this.#copy.length > KEEP_COPY_BYTES) this.#copy = EMPTY;
  }
}

let slotOf: (message: Message) => MessageSlot | null;
let setSlot: (message: Message, slot: MessageSlot | null) => void;

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
 * A message is valid while its NOTIFY is handled: in the handler's own call,
 * and for an `async` handler until its promise settles. Afterwards every
 * method throws (`Cannot read argument 0: its NOTIFY was already
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

  static {
    slotOf = (m) => m.#slot;
    setSlot = (m, slot) => m.#slot = slot;
  }

  /** The message name (the `spoe-message` section's). */
  get name(): string {
    const s = this.#live("read the message name");
    return decodeText(s.buf, s.nameStart, s.nameEnd);
  }

  /** How many arguments the message has. */
  get size(): number {
    return this.#live("read the message size").count;
  }

  /**
   * An argument with its type and value.
   *
   * @param key Position (0 first) or name.
   * @returns The argument, or `undefined` if there is none.
   */
  arg(key: number | string): Arg | undefined {
    const i = this.#index(key);
    if (i < 0) return undefined;
    let handle = this.#handles[i];
    if (handle === undefined) {
      while (this.#handles.length <= i) this.#handles.push(new Arg(this, this.#handles.length));
      handle = this.#handles[i]!;
    }
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
    const a = this.#argSlot(key);
    if (a === undefined) return undefined;
    if (a.type === DataType.IPV6 && options?.unmapIPv4 && isMappedIPv4(a.buf, a.start)) {
      return formatIPv4(a.buf, a.start + 12);
    }
    return a.type === DataType.IPV4 || a.type === DataType.IPV6 ? a.text() : undefined;
  }

  /**
   * An integer argument as a number (HAProxy sends integer samples as
   * INT64).
   *
   * @param key Position or name.
   * @returns The value; `undefined` beyond ±(2^53-1), where {@linkcode Message.bigint} reads it.
   */
  int(key: number | string): number | undefined {
    const a = this.#argSlot(key);
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
    const a = this.#argSlot(key);
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
    const a = this.#argSlot(key);
    return a?.type === DataType.STRING ? a.text() : undefined;
  }

  /**
   * A BINARY argument, as a copy.
   *
   * @param key Position or name.
   * @returns The bytes.
   */
  binary(key: number | string): Uint8Array | undefined {
    const a = this.#argSlot(key);
    return a?.type === DataType.BINARY ? a.bytes().slice() : undefined;
  }

  /**
   * A BOOL argument.
   *
   * @param key Position or name.
   * @returns The boolean.
   */
  boolean(key: number | string): boolean | undefined {
    const a = this.#argSlot(key);
    return a?.type === DataType.BOOL ? a.bool : undefined;
  }

  /**
   * Whether an argument is NULL (HAProxy sends NULL when a fetch fails).
   *
   * @param key Position or name.
   * @returns `true` for a NULL argument, `false` otherwise (also if missing).
   */
  isNull(key: number | string): boolean {
    return this.#argSlot(key)?.type === DataType.NULL;
  }

  #live(what: string): MessageSlot {
    const s = this.#slot;
    if (s === null) throw lateUse(what);
    return s;
  }

  #index(key: number | string): number {
    const s = this.#live(`read argument ${typeof key === "number" ? key : JSON.stringify(key)}`);
    if (typeof key === "number") {
      return Number.isInteger(key) && key >= 0 && key < s.count ? key : -1;
    }
    for (let i = 0; i < s.count; i++) {
      const a = s.args[i]!;
      if (asciiEquals(a.buf, a.nameStart, a.nameEnd, key)) return i;
    }
    return -1;
  }

  #argSlot(key: number | string): ArgSlot | undefined {
    const i = this.#index(key);
    return i < 0 ? undefined : this.#slot!.args[i];
  }
}

/**
 * One argument of a {@linkcode Message}: its type, name and value. Valid as
 * long as its message.
 */
export class Arg {
  readonly #message: Message;
  readonly #index: number;

  /**
   * @param message The message it belongs to.
   * @param index Its position.
   */
  constructor(message: Message, index: number) {
    this.#message = message;
    this.#index = index;
  }

  /** The SPOP type, e.g. `DataType.IPV4`. */
  get type(): DataType {
    return this.#slot("read an argument's type").type;
  }

  /** The argument's name (`args ip=src` names it `ip`); `""` for an unnamed one. */
  get name(): string {
    return this.#slot("read an argument's name").name();
  }

  /** The number of bytes of an IPV4, IPV6, STRING or BINARY value; 0 for other types. */
  get byteLength(): number {
    const a = this.#slot("read an argument's length");
    return a.end - a.start;
  }

  /**
   * The value as text: STRING and BINARY as UTF-8, addresses in their usual
   * notation, numbers and booleans as JavaScript prints them, NULL as `""`.
   *
   * @returns A new string.
   */
  text(): string {
    return this.#slot("read an argument").text();
  }

  /**
   * The value as a plain JavaScript value: `null`, a boolean, a number (a
   * bigint beyond 2^53-1), a string (STRING, and addresses as text), or a
   * copy of BINARY bytes.
   *
   * @returns A value that stays valid after the NOTIFY.
   */
  value(): Value {
    return this.#slot("read an argument").value();
  }

  /**
   * A copy of the value's bytes (an address's 4 or 16, a STRING's or
   * BINARY's own); empty for other types.
   *
   * @returns New bytes, the caller's to keep.
   */
  bytes(): Uint8Array {
    return this.#slot("read an argument").bytes().slice();
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
    const a = this.#slot("read an argument");
    const n = a.end - a.start;
    if (offset < 0 || offset + n > target.length) {
      throw new RangeError(
        `Cannot copy ${n} bytes to offset ${offset} of a ${target.length}-byte array`,
      );
    }
    const src = a.buf;
    for (let i = 0; i < n; i++) target[offset + i] = src[a.start + i]!;
    return n;
  }

  #slot(what: string): ArgSlot {
    const s = slotOf(this.#message);
    if (s === null || this.#index >= s.count) throw lateUse(what);
    return s.args[this.#index]!;
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
  setSlot(message, slot);
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
