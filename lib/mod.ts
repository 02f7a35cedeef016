/**
 * spoa: write HAProxy SPOE agents in TypeScript, for Deno and Bun.
 *
 * HAProxy's SPOE filter sends messages (named in `spoe-message` sections, with
 * the samples of their `args`) to an agent; the agent answers each with
 * actions that set or unset HAProxy variables. Register a {@linkcode Handler}
 * per message on an {@linkcode Agent}, then {@linkcode serve} it.
 *
 * Handlers get a {@linkcode Message}, a {@linkcode Reply} and a
 * {@linkcode Context}, valid while their NOTIFY is handled: a plain function
 * during its call, an `async` function until its NOTIFY is acknowledged.
 * After that every call on them throws, so that nothing a handler keeps can
 * reach another request.
 *
 * @example An agent that scores client addresses
 * ```ts
 * import { Agent, DataType, serve } from "./mod.ts";
 *
 * const agent = new Agent().on("check-client-ip", (message, reply) => {
 *   // "192.168.1.10" or "2001:db8::1" (and ::ffff:10.0.0.1 as "10.0.0.1"); undefined otherwise
 *   const ip = message.ip(0, { unmapIPv4: true });
 *   if (ip === undefined) return; // the NOTIFY is still acknowledged
 *   reply.setVar("sess", "ip_score", ip.startsWith("10.") ? 100 : 50, DataType.UINT32);
 * });
 * const server = await serve(agent, { port: 12345 });
 * // HAProxy sees sess.<var-prefix>.ip_score
 * await server.shutdown();
 * ```
 *
 * @module
 */

export { Agent } from "./agent/handler.ts";
export type { Handler } from "./agent/handler.ts";
export { Arg, Message } from "./agent/message.ts";
export type { IpOptions } from "./agent/message.ts";
export { Reply } from "./agent/reply.ts";
export type { Scope } from "./agent/reply.ts";
export { Context } from "./agent/context.ts";
export { serve } from "./serve/mod.ts";
export { AgentModuleError } from "./serve/module.ts";
export type { AgentContext, AgentExport, Handlers } from "./serve/module.ts";
export type { Route, Routes, SetupContext } from "./serve/setup.ts";
export type { ServeOptions } from "./serve/mod.ts";
export type { Server, ServerOptions } from "./serve/server.ts";
export type { Dispatch } from "./serve/pool_protocol.ts";
export { DEFAULT_SESSION_OPTIONS } from "./agent/session.ts";
export type { ReferenceKnobs, SessionOptions } from "./agent/session.ts";
export { DataType, SpopError, Status, statusMessage, VarScope } from "./spop.ts";
export type { Value } from "./spop.ts";
export { createLogger, Level } from "./agent/log.ts";
export type { LogFields, LogFormat, Logger, LoggerOptions } from "./agent/log.ts";
export type {
  Counter,
  Gauge,
  Histogram,
  HistogramOptions,
  Labels,
  MetricOptions,
  Metrics,
} from "./metrics/registry.ts";
