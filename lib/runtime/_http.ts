/**
 * What the operator's HTTP endpoints answer, whichever server carries them
 * (`http_node.ts` on Bun, `http_deno.ts` on Deno): only GET and HEAD of a few
 * paths, answered from memory.
 *
 * @module
 */

/** What a route answers. */
export interface HttpAnswer {
  status: number;
  /** The content type (`text/plain; charset=utf-8` by default). */
  type?: string;
  body: string;
  /** The `Allow` header (a 405 names the methods that are). */
  allow?: string;
}

/** Answers a GET (or HEAD) of a path, given the request's URL (with its query). */
export type HttpRoute = (url: URL) => HttpAnswer | Promise<HttpAnswer>;

/** A listening HTTP server. */
export interface HttpServer {
  /** The bound address. */
  readonly hostname: string;
  /** The bound port. */
  readonly port: number;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** Starts a server of routes: address, port, routes, and who hears of a route that threw. */
export type ServeHttp = (
  hostname: string,
  port: number,
  routes: Readonly<Record<string, HttpRoute>>,
  onError: (err: unknown) => void,
) => Promise<HttpServer>;

/** How long a client may take to send its request headers. */
export const HEADERS_TIMEOUT_MS = 5000;
/** How long an idle keep-alive connection stays open. */
export const KEEP_ALIVE_MS = 5000;
/** The largest request head accepted (HTTP 431 above). */
export const MAX_HEADER_BYTES = 8192;

/**
 * The answer to a request: 404 for a path without a route, 405 for a method
 * other than GET and HEAD, else the route's.
 *
 * @param method The request's method.
 * @param url The request's URL.
 * @param routes Answers by path.
 * @returns The answer (a route's errors propagate).
 */
export async function respond(
  method: string,
  url: URL,
  routes: Readonly<Record<string, HttpRoute>>,
): Promise<HttpAnswer> {
  const route = Object.hasOwn(routes, url.pathname) ? routes[url.pathname] : undefined;
  if (route === undefined) return { status: 404, body: `no such path: ${url.pathname}\n` };
  if (method !== "GET" && method !== "HEAD") {
    return { status: 405, body: `method ${method} not allowed\n`, allow: "GET, HEAD" };
  }
  return await route(url);
}
