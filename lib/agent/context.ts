/**
 * A handler's third argument: the {@linkcode Context} of its NOTIFY (ids,
 * the connection it came on, a logger and an `AbortSignal`).
 *
 * @module
 */

import type { Logger } from "./log.ts";
import { INTERNAL, lateUse } from "../spop/errors.ts";

/** What a connection tells its handlers; one per connection. Internal. */
export interface ConnectionInfo {
  /** HAProxy's engine id (`engine-id` in its HELLO); absent on health checks. */
  engineId: string | undefined;
  /** The peer's address, e.g. `"127.0.0.1:41234"`. */
  remote: string;
  /** The capabilities both sides use, e.g. `["pipelining"]`. */
  capabilities: readonly string[];
  /** The connection's logger. */
  log: Logger;
}

/** The state behind a context handle: one NOTIFY's. Internal. */
export interface ContextSlot {
  /** The NOTIFY's stream-id. */
  readonly streamId: number | bigint;
  /** The NOTIFY's frame-id. */
  readonly frameId: number | bigint;
  /** The connection it came on. */
  readonly connection: ConnectionInfo;
  /** The NOTIFY's signal, made on first use. */
  signal(): AbortSignal;
}

/**
 * The context of one NOTIFY, passed to handlers as their third argument.
 *
 * `signal` aborts when the handler deadline passes (`--handler-timeout`: the
 * NOTIFY is then acknowledged without the handler's actions), when the
 * connection closes, and when the agent shuts down, so that a handler can
 * give up its own work, such as a `fetch`. Like the message and the reply,
 * a context is valid while its NOTIFY is handled; afterwards every property
 * but `log` throws.
 *
 * @example Cancel a lookup when the NOTIFY can no longer be answered
 * ```ts
 * import { Agent } from "./handler.ts";
 *
 * const agent = new Agent().on("check-token", async (message, reply, context) => {
 *   const token = message.string("token") ?? "";
 *   try {
 *     const response = await fetch("http://127.0.0.1:9000/check", {
 *       method: "POST",
 *       body: token,
 *       signal: context.signal,
 *     });
 *     reply.setVar("txn", "token_ok", response.ok);
 *   } catch (err) {
 *     context.log.warn(`token check failed on stream ${context.streamId}: ${err}`);
 *   }
 * });
 * ```
 */
export class Context {
  #slot: ContextSlot | null = null;
  #log: Logger | undefined;

  /**
   * Arms a handle on its state, or seals it (internal).
   *
   * @ignore
   */
  [INTERNAL](slot: ContextSlot | null): void {
    this.#slot = slot;
    if (slot !== null) this.#log = slot.connection.log;
  }

  /** The NOTIFY's stream-id. */
  get streamId(): number | bigint {
    return this.#live("read streamId").streamId;
  }

  /** The NOTIFY's frame-id. */
  get frameId(): number | bigint {
    return this.#live("read frameId").frameId;
  }

  /** HAProxy's engine id for this connection (`undefined` if it sent none). */
  get engineId(): string | undefined {
    return this.#live("read engineId").connection.engineId;
  }

  /** The peer's address, e.g. `"127.0.0.1:41234"` or `"[::1]:41234"`. */
  get remote(): string {
    return this.#live("read remote").connection.remote;
  }

  /** The capabilities negotiated on this connection, e.g. `["pipelining"]`. */
  get capabilities(): readonly string[] {
    return this.#live("read capabilities").connection.capabilities;
  }

  /** Aborts at the handler deadline, when the connection closes, and on shutdown. */
  get signal(): AbortSignal {
    return this.#live("read signal").signal();
  }

  /** The connection's logger; it stays usable after the NOTIFY. */
  get log(): Logger {
    const log = this.#log;
    if (log === undefined) throw lateUse("use log");
    return log;
  }

  #live(what: string): ContextSlot {
    const s = this.#slot;
    if (s === null) throw lateUse(what);
    return s;
  }
}

/**
 * Arms a handle on a slot, or seals it with `null`. Internal.
 *
 * @param context The handle.
 * @param slot The state.
 */
export function bindContext(context: Context, slot: ContextSlot | null): void {
  context[INTERNAL](slot);
}
