/**
 * A small HTTP/1.1 server for the operator's endpoints (`/metrics`,
 * `/health`, an agent module's routes): `Deno.serve` on Deno, `node:http` on
 * Bun. On Deno, a `node:http` (or `node:net`) listener anywhere in the
 * process cost the SPOP thread about 4 % of its messages per second, and
 * `Deno.serve` nothing measurable (bench/RESULTS.md §12).
 *
 * @module
 */

import type { HttpRoute, HttpServer } from "./_http.ts";

export type { HttpAnswer, HttpRoute, HttpServer } from "./_http.ts";

/**
 * Serves `routes` on `hostname:port`.
 *
 * @param hostname The address to bind.
 * @param port The port (0 for any free one).
 * @param routes Answers by path, e.g. `{ "/metrics": () => ... }`.
 * @param onError Hears of a route that threw (the client gets a 500).
 * @returns The server, once it listens.
 */
export async function serveHttp(
  hostname: string,
  port: number,
  routes: Readonly<Record<string, HttpRoute>>,
  onError: (err: unknown) => void,
): Promise<HttpServer> {
  const serve = globalThis.navigator?.userAgent?.startsWith("Deno/")
    ? (await import("./http_deno.ts")).serveDenoHttp
    : (await import("./http_node.ts")).serveNodeHttp;
  return await serve(hostname, port, routes, onError);
}
