/**
 * The handler API: what an agent's author writes against. Handlers are
 * registered per message name on an {@linkcode Agent}; each gets a
 * {@linkcode Message} (typed arguments by position or name) and a
 * {@linkcode Reply} (set-var and unset-var actions). Handlers never see
 * frames.
 *
 * @module
 */

import {
  Arg,
  bytesEqual,
  DataType,
  decodeText,
  encodeName,
  FrameWriter,
  type MessageReader,
  type Value,
  VarScope,
} from "./spop.ts";

/** Variable scopes by name: HAProxy sees `<scope>.<var-prefix>.<name>`. */
export type Scope = "proc" | "sess" | "txn" | "req" | "res";

/**
 * Handles one message. It may answer synchronously or return a promise; the
 * ACK for the NOTIFY leaves once every handler of its messages has finished.
 * `message` and `reply` are valid until the handler returns or its promise
 * settles.
 */
export type Handler = (message: Message, reply: Reply) => void | PromiseLike<void>;

/**
 * The handlers of an agent, by message name.
 *
 * @example An agent that flags HTTP methods
 * ```ts
 * import { Agent } from "./handler.ts";
 *
 * const agent = new Agent().on("check-method", (message, reply) => {
 *   const method = message.string("method");
 *   reply.setVar("txn", "is_write", method !== "GET" && method !== "HEAD");
 * });
 * ```
 */
export class Agent {
  readonly #names: Uint8Array[] = [];
  readonly #handlers: Handler[] = [];

  /**
   * Registers the handler of a message, replacing an earlier one.
   *
   * @param name The `spoe-message` name, e.g. `"check-client-ip"`.
   * @param handler Called for every such message.
   * @returns This agent.
   */
  on(name: string, handler: Handler): this {
    if (name === "") throw new TypeError("Cannot register handler: the message name is empty");
    const bytes = encodeName(name);
    const at = this.#names.findIndex((n) => bytesEqual(n, 0, n.length, bytes));
    if (at >= 0) this.#handlers[at] = handler;
    else {
      this.#names.push(bytes);
      this.#handlers.push(handler);
    }
    return this;
  }

  /** The registered message names. */
  get messages(): string[] {
    return this.#names.map((n) => decodeText(n, 0, n.length));
  }

  /**
   * Finds the handler for the message a reader is on, without allocating.
   *
   * @param reader A reader positioned on a message.
   * @param buf The bytes the reader reads.
   * @returns The handler, or `undefined` for an unknown message.
   */
  find(reader: MessageReader, buf: Uint8Array): Handler | undefined {
    const names = this.#names;
    for (let i = 0; i < names.length; i++) {
      if (bytesEqual(buf, reader.nameStart, reader.nameEnd, names[i]!)) return this.#handlers[i];
    }
    return undefined;
  }
}

/**
 * A message from HAProxy with its arguments. Arguments are read by position
 * (0 first) or by name (`args ip=src` names it `ip`; `args src` leaves it
 * unnamed). The typed getters return `undefined` when the argument is
 * missing or of another type.
 */
export class Message {
  #buf: Uint8Array = new Uint8Array(0);
  #nameStart = 0;
  #nameEnd = 0;
  #count = 0;
  readonly #args: Arg[] = [];

  /** The message name. */
  get name(): string {
    return decodeText(this.#buf, this.#nameStart, this.#nameEnd);
  }

  /** How many arguments the message has. */
  get size(): number {
    return this.#count;
  }

  /**
   * An argument with its type and raw value.
   *
   * @param key Position (0 first) or name.
   * @returns The argument, or `undefined` if there is none.
   */
  arg(key: number | string): Arg | undefined {
    if (typeof key === "number") return key >= 0 && key < this.#count ? this.#args[key] : undefined;
    for (let i = 0; i < this.#count; i++) {
      const arg = this.#args[i]!;
      if (asciiEquals(arg.buf, arg.nameStart, arg.nameEnd, key)) return arg;
    }
    return undefined;
  }

  /**
   * An IPv4 or IPv6 address argument in text form.
   *
   * @param key Position or name.
   * @returns E.g. `"192.168.1.10"` or `"2001:db8::1"`.
   */
  ip(key: number | string): string | undefined {
    const arg = this.arg(key);
    return arg && (arg.type === DataType.IPV4 || arg.type === DataType.IPV6)
      ? arg.text()
      : undefined;
  }

  /**
   * An integer argument (HAProxy sends every integer sample as INT64).
   *
   * @param key Position or name.
   * @returns A number, or a bigint beyond 2^53-1.
   */
  int(key: number | string): number | bigint | undefined {
    const arg = this.arg(key);
    return arg && arg.type >= DataType.INT32 && arg.type <= DataType.UINT64 ? arg.int : undefined;
  }

  /**
   * A STRING argument.
   *
   * @param key Position or name.
   * @returns The text.
   */
  string(key: number | string): string | undefined {
    const arg = this.arg(key);
    return arg?.type === DataType.STRING ? arg.text() : undefined;
  }

  /**
   * A BINARY argument, as a copy.
   *
   * @param key Position or name.
   * @returns The bytes.
   */
  binary(key: number | string): Uint8Array | undefined {
    const arg = this.arg(key);
    return arg?.type === DataType.BINARY ? arg.bytes().slice() : undefined;
  }

  /**
   * A BOOL argument.
   *
   * @param key Position or name.
   * @returns The boolean.
   */
  boolean(key: number | string): boolean | undefined {
    const arg = this.arg(key);
    return arg?.type === DataType.BOOL ? arg.bool : undefined;
  }

  /**
   * Whether an argument is NULL (HAProxy sends NULL when a fetch fails).
   *
   * @param key Position or name.
   * @returns `true` for a NULL argument, `false` otherwise (also if missing).
   */
  isNull(key: number | string): boolean {
    return this.arg(key)?.type === DataType.NULL;
  }

  /**
   * Points this message at the one a reader is on (no copy).
   *
   * @param reader A reader positioned on a message.
   * @param buf The bytes the reader reads.
   */
  load(reader: MessageReader, buf: Uint8Array): void {
    this.#buf = buf;
    this.#nameStart = reader.nameStart;
    this.#nameEnd = reader.nameEnd;
    const count = reader.argCount;
    while (this.#args.length < count) this.#args.push(new Arg());
    for (let i = 0; i < count; i++) {
      const from = reader.arg(i)!;
      const to = this.#args[i]!;
      to.buf = buf;
      to.type = from.type;
      to.bool = from.bool;
      to.int = from.int;
      to.start = from.start;
      to.end = from.end;
      to.nameStart = from.nameStart;
      to.nameEnd = from.nameEnd;
    }
    this.#count = count;
  }

  /**
   * Copies the bytes this message points at, so that it stays valid after
   * the read buffer is reused (for handlers that finish asynchronously).
   */
  detach(): void {
    const old = this.#buf;
    let lo = this.#nameStart;
    let hi = this.#nameEnd;
    for (let i = 0; i < this.#count; i++) {
      const arg = this.#args[i]!;
      lo = Math.min(lo, arg.nameStart, arg.start);
      hi = Math.max(hi, arg.nameEnd, arg.end);
    }
    const copy = old.slice(lo, hi);
    this.#buf = copy;
    this.#nameStart -= lo;
    this.#nameEnd -= lo;
    for (let i = 0; i < this.#count; i++) {
      const arg = this.#args[i]!;
      arg.buf = copy;
      arg.start -= lo;
      arg.end -= lo;
      arg.nameStart -= lo;
      arg.nameEnd -= lo;
    }
  }
}

const INT64_MAX = 0x7fff_ffff_ffff_ffffn;

/**
 * The actions of an ACK. HAProxy applies them in order, to variables named
 * `<scope>.<var-prefix>.<name>`, and only to variables it knows (referenced
 * in its configuration, or listed in `register-var-names`).
 */
export class Reply {
  readonly #w = new FrameWriter(256);
  #count = 0;

  /** How many actions were added. */
  get size(): number {
    return this.#count;
  }

  /**
   * Adds a set-var action.
   *
   * @param scope `"proc"`, `"sess"`, `"txn"`, `"req"` or `"res"` (or a `VarScope`).
   * @param name Characters `[A-Za-z0-9._]`; e.g. `"ip_score"`.
   * @param value The value. Without `type`: `null` → NULL (HAProxy unsets the
   * variable), boolean → BOOL, integer → INT64 (UINT64 for bigints above
   * 2^63-1), string → STRING, `Uint8Array` → BINARY.
   * @param type An explicit SPOP type, e.g. `DataType.UINT32` or
   * `DataType.IPV4` (with the address as text or bytes).
   * @returns This reply.
   * @throws {TypeError} For a bad name or a value that does not suit the type.
   * @throws {RangeError} For an integer outside the type's range.
   */
  setVar(scope: Scope | VarScope, name: string, value: Value, type?: DataType): this {
    this.#w.setVar(scopeByte(scope), nameBytes(name), type ?? inferType(value), value);
    this.#count++;
    return this;
  }

  /**
   * Adds an unset-var action.
   *
   * @param scope The variable's scope.
   * @param name The variable's name.
   * @returns This reply.
   * @throws {TypeError} For a bad name.
   */
  unsetVar(scope: Scope | VarScope, name: string): this {
    this.#w.unsetVar(scopeByte(scope), nameBytes(name));
    this.#count++;
    return this;
  }

  /**
   * The encoded LIST-OF-ACTIONS (a view, valid until the next change).
   *
   * @returns The bytes.
   */
  bytes(): Uint8Array {
    return this.#w.bytes();
  }

  /**
   * Appends the encoded actions to a frame being written (no copy of a view).
   *
   * @param w The writer holding the open ACK frame.
   */
  writeTo(w: FrameWriter): void {
    w.appendWriter(this.#w);
  }

  /** Removes every action. */
  clear(): void {
    this.#w.reset();
    this.#count = 0;
  }
}

function scopeByte(scope: Scope | VarScope): VarScope {
  switch (scope) {
    case "proc":
    case VarScope.PROC:
      return VarScope.PROC;
    case "sess":
    case VarScope.SESS:
      return VarScope.SESS;
    case "txn":
    case VarScope.TXN:
      return VarScope.TXN;
    case "req":
    case VarScope.REQ:
      return VarScope.REQ;
    case "res":
    case VarScope.RES:
      return VarScope.RES;
    default:
      throw new TypeError(`Cannot use variable scope ${JSON.stringify(scope)}`);
  }
}

function inferType(value: Value): DataType {
  if (value === null) return DataType.NULL;
  switch (typeof value) {
    case "boolean":
      return DataType.BOOL;
    case "number":
      return DataType.INT64;
    case "bigint":
      return value > INT64_MAX ? DataType.UINT64 : DataType.INT64;
    case "string":
      return DataType.STRING;
    default:
      return DataType.BINARY;
  }
}

/** Variable names already checked and encoded, so that a handler's names cost one lookup. */
const NAMES = new Map<string, Uint8Array>();
const MAX_CACHED_NAMES = 1024;

/** A checked, encoded variable name. */
function nameBytes(name: string): Uint8Array {
  let bytes = NAMES.get(name);
  if (bytes === undefined) {
    checkName(name);
    bytes = encodeName(name);
    if (NAMES.size < MAX_CACHED_NAMES) NAMES.set(name, bytes);
  }
  return bytes;
}

/** HAProxy variable names: `[A-Za-z0-9._]`, not empty. */
function checkName(name: string): void {
  const n = name.length;
  let ok = n > 0;
  for (let i = 0; ok && i < n; i++) {
    const c = name.charCodeAt(i);
    ok = (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 95 ||
      c === 46;
  }
  if (!ok) {
    throw new TypeError(
      `Cannot use variable name ${JSON.stringify(name)}: use letters, digits, "." and "_"`,
    );
  }
}

/** Compares bytes with a string char by char (argument names are ASCII). */
function asciiEquals(buf: Uint8Array, start: number, end: number, text: string): boolean {
  if (end - start !== text.length) return false;
  for (let i = 0; i < text.length; i++) {
    if (buf[start + i] !== text.charCodeAt(i)) return false;
  }
  return true;
}
