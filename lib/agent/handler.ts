/**
 * The handler API: what an agent's author writes against. Handlers are
 * registered per message name on an {@linkcode Agent}; each gets a
 * {@linkcode Message} (typed arguments by position or name), a
 * {@linkcode Reply} (set-var and unset-var actions) and a
 * {@linkcode Context} (ids, the connection, a logger, an `AbortSignal`).
 * Handlers never see frames.
 *
 * @module
 */

import type { AgentMetrics, MessageSlots } from "../metrics/agent.ts";
import type { Context } from "./context.ts";
import type { Message } from "./message.ts";
import type { Reply } from "./reply.ts";
import { INTERNAL } from "../spop/errors.ts";
import { bytesEqual, decodeText, encodeName, type MessageReader } from "../spop.ts";

/**
 * Handles one message. The ACK of its NOTIFY leaves once every handler of
 * the NOTIFY's messages has finished.
 *
 * - A plain function finishes when it returns: its `message`, `reply` and
 *   `context` are valid during the call only, and are reused for later
 *   NOTIFYs (no allocation per NOTIFY).
 * - An `async` function finishes when its promise settles; it gets objects
 *   of its own, valid until then.
 *
 * Either way, they throw once their NOTIFY is acknowledged. A plain function
 * that returns a promise is refused (the NOTIFY is acknowledged at once, with
 * an error in the log): declare it `async`.
 */
export type Handler = (
  message: Message,
  reply: Reply,
  context: Context,
) => void | PromiseLike<void>;

const AsyncFunction = (async () => {}).constructor;

/** The brand of every {@linkcode Agent}, whichever copy of the library made it. Internal. */
export const AGENT_BRAND: unique symbol = Symbol.for("spoa.agent");

/**
 * The metric slots of a handler's message, made once per thread's metrics.
 *
 * @param entry The handler.
 * @param metrics The thread's metrics.
 * @returns The slots.
 */
export function slotsOf(entry: HandlerEntry, metrics: AgentMetrics): MessageSlots {
  if (entry.slotsOwner !== metrics) {
    entry.slotsOwner = metrics;
    entry.slots = metrics.message(entry.name);
  }
  return entry.slots!;
}

/** A registered handler and how to call it. Internal. */
export class HandlerEntry {
  /** The handler. */
  readonly fn: Handler;
  /** Declared `async`: gets handles of its own for each NOTIFY. */
  readonly async: boolean;
  /** Declares a third parameter (or a rest parameter): it gets a context. */
  readonly wantsContext: boolean;
  /** The message name, for logs. */
  readonly name: string;
  /** A plain function returned a promise (logged once). */
  refused = false;
  /** The metrics that {@linkcode HandlerEntry.slots} count into. */
  slotsOwner: AgentMetrics | undefined = undefined;
  /** This message's metric slots in `slotsOwner`. */
  slots: MessageSlots | undefined = undefined;

  constructor(name: string, fn: Handler) {
    this.name = name;
    this.fn = fn;
    this.async = fn instanceof AsyncFunction;
    this.wantsContext = fn.length === 0 || fn.length >= 3;
  }
}

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
  readonly #entries: HandlerEntry[] = [];

  /**
   * Finds the handler of the message a reader is on (internal).
   *
   * @ignore
   */
  [INTERNAL](reader: MessageReader, buf: Uint8Array): HandlerEntry | undefined {
    const names = this.#names;
    for (let i = 0; i < names.length; i++) {
      if (bytesEqual(buf, reader.nameStart, reader.nameEnd, names[i]!)) return this.#entries[i];
    }
    return undefined;
  }

  /**
   * Registers the handler of a message, replacing an earlier one.
   *
   * @param name The `spoe-message` name, e.g. `"check-client-ip"`.
   * @param handler Called for every such message.
   * @returns This agent.
   * @throws {TypeError} For an empty name or a handler that is not a function.
   */
  on(name: string, handler: Handler): this {
    if (typeof name !== "string" || name === "") {
      throw new TypeError("Cannot register handler: the message name is empty");
    }
    if (typeof handler !== "function") {
      throw new TypeError(
        `Cannot register handler for message ${JSON.stringify(name)}: it is not a function`,
      );
    }
    const bytes = encodeName(name);
    const entry = new HandlerEntry(name, handler);
    const at = this.#names.findIndex((n) => bytesEqual(n, 0, n.length, bytes));
    if (at >= 0) this.#entries[at] = entry;
    else {
      this.#names.push(bytes);
      this.#entries.push(entry);
    }
    return this;
  }

  /** The registered message names. */
  get messages(): string[] {
    return this.#names.map((n) => decodeText(n, 0, n.length));
  }

  /**
   * The handler registered for a message.
   *
   * @param name The message name.
   * @returns The handler, or `undefined` when there is none.
   */
  handler(name: string): Handler | undefined {
    const bytes = encodeName(name);
    const at = this.#names.findIndex((n) => bytesEqual(n, 0, n.length, bytes));
    return at < 0 ? undefined : this.#entries[at]!.fn;
  }

  /**
   * Marks agents across copies of this library (a module may import its own
   * copy), so that an agent module's default export is recognised.
   *
   * @ignore
   */
  get [AGENT_BRAND](): true {
    return true;
  }
}

/**
 * Finds the handler for the message a reader is on, without allocating.
 * Internal (the session's).
 *
 * @param agent The agent.
 * @param reader A reader positioned on a message.
 * @param buf The bytes the reader reads.
 * @returns The entry, or `undefined` for an unknown message.
 */
export function findHandler(
  agent: Agent,
  reader: MessageReader,
  buf: Uint8Array,
): HandlerEntry | undefined {
  return agent[INTERNAL](reader, buf);
}
