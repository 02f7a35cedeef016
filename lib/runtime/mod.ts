/**
 * Picks the socket adapter of the runtime we run on, from
 * `navigator.userAgent` (not from a `Deno` or `Bun` global, which shims may
 * define).
 *
 * @module
 */

import type { Listen } from "../conn.ts";

/** The runtimes spoa runs on. */
export type Runtime = "deno" | "bun";

/**
 * Names the current runtime.
 *
 * @returns `"deno"` or `"bun"`.
 * @throws {TypeError} On any other runtime.
 */
export function detectRuntime(): Runtime {
  const agent = globalThis.navigator?.userAgent ?? "";
  if (agent.startsWith("Deno/")) return "deno";
  if (agent.startsWith("Bun/")) return "bun";
  throw new TypeError(`Cannot run on "${agent}": spoa needs Deno or Bun`);
}

/**
 * Loads the current runtime's `listen`.
 *
 * @returns The adapter's listen function.
 */
export async function runtimeListen(): Promise<Listen> {
  return detectRuntime() === "bun"
    ? (await import("./bun.ts")).listen
    : (await import("./deno.ts")).listen;
}
