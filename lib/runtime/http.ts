/**
 * A small HTTP/1.1 server for the operator's endpoints (`/metrics`,
 * `/health`), on `node:http`, which Deno and Bun both provide. Only GET and
 * HEAD of a few paths exist: the routes answer from memory, bodies are never
 * read, and malformed requests get a 400 from the parser without reaching
 * the routes. Requests are served one at a time per connection, with short
 * timeouts, so that a slow or hostile client holds little.
 *
 * @module
 */

import http from "node:http";
import type { AddressInfo, Socket } from "node:net";

/** What a route answers. */
export interface HttpAnswer {
  status: number;
  /** The content type (`text/plain; charset=utf-8` by default). */
  type?: string;
  body: string;
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

/** How long a client may take to send its request headers. */
const HEADERS_TIMEOUT_MS = 5000;
/** How long an idle keep-alive connection stays open. */
const KEEP_ALIVE_MS = 5000;
/** The largest request head accepted (HTTP 431 above). */
const MAX_HEADER_BYTES = 8192;

/**
 * Serves `routes` on `hostname:port`.
 *
 * @param hostname The address to bind.
 * @param port The port (0 for any free one).
 * @param routes Answers by path, e.g. `{ "/metrics": () => ... }`.
 * @param onError Hears of a route that threw (the client gets a 500).
 * @returns The server, once it listens.
 */
export function serveHttp(
  hostname: string,
  port: number,
  routes: Readonly<Record<string, HttpRoute>>,
  onError: (err: unknown) => void,
): Promise<HttpServer> {
  const sockets = new Set<Socket>();
  const server = http.createServer({ maxHeaderSize: MAX_HEADER_BYTES }, (req, res) => {
    void answer(req, res, routes).catch((err) => {
      onError(err);
      if (!res.headersSent) {
        send(res, req.method === "HEAD", { status: 500, body: "internal error\n" });
      } else res.destroy();
    });
  });
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = HEADERS_TIMEOUT_MS * 2;
  server.keepAliveTimeout = KEEP_ALIVE_MS;
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  // A request the parser refuses: a 400 when the socket can still take it.
  server.on("clientError", (err: NodeJS.ErrnoException, socket: Socket) => {
    if (socket.writable && err.code !== "ECONNRESET") {
      const status = err.code === "HPE_HEADER_OVERFLOW"
        ? "431 Request Header Fields Too Large"
        : "400 Bad Request";
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    } else socket.destroy();
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: hostname, port }, () => {
      server.off("error", reject);
      server.on("error", onError);
      const address = server.address() as AddressInfo;
      resolve({
        hostname: address.address,
        port: address.port,
        close() {
          return new Promise<void>((done) => {
            server.close(() => done());
            for (const socket of sockets) socket.destroy();
          });
        },
      });
    });
  });
}

async function answer(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  routes: Readonly<Record<string, HttpRoute>>,
): Promise<void> {
  // The body, if any, is not wanted: drop it as it comes.
  req.resume();
  const head = req.method === "HEAD";
  let url: URL;
  try {
    url = new URL(req.url ?? "/", `http://${req.headers.host ?? "localhost"}`);
  } catch {
    return send(res, head, { status: 400, body: "bad request target\n" });
  }
  const route = Object.hasOwn(routes, url.pathname) ? routes[url.pathname] : undefined;
  if (route === undefined) {
    return send(res, head, { status: 404, body: `no such path: ${url.pathname}\n` });
  }
  if (req.method !== "GET" && !head) {
    res.setHeader("Allow", "GET, HEAD");
    return send(res, false, { status: 405, body: `method ${req.method} not allowed\n` });
  }
  send(res, head, await route(url));
}

function send(res: http.ServerResponse, head: boolean, a: HttpAnswer): void {
  const body = Buffer.from(a.body, "utf8");
  res.writeHead(a.status, {
    "Content-Type": a.type ?? "text/plain; charset=utf-8",
    "Content-Length": String(body.length),
    "Cache-Control": "no-store",
  });
  res.end(head ? undefined : body);
}
