/**
 * Readers for the three payload grammars (`../shared/docs/spop.md` §1.1):
 * KV-LIST (HELLO, DISCONNECT), LIST-OF-MESSAGES (NOTIFY) and LIST-OF-ACTIONS
 * (ACK). Each reader is reused across frames and keeps offsets, not strings.
 *
 * @module
 */

import { SpopError, Status } from "./errors.ts";
import { ActionType, VarScope } from "./_constants.ts";
import { bytesEqual, decodeText, readRaw, readTypedData, span, TypedData } from "./_data.ts";

const EMPTY = new Uint8Array(0);

/** The most arguments a message can carry (NB-ARGS is one byte). */
export const MAX_ARGS = 255;

/**
 * Iterates a KV-LIST: `{ raw name, typed value }*` up to the end of the frame.
 *
 * @example Find max-frame-size in a HELLO payload
 * ```ts
 * import { KVReader } from "./_lists.ts";
 * import { encodeName } from "./_data.ts";
 *
 * const MAX_FRAME_SIZE = encodeName("max-frame-size");
 * const payload = new Uint8Array([0x0e, ...MAX_FRAME_SIZE, 0x03, 0xfc, 0xf0, 0x06]);
 * const kv = new KVReader().reset(payload, 0, payload.length);
 * while (kv.next()) {
 *   if (kv.nameIs(MAX_FRAME_SIZE)) kv.value.int; // 16380
 * }
 * ```
 */
export class KVReader {
  #buf: Uint8Array = EMPTY;
  #pos = 0;
  #end = 0;
  /** Where the current item's name starts. */
  nameStart = 0;
  /** Where it ends (exclusive). */
  nameEnd = 0;
  /** The current item's value. */
  readonly value: TypedData = new TypedData();

  /**
   * Starts reading a new list.
   *
   * @param buf The frame's bytes.
   * @param start Offset of the first item.
   * @param end End of the list (the frame).
   * @returns This reader.
   */
  reset(buf: Uint8Array, start: number, end: number): this {
    this.#buf = buf;
    this.#pos = start;
    this.#end = end;
    return this;
  }

  /**
   * Moves to the next item.
   *
   * @returns `false` at the end of the list.
   * @throws {SpopError} INVALID_FRAME for an empty name or a malformed item.
   */
  next(): boolean {
    if (this.#pos >= this.#end) return false;
    const at = this.#pos;
    let pos = readRaw(this.#buf, at, this.#end);
    if (span.start === span.end) {
      throw new SpopError(Status.INVALID_FRAME, `Cannot read item at offset ${at}: empty name`);
    }
    this.nameStart = span.start;
    this.nameEnd = span.end;
    pos = readTypedData(this.#buf, pos, this.#end, this.value);
    this.#pos = pos;
    return true;
  }

  /**
   * Compares the current item's name without allocating.
   *
   * @param name The expected name's bytes.
   * @returns Whether it is the current item's name.
   */
  nameIs(name: Uint8Array): boolean {
    return bytesEqual(this.#buf, this.nameStart, this.nameEnd, name);
  }

  /**
   * The current item's name as a string (allocates).
   *
   * @returns The name.
   */
  name(): string {
    return decodeText(this.#buf, this.nameStart, this.nameEnd);
  }
}

/** A message argument: its (possibly empty) name and its value. */
export class Arg extends TypedData {
  /** Where the name starts in `buf`. */
  nameStart = 0;
  /** Where it ends; equal to `nameStart` for an unnamed argument. */
  nameEnd = 0;

  /**
   * Compares the name without allocating.
   *
   * @param name The expected name's bytes.
   * @returns Whether it is this argument's name.
   */
  nameIs(name: Uint8Array): boolean {
    return bytesEqual(this.buf, this.nameStart, this.nameEnd, name);
  }

  /**
   * The name as a string (allocates); `""` for an unnamed argument.
   *
   * @returns The name.
   */
  name(): string {
    return decodeText(this.buf, this.nameStart, this.nameEnd);
  }
}

/**
 * Iterates a LIST-OF-MESSAGES. Each call to `next()` reads one whole message
 * (name and every argument), so a malformed message is found before anything
 * acts on it; the arguments are then available by position or by name.
 *
 * @example Read check-client-ip
 * ```ts
 * import { MessageReader } from "./_lists.ts";
 * import { encodeName } from "./_data.ts";
 *
 * const CHECK = encodeName("check-client-ip");
 * const payload = new Uint8Array([15, ...CHECK, 1, 0, 0x06, 192, 168, 1, 10]);
 * const messages = new MessageReader().reset(payload, 0, payload.length);
 * while (messages.next()) {
 *   if (messages.nameIs(CHECK)) messages.arg(0)?.text(); // "192.168.1.10"
 * }
 * ```
 */
export class MessageReader {
  #buf: Uint8Array = EMPTY;
  #pos = 0;
  #end = 0;
  /** Argument slots, grown as messages need them (up to MAX_ARGS), then reused. */
  #args: Arg[] = [];
  /** Where the current message's name starts. */
  nameStart = 0;
  /** Where it ends (exclusive). */
  nameEnd = 0;
  /** How many arguments the current message has. */
  argCount = 0;

  /**
   * Starts reading a new list.
   *
   * @param buf The frame's bytes.
   * @param start Offset of the first message.
   * @param end End of the list (the frame).
   * @returns This reader.
   */
  reset(buf: Uint8Array, start: number, end: number): this {
    this.#buf = buf;
    this.#pos = start;
    this.#end = end;
    this.argCount = 0;
    return this;
  }

  /**
   * Reads the next message with all its arguments.
   *
   * @returns `false` at the end of the list.
   * @throws {SpopError} INVALID_FRAME for a malformed message.
   */
  next(): boolean {
    const buf = this.#buf;
    const end = this.#end;
    if (this.#pos >= end) return false;
    let pos = readRaw(buf, this.#pos, end);
    this.nameStart = span.start;
    this.nameEnd = span.end;
    if (pos >= end) {
      throw new SpopError(Status.INVALID_FRAME, `Cannot read message at offset ${pos}: no NB-ARGS`);
    }
    const count = buf[pos++]!;
    const args = this.#args;
    while (args.length < count) args.push(new Arg());
    for (let i = 0; i < count; i++) {
      const arg = args[i]!;
      pos = readRaw(buf, pos, end);
      arg.nameStart = span.start;
      arg.nameEnd = span.end;
      pos = readTypedData(buf, pos, end, arg);
    }
    this.argCount = count;
    this.#pos = pos;
    return true;
  }

  /**
   * Compares the current message's name without allocating.
   *
   * @param name The expected name's bytes.
   * @returns Whether it is the current message's name.
   */
  nameIs(name: Uint8Array): boolean {
    return bytesEqual(this.#buf, this.nameStart, this.nameEnd, name);
  }

  /**
   * Hands over the current message's arguments without copying them: the
   * caller gets the reader's argument slots and gives it `spare` to fill
   * from the next message on. Afterwards {@linkcode MessageReader.arg} reads
   * `spare`, so call it after reading the current message's arguments.
   *
   * @param spare Slots the caller no longer needs (any length).
   * @returns The slots holding the current message's `argCount` arguments.
   */
  takeArgs(spare: Arg[]): Arg[] {
    const args = this.#args;
    this.#args = spare;
    return args;
  }

  /**
   * The current message's name as a string (allocates).
   *
   * @returns The name.
   */
  name(): string {
    return decodeText(this.#buf, this.nameStart, this.nameEnd);
  }

  /**
   * An argument of the current message by position.
   *
   * @param index 0 for the first argument.
   * @returns The argument, or `undefined` past the last one.
   */
  arg(index: number): Arg | undefined {
    return index >= 0 && index < this.argCount ? this.#args[index] : undefined;
  }

  /**
   * The first argument of the current message with this name.
   *
   * @param name The name's bytes.
   * @returns The argument, or `undefined` when no argument has that name.
   */
  argNamed(name: Uint8Array): Arg | undefined {
    for (let i = 0; i < this.argCount; i++) {
      const arg = this.#args[i]!;
      if (arg.nameIs(name)) return arg;
    }
    return undefined;
  }
}

/**
 * Iterates a LIST-OF-ACTIONS, as an agent sends it in an ACK. Stricter than
 * HAProxy, which stops silently at the first bad action: this reader throws,
 * so tools and tests see every mistake.
 */
export class ActionReader {
  #buf: Uint8Array = EMPTY;
  #pos = 0;
  #end = 0;
  /** The action type (see `ActionType`). */
  type: ActionType = ActionType.SET_VAR;
  /** The variable's scope (see `VarScope`). */
  scope: VarScope = VarScope.PROC;
  /** Where the variable name starts. */
  nameStart = 0;
  /** Where it ends (exclusive). */
  nameEnd = 0;
  /** The value of a SET_VAR. */
  readonly value: TypedData = new TypedData();

  /**
   * Starts reading a new list.
   *
   * @param buf The frame's bytes.
   * @param start Offset of the first action.
   * @param end End of the list (the frame).
   * @returns This reader.
   */
  reset(buf: Uint8Array, start: number, end: number): this {
    this.#buf = buf;
    this.#pos = start;
    this.#end = end;
    return this;
  }

  /**
   * Reads the next action.
   *
   * @returns `false` at the end of the list.
   * @throws {SpopError} INVALID_FRAME for an unknown action, a wrong NB-ARGS,
   * a bad scope or a truncated argument.
   */
  next(): boolean {
    const buf = this.#buf;
    const end = this.#end;
    const at = this.#pos;
    if (at >= end) return false;
    if (end - at < 3) throw invalidAction(at, "truncated");
    const type = buf[at]!;
    const nbArgs = buf[at + 1]!;
    const scope = buf[at + 2]!;
    if (type !== ActionType.SET_VAR && type !== ActionType.UNSET_VAR) {
      throw invalidAction(at, `unknown type ${type}`);
    }
    const expected = type === ActionType.SET_VAR ? 3 : 2;
    if (nbArgs !== expected) throw invalidAction(at, `NB-ARGS ${nbArgs}, expected ${expected}`);
    if (scope > VarScope.RES) throw invalidAction(at, `unknown scope ${scope}`);
    let pos = readRaw(buf, at + 3, end);
    this.nameStart = span.start;
    this.nameEnd = span.end;
    if (type === ActionType.SET_VAR) pos = readTypedData(buf, pos, end, this.value);
    this.type = type;
    this.scope = scope as VarScope;
    this.#pos = pos;
    return true;
  }

  /**
   * The variable name as a string (allocates).
   *
   * @returns The name.
   */
  name(): string {
    return decodeText(this.#buf, this.nameStart, this.nameEnd);
  }
}

function invalidAction(at: number, why: string): SpopError {
  return new SpopError(Status.INVALID_FRAME, `Cannot read action at offset ${at}: ${why}`);
}
