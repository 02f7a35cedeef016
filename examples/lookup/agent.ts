/**
 * An asynchronous lookup against an HTTP service, the reason people run
 * agents at all: for each request HAProxy sends the client address; the
 * agent asks `GET <service>/score?ip=<address>` (JSON `{"score": N}`),
 * caches the answer, and sets `txn.lookup.score` and `txn.lookup.source`
 * (`service`, `cache` or `fallback`). HAProxy denies scores below 20
 * (`haproxy.cfg`).
 *
 * The service must never hold HAProxy up: each lookup has a timeout below
 * the SPOE `timeout processing` (100 ms in `spoe.conf`), is cancelled when
 * HAProxy gives up on the NOTIFY (`context.signal`), and a slow or failed
 * service gives the fallback score. After a failure the service is left
 * alone for a moment (`--backoff`), so that a service that is down costs
 * nothing per request. Lookups of one address in flight at once share one
 * request.
 *
 * ```sh
 * spoa --agent examples/lookup/agent.ts -- --service http://127.0.0.1:8081 \
 *   [--timeout 40] [--ttl 60] [--fallback 50] [--backoff 1000]
 * ```
 *
 * @module
 */

import type { AgentContext, Context, Message, Reply } from "../../lib/mod.ts";

/** The module arguments, with their defaults. */
export interface LookupOptions {
  /** The service's base URL. */
  service: string;
  /** Milliseconds a lookup may take; keep it below `timeout processing`. */
  timeout: number;
  /** Seconds an answer is cached. */
  ttl: number;
  /** The score when the service cannot answer in time. */
  fallback: number;
  /** Milliseconds the service is left alone after a failure. */
  backoff: number;
  /** Addresses kept in the cache at most. */
  cacheSize: number;
}

/**
 * Reads `--service URL --timeout MS --ttl S --fallback N --backoff MS --cache-size N`.
 *
 * @param args The module arguments.
 * @returns The options.
 * @throws {Error} Naming the argument that is missing or wrong.
 */
export function parseOptions(args: readonly string[]): LookupOptions {
  const options: LookupOptions = {
    service: "",
    timeout: 40,
    ttl: 60,
    fallback: 50,
    backoff: 1000,
    cacheSize: 100_000,
  };
  const numbers: Record<string, [keyof LookupOptions, number, number]> = {
    "--timeout": ["timeout", 1, 60_000],
    "--ttl": ["ttl", 0, 86_400],
    "--fallback": ["fallback", 0, 100],
    "--backoff": ["backoff", 0, 600_000],
    "--cache-size": ["cacheSize", 0, 10_000_000],
  };
  for (let i = 0; i < args.length; i += 2) {
    const flag = args[i]!;
    const value = args[i + 1];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--service") {
      options.service = new URL(value).href.replace(/\/$/, "");
      continue;
    }
    const spec = numbers[flag];
    if (spec === undefined) throw new Error(`unknown argument ${flag}`);
    const n = Number(value);
    if (!Number.isInteger(n) || n < spec[1] || n > spec[2]) {
      throw new Error(`${flag} must be an integer from ${spec[1]} to ${spec[2]}, not "${value}"`);
    }
    (options[spec[0]] as number) = n;
  }
  if (options.service === "") throw new Error("--service URL is needed");
  return options;
}

/** Where a score came from. */
export type Source = "service" | "cache" | "fallback";

/** Looks scores up, with a cache, a timeout and a backoff. */
export class Lookup {
  readonly #options: LookupOptions;
  readonly #cache = new Map<string, { score: number; until: number }>();
  readonly #inFlight = new Map<string, Promise<number | undefined>>();
  #downUntil = 0;

  /** @param options See {@linkcode parseOptions}. */
  constructor(options: LookupOptions) {
    this.#options = options;
  }

  /**
   * The score of an address.
   *
   * @param ip The address.
   * @param signal Aborts when HAProxy no longer waits.
   * @returns The score and where it came from.
   */
  async score(ip: string, signal: AbortSignal): Promise<{ score: number; source: Source }> {
    const now = Date.now();
    const cached = this.#cache.get(ip);
    if (cached !== undefined && cached.until > now) return { score: cached.score, source: "cache" };
    if (now < this.#downUntil) return { score: this.#options.fallback, source: "fallback" };
    let pending = this.#inFlight.get(ip);
    if (pending === undefined) {
      pending = this.#fetch(ip, signal).finally(() => this.#inFlight.delete(ip));
      this.#inFlight.set(ip, pending);
    }
    const score = await pending;
    return score === undefined
      ? { score: this.#options.fallback, source: "fallback" }
      : { score, source: "service" };
  }

  async #fetch(ip: string, signal: AbortSignal): Promise<number | undefined> {
    const { service, timeout, ttl, cacheSize, backoff } = this.#options;
    try {
      const response = await fetch(`${service}/score?ip=${encodeURIComponent(ip)}`, {
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeout)]),
      });
      if (!response.ok) throw new Error(`status ${response.status}`);
      const body = await response.json() as { score?: unknown };
      const score = body.score;
      if (typeof score !== "number" || !Number.isInteger(score) || score < 0 || score > 100) {
        throw new Error(`bad score ${JSON.stringify(score)}`);
      }
      if (ttl > 0 && cacheSize > 0) {
        if (this.#cache.size >= cacheSize) {
          // The oldest entry goes first (a Map keeps insertion order).
          this.#cache.delete(this.#cache.keys().next().value!);
        }
        this.#cache.set(ip, { score, until: Date.now() + ttl * 1000 });
      }
      return score;
    } catch {
      // HAProxy giving up is not the service's fault.
      if (!signal.aborted) this.#downUntil = Date.now() + backoff;
      return undefined;
    }
  }
}

export default function lookup(context: AgentContext) {
  const scores = new Lookup(parseOptions(context.args));
  return {
    async "lookup-client"(message: Message, reply: Reply, ctx: Context): Promise<void> {
      const ip = message.ip("ip", { unmapIPv4: true });
      if (ip === undefined) return;
      const { score, source } = await scores.score(ip, ctx.signal);
      reply.setVar("txn", "score", score);
      reply.setVar("txn", "source", source);
    },
  };
}
