/**
 * The operator's HTTP endpoints on `node:http` (what Bun runs them on):
 * bodies are never read, and malformed requests get a 400 from the parser
 * without reaching the routes. Requests are served one at a time per
 * connection, with short timeouts, so that a slow or hostile client holds
 * little.
 *
 * @module
 */

import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import {
  HEADERS_TIMEOUT_MS,
  type HttpAnswer,
  type HttpRoute,
  type HttpServer,
  KEEP_ALIVE_MS,
  MAX_HEADER_BYTES,
  respond,
} from "./_http.ts";

/**
 * Serves `routes` on `hostname:port`.
 *
 * @param hostname The address to bind.
 * @param port The port (0 for any free one).
 * @param routes Answers by path, e.g. `{ "/metrics": () => ... }`.
 * @param onError Hears of a route that threw (the client gets a 500).
 * @returns The server, once it listens.
 */
export function serveNodeHttp(
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
  send(res, head, await respond(req.method ?? "GET", url, routes));
}

function send(res: http.ServerResponse, head: boolean, a: HttpAnswer): void {
  const body = Buffer.from(a.body, "utf8");
  if (a.allow !== undefined) res.setHeader("Allow", a.allow);
  res.writeHead(a.status, {
    "Content-Type": a.type ?? "text/plain; charset=utf-8",
    "Content-Length": String(body.length),
    "Cache-Control": "no-store",
  });
  res.end(head ? undefined : body);
}
