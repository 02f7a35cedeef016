/**
 * Picks the socket adapter of the runtime we run on, from
 * `navigator.userAgent` (not from a `Deno` or `Bun` global, which shims may
 * define).
 *
 * @module
 */

import { readdirSync, readFileSync } from "node:fs";
import process from "node:process";
import type { Listen, ListenStreams } from "../agent/conn.ts";

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
 * Loads the current runtime's `listen`. For a shared port (`reusePort`) on
 * Deno, `Deno.listen({ reusePort })` needs `--unstable-net` (without it Deno
 * ends the process); when the flag is missing the `node:net` adapter is used
 * instead, which needs no flag but, on Deno, stops accepting once the
 * process runs out of file descriptors (see {@linkcode reusePortCaveat}).
 *
 * @param options Whether the listener will share its port (SO_REUSEPORT).
 * @returns The adapter's listen function.
 */
export async function runtimeListen(options: { reusePort: boolean }): Promise<Listen> {
  if (detectRuntime() === "bun") return (await import("./bun.ts")).listen;
  if (options.reusePort && !denoUnstableNet()) return (await import("./node.ts")).listen;
  return (await import("./deno.ts")).listen;
}

/**
 * What is lost by sharing a port on this runtime as it was started.
 *
 * @returns A warning for the log, or `undefined` when nothing is lost.
 */
export function reusePortCaveat(): string | undefined {
  if (detectRuntime() !== "deno" || denoUnstableNet()) return undefined;
  return "Deno runs without --unstable-net, so workers share the port through node:net, " +
    "which stops accepting after the process runs out of file descriptors; " +
    "run Deno with --unstable-net (deno.json's `unstable` setting does this for tasks)";
}

/** Whether Deno's unstable network APIs (among them `reusePort`) are enabled. */
function denoUnstableNet(): boolean {
  const deno = (globalThis as { Deno?: { listenDatagram?: unknown } }).Deno;
  return typeof deno?.listenDatagram === "function";
}

/**
 * Loads the runtime's stream-handover listener, where there is one: Deno's
 * connections expose transferable streams; Bun cannot transfer streams.
 *
 * @returns `listenStreams`, or `undefined` on Bun.
 */
export async function runtimeListenStreams(): Promise<ListenStreams | undefined> {
  return detectRuntime() === "deno" ? (await import("./deno.ts")).listenStreams : undefined;
}

/**
 * The values of the named environment variables that are set and may be
 * read. Deno reads only those its permissions grant (`--allow-env`, or
 * `--allow-env=SPOA_PORT,...`), and never prompts; Bun reads them all.
 *
 * @param names The variables wanted.
 * @returns Their values, by name (unset or unreadable ones are missing).
 */
export function readEnvironment(names: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  const deno = (globalThis as {
    Deno?: {
      env: { get(name: string): string | undefined };
      permissions: { querySync(d: { name: "env"; variable: string }): { state: string } };
    };
  }).Deno;
  for (const name of names) {
    let value: string | undefined;
    if (deno !== undefined) {
      if (deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") continue;
      value = deno.env.get(name);
    } else value = process.env[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/**
 * Reads a text file of the process's own (under `/proc/self`), or
 * `undefined` when it cannot: not Linux, or, under Deno, no read permission
 * for it (never a prompt).
 *
 * @param name The file under `/proc/self`, e.g. `limits`; `fd/` lists the descriptors.
 * @returns The file's text, the directory's entries joined by newlines, or `undefined`.
 */
export function readProcSelf(name: string): string | undefined {
  const path = `/proc/self/${name}`;
  const deno = (globalThis as {
    Deno?: { permissions: { querySync(d: { name: "read"; path: string }): { state: string } } };
  }).Deno;
  if (
    deno !== undefined && deno.permissions.querySync({ name: "read", path }).state !== "granted"
  ) {
    return undefined;
  }
  try {
    return name.endsWith("/") ? readdirSync(path).join("\n") : readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}
