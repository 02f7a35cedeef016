/**
 * What a handler answers with: a {@linkcode Reply}, the actions of one ACK.
 *
 * Like a message, a reply is a handle onto state the session reuses: it
 * works while its NOTIFY is handled, and every call after the NOTIFY was
 * acknowledged throws (`Cannot set variable "x": its NOTIFY was already
 * acknowledged`), so that a late callback can never add a variable to
 * another request's ACK.
 *
 * @module
 */

import { INTERNAL, lateUse } from "../spop/errors.ts";
import { DataType, encodeName, FrameWriter, type Value, VarScope } from "../spop.ts";

/** Variable scopes by name: HAProxy sees `<scope>.<var-prefix>.<name>`. */
export type Scope = "proc" | "sess" | "txn" | "req" | "res";

const INT64_MAX = 0x7fff_ffff_ffff_ffffn;
/** A pooled reply's buffer is kept up to this size, and starts at the second. */
const KEEP_BYTES = 4096;
const INITIAL_BYTES = 256;

/** The actions of one ACK, encoded as they are added. Internal. */
export class ReplySlot {
  readonly writer = new FrameWriter(INITIAL_BYTES);
  count = 0;

  /** Removes every action (a buffer grown large is let go). */
  clear(): void {
    this.writer.shrink(KEEP_BYTES, INITIAL_BYTES);
    this.count = 0;
  }
}

/**
 * The actions of an ACK. HAProxy applies them in order, to variables named
 * `<scope>.<var-prefix>.<name>`, and only to variables it knows (referenced
 * in its configuration, or listed in `register-var-names`).
 *
 * Valid while its NOTIFY is handled (see {@linkcode Message}); afterwards
 * every method throws.
 *
 * @example Set a score and a flag, unset a stale variable
 * ```ts
 * import { DataType } from "../spop.ts";
 * import type { Reply } from "./reply.ts";
 *
 * function answer(reply: Reply, score: number): void {
 *   reply
 *     .setVar("sess", "ip_score", score, DataType.UINT32)
 *     .setVar("txn", "suspicious", score < 20)
 *     .unsetVar("txn", "reason");
 * }
 * ```
 */
export class Reply {
  #slot: ReplySlot | null = null;

  /**
   * Arms a handle on its state, or seals it with `null`; returns the state
   * it had (internal).
   *
   * @ignore
   */
  [INTERNAL](slot: ReplySlot | null | undefined): ReplySlot | null {
    const old = this.#slot;
    if (slot !== undefined) this.#slot = slot;
    return old;
  }

  /** How many actions were added. */
  get size(): number {
    const s = this.#slot;
    if (s === null) throw lateUse("count the actions");
    return s.count;
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
   * @throws {Error} After the NOTIFY was acknowledged.
   */
  setVar(scope: Scope | VarScope, name: string, value: Value, type?: DataType): this {
    const s = this.#slot;
    if (s === null) throw lateUse(`set variable ${JSON.stringify(name)}`);
    s.writer.setVar(scopeByte(scope), nameBytes(name), type ?? inferType(value), value);
    s.count++;
    return this;
  }

  /**
   * Adds an unset-var action.
   *
   * @param scope The variable's scope.
   * @param name The variable's name.
   * @returns This reply.
   * @throws {TypeError} For a bad name.
   * @throws {Error} After the NOTIFY was acknowledged.
   */
  unsetVar(scope: Scope | VarScope, name: string): this {
    const s = this.#slot;
    if (s === null) throw lateUse(`unset variable ${JSON.stringify(name)}`);
    s.writer.unsetVar(scopeByte(scope), nameBytes(name));
    s.count++;
    return this;
  }
}

/**
 * Arms a handle on a slot, or seals it with `null`. Internal.
 *
 * @param reply The handle.
 * @param slot The state.
 */
export function bindReply(reply: Reply, slot: ReplySlot | null): void {
  reply[INTERNAL](slot);
}

/**
 * The slot a handle is armed on. Internal (tests read actions through it).
 *
 * @param reply The handle.
 * @returns The slot, or `null` when sealed.
 */
export function replySlot(reply: Reply): ReplySlot | null {
  return reply[INTERNAL](undefined);
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
  const n = typeof name === "string" ? name.length : 0;
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
