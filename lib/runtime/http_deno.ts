/**
 * The operator's HTTP endpoints on `Deno.serve` (what Deno runs them on):
 * the server itself (hyper) parses requests and answers malformed ones with
 * 400; request heads above 8 KiB get 431, and bodies are never read.
 *
 * @module
 */

import {
  type HttpAnswer,
  type HttpRoute,
  MAX_HEADER_BYTES,
  respond,
  type ServeHttp,
} from "./_http.ts";

/**
 * Serves `routes` on `hostname:port` with `Deno.serve`.
 *
 * @param hostname The address to bind.
 * @param port The port (0 for any free one).
 * @param routes Answers by path.
 * @param onError Hears of a route that threw (the client gets a 500).
 * @returns The server, once it listens.
 */
export const serveDenoHttp: ServeHttp = (hostname, port, routes, onError) => {
  const abort = new AbortController();
  // Deno.serve binds at once, and throws when it cannot.
  const server = Deno.serve({
    hostname,
    port,
    signal: abort.signal,
    onListen: () => {},
    onError: (err) => {
      onError(err);
      return reply({ status: 500, body: "internal error\n" }, false);
    },
  }, (request) => answer(request, routes));
  return Promise.resolve({
    hostname: server.addr.hostname,
    port: server.addr.port,
    async close() {
      abort.abort();
      await server.finished;
    },
  });
};

async function answer(
  request: Request,
  routes: Readonly<Record<string, HttpRoute>>,
): Promise<Response> {
  const head = request.method === "HEAD";
  // The request line and headers, about as they came.
  let size = request.url.length;
  for (const [name, value] of request.headers) size += name.length + value.length + 4;
  if (size > MAX_HEADER_BYTES) {
    return reply({ status: 431, body: "request header fields too large\n" }, head);
  }
  return reply(await respond(request.method, new URL(request.url), routes), head);
}

function reply(a: HttpAnswer, head: boolean): Response {
  const headers: Record<string, string> = {
    "Content-Type": a.type ?? "text/plain; charset=utf-8",
    "Cache-Control": "no-store",
  };
  if (a.allow !== undefined) headers.Allow = a.allow;
  return new Response(head ? null : a.body, { status: a.status, headers });
}
