/**
 * spoa: write HAProxy SPOE agents in TypeScript, for Deno and Bun.
 *
 * HAProxy's SPOE filter sends messages (named in `spoe-message` sections, with
 * the samples of their `args`) to an agent; the agent answers each with
 * actions that set or unset HAProxy variables. Register a {@linkcode Handler}
 * per message on an {@linkcode Agent}, then {@linkcode serve} it.
 *
 * @example An agent that scores client addresses
 * ```ts ignore
 * import { Agent, DataType, serve } from "./mod.ts";
 *
 * const agent = new Agent().on("check-client-ip", (message, reply) => {
 *   const ip = message.ip(0); // "192.168.1.10" or "2001:db8::1"; undefined otherwise
 *   if (ip === undefined) return; // the NOTIFY is still acknowledged
 *   reply.setVar("sess", "ip_score", ip.startsWith("10.") ? 100 : 50, DataType.UINT32);
 * });
 * const server = await serve(agent, { port: 12345 });
 * // HAProxy sees sess.<var-prefix>.ip_score
 * ```
 *
 * @module
 */

export { Agent, Message, Reply } from "./handler.ts";
export type { Handler, Scope } from "./handler.ts";
export { serve } from "./server.ts";
export type { ServeOptions, Server } from "./server.ts";
export { DEFAULT_SESSION_OPTIONS } from "./session.ts";
export type { SessionOptions } from "./session.ts";
export { Arg, DataType, SpopError, Status, statusMessage, VarScope } from "./spop.ts";
export type { Value } from "./spop.ts";
export { createLogger, Level } from "./log.ts";
export type { Logger, LoggerOptions } from "./log.ts";
