/**
 * Real HAProxy for the interop tests: starts one of the HAProxy builds of
 * `./_builds.ts` (Debian's `haproxy` unless `SPOA_HAPROXY_BINS` says more) in
 * the foreground with one of the configurations of `haproxy/` (parameters filled
 * in through the environment, as an operator would), on free loopback ports,
 * plus a small extra file with a stats page and, when asked, a stub
 * application server. Processes are stopped by PID.
 *
 * HTTP requests each use a fresh connection, so that each request is a new
 * client session, from the source address asked for.
 *
 * @module
 */

import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { type HaproxyBuild, haproxyBuilds, usable } from "./_builds.ts";

export type { HaproxyBuild } from "./_builds.ts";
export { haproxyBuilds } from "./_builds.ts";

/** How long a helper waits before it gives up (a hang guard, not a speed check). */
export const HAPROXY_WAIT_MS = 15_000;

const CONFIG_DIR = fileURLToPath(new URL("../haproxy", import.meta.url));

/**
 * Fails loudly when HAProxy is missing: the interop suite is part of the
 * test command and must never pass by skipping.
 *
 * @param build The build (the first of `SPOA_HAPROXY_BINS` by default).
 * @returns HAProxy's version line.
 */
export function haproxyVersion(build: HaproxyBuild = haproxyBuilds()[0]!): string {
  return usable(build).versionLine;
}

/**
 * A free TCP port on the loopback interface (bound, then released).
 *
 * @param host `127.0.0.1` or `::1`.
 * @returns The port.
 */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Waits until a TCP connection to `host:port` succeeds.
 *
 * @param host The host.
 * @param port The port.
 * @param what For the error message.
 */
export async function waitForPort(host: string, port: number, what: string): Promise<void> {
  const deadline = Date.now() + HAPROXY_WAIT_MS;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host, port });
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what} on ${host}:${port}`);
    await sleep(50);
  }
}

/**
 * Polls `check` until it returns true.
 *
 * @param check The condition.
 * @param what For the error message.
 * @param timeoutMs The hang guard.
 */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = HAPROXY_WAIT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * Resolves after `ms` milliseconds.
 *
 * @param ms The delay.
 */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** What to start. */
export interface HaproxyOptions {
  /** Which HAProxy (the first of `SPOA_HAPROXY_BINS` by default). */
  build?: HaproxyBuild;
  /** A file of `haproxy/`, e.g. `haproxy.cfg`, or an absolute path. */
  config: string;
  /** The SPOE file: a name in `haproxy/`, or an absolute path. */
  spoe: string;
  /** The agent's port on 127.0.0.1. */
  agentPort: number;
  /** The agent's address as HAProxy writes it instead, e.g. `unix@/tmp/spoa.sock`. */
  agentAddress?: string;
  /** More environment for the configuration (e.g. `SPOA_CA` for `tls.cfg`). */
  env?: Record<string, string>;
  /** Bind the frontend on `::1` instead of 127.0.0.1. */
  ipv6?: boolean;
  /** Also start a stub application server and pass it as APP_ADDR. */
  app?: boolean;
  /** Health-check interval (CHECK_INTER, used by portable.cfg). */
  checkInter?: string;
}

/** A running HAProxy. */
export interface Haproxy {
  /** Its PID. */
  readonly pid: number;
  /** Which HAProxy it is. */
  readonly build: HaproxyBuild;
  /** The frontend's host (`127.0.0.1` or `::1`). */
  readonly host: string;
  /** The frontend's port. */
  readonly port: number;
  /** Everything it logged so far. */
  readonly log: string;
  /**
   * Stops it by PID and waits for the exit.
   *
   * @param signal SIGUSR1 (soft stop) by default; SIGTERM stops at once.
   */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /**
   * Reloads as HAProxy does without a master: a new process with the same
   * configuration takes the ports over and tells this one to finish (`-sf`).
   *
   * @returns The new process.
   */
  reload(): Promise<Haproxy>;
  /**
   * Reads the stats page (CSV) and returns the agent server's row.
   *
   * @returns Its `status` column, e.g. `UP`, `DOWN`, `no check`.
   */
  agentStatus(): Promise<string>;
}

interface Setup {
  build: HaproxyBuild;
  dir: string;
  env: Record<string, string>;
  args: string[];
  host: string;
  port: number;
  statsPort: number;
}

async function setup(options: HaproxyOptions): Promise<Setup> {
  const build = usable(options.build ?? haproxyBuilds()[0]!);
  const dir = mkdtempSync(join(tmpdir(), "spoa-haproxy-"));
  const host = options.ipv6 ? "::1" : "127.0.0.1";
  const port = await freePort(host);
  const statsPort = await freePort();
  const extra = [
    "listen test-stats",
    `    bind 127.0.0.1:${statsPort}`,
    "    stats enable",
    "    stats uri /stats",
  ];
  const env: Record<string, string> = {
    HAPROXY_BIND: `${host}:${port}`,
    SPOA_ADDR: options.agentAddress ?? `127.0.0.1:${options.agentPort}`,
    SPOE_CONF: options.spoe.startsWith("/") ? options.spoe : join(CONFIG_DIR, options.spoe),
  };
  if (options.app) {
    const appPort = await freePort();
    env.APP_ADDR = `127.0.0.1:${appPort}`;
    extra.push(
      "listen test-app",
      `    bind 127.0.0.1:${appPort}`,
      '    http-request return status 200 content-type text/plain string "app\\n"',
    );
  }
  if (options.checkInter) env.CHECK_INTER = options.checkInter;
  Object.assign(env, options.env ?? {});
  const extraFile = join(dir, "test-extra.cfg");
  writeFileSync(extraFile, extra.join("\n") + "\n");
  const config = options.config.startsWith("/") ? options.config : join(CONFIG_DIR, options.config);
  const args = ["-db", "-f", config, "-f", extraFile];
  return { build, dir, env, args, host, port, statsPort };
}

function launch(s: Setup, extraArgs: string[]): { child: ChildProcess; out: { log: string } } {
  const child = spawn(s.build.bin, [...s.args, ...extraArgs], {
    env: { ...process.env, ...s.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const out = { log: "" };
  child.stdout!.setEncoding("utf8");
  child.stderr!.setEncoding("utf8");
  child.stdout!.on("data", (t: string) => out.log += t);
  child.stderr!.on("data", (t: string) => out.log += t);
  return { child, out };
}

function wrap(s: Setup, child: ChildProcess, out: { log: string }): Haproxy {
  const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
  let done = false;
  void exited.then(() => done = true);
  const pid = child.pid!;
  return {
    pid,
    build: s.build,
    host: s.host,
    port: s.port,
    get log() {
      return out.log;
    },
    async stop(signal = "SIGUSR1") {
      // The extra file outlives reloads; the test's last stop removes it.
      rmSync(s.dir, { recursive: true, force: true });
      if (!done) {
        try {
          process.kill(pid, signal);
        } catch {
          // Already gone.
        }
      }
      const guard = sleep(HAPROXY_WAIT_MS).then(() => {
        if (!done) process.kill(pid, "SIGKILL");
      });
      await Promise.race([exited, guard]);
      await exited;
    },
    async reload() {
      const next = launch(s, ["-sf", String(pid)]);
      const reloaded = wrap(s, next.child, next.out);
      await waitForPort(s.host, s.port, "reloaded HAProxy");
      await Promise.race([exited, sleep(HAPROXY_WAIT_MS)]);
      return reloaded;
    },
    async agentStatus() {
      const csv = await get(`http://127.0.0.1:${s.statsPort}/stats;csv`);
      const lines = csv.text.split("\n");
      const header = lines[0]!.replace(/^# /, "").split(",");
      const column = header.indexOf("status");
      for (const line of lines.slice(1)) {
        const cells = line.split(",");
        if (
          /agent|iprep/.test(cells[0] ?? "") && cells[1] !== "BACKEND" && cells[1] !== "FRONTEND"
        ) {
          return cells[column] ?? "";
        }
      }
      throw new Error(`No agent server in the stats:\n${csv.text}`);
    },
  };
}

/**
 * Starts HAProxy and waits until its frontend accepts connections.
 *
 * @param options What to start.
 * @returns The running HAProxy; stop it in a `finally`.
 */
export async function startHaproxy(options: HaproxyOptions): Promise<Haproxy> {
  const s = await setup(options);
  const { child, out } = launch(s, []);
  const haproxy = wrap(s, child, out);
  try {
    await Promise.race([
      waitForPort(s.host, s.port, "HAProxy"),
      new Promise<never>((_, reject) =>
        child.once("close", (code) => reject(new Error(`HAProxy exited (${code}):\n${out.log}`)))
      ),
    ]);
  } catch (err) {
    await haproxy.stop("SIGTERM");
    throw err;
  }
  return haproxy;
}

/** An HTTP response. */
export interface Response {
  /** The status code, or 0 when the connection closed without a response. */
  status: number;
  /** The headers (lower-case names). */
  headers: Record<string, string | undefined>;
  /** The body. */
  text: string;
}

/**
 * One `GET` on a new connection, written by hand over `node:net` (node:http
 * costs several times more CPU, which the 2 cores share with HAProxy and the
 * agent). A connection HAProxy closes without answering (a `tcp-request
 * content reject`) resolves with status 0.
 *
 * The request says `Connection: close` and the client keeps its side open
 * until HAProxy closes, as browsers and curl do. With `halfClose` it shuts
 * its side down right after the request instead (`shutdown(SHUT_WR)`), which
 * HAProxy 3.x takes for an abort (see the README's "HAProxy 2.x and 3.1+").
 *
 * @param url The URL (`http://host:port/path`).
 * @param localAddress The source address, e.g. `127.0.0.9`.
 * @param headers Request headers.
 * @param halfClose Shut the sending side down after the request.
 * @returns The response.
 */
export function get(
  url: string,
  localAddress?: string,
  headers: Record<string, string> = {},
  halfClose = false,
): Promise<Response> {
  const { hostname, port, pathname } = new URL(url);
  const host = hostname.replace(/^\[|\]$/g, "");
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("");
  const request =
    `GET ${pathname} HTTP/1.1\r\nHost: ${hostname}\r\nConnection: close\r\n${extra}\r\n`;
  return new Promise((resolve, reject) => {
    const socket = net.connect({
      host,
      port: Number(port),
      ...(localAddress ? { localAddress } : {}),
    });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`Timed out: GET ${url}`));
    }, HAPROXY_WAIT_MS);
    socket.on("connect", () => halfClose ? socket.end(request) : socket.write(request));
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code !== "ECONNRESET" && err.code !== "EPIPE") {
        clearTimeout(timer);
        reject(err);
      }
    });
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(parseResponse(Buffer.concat(chunks).toString("latin1")));
    });
  });
}

/** Parses a whole HTTP/1.1 response; nothing at all is status 0. */
function parseResponse(raw: string): Response {
  const split = raw.indexOf("\r\n\r\n");
  if (raw === "" || split < 0) return { status: 0, headers: {}, text: "" };
  const [statusLine, ...lines] = raw.slice(0, split).split("\r\n");
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body = raw.slice(split + 4);
  if (headers["transfer-encoding"] === "chunked") {
    let text = "";
    for (;;) {
      const eol = body.indexOf("\r\n");
      const size = parseInt(body.slice(0, eol), 16);
      if (!(size > 0)) break;
      text += body.slice(eol + 2, eol + 2 + size);
      body = body.slice(eol + 2 + size + 2);
    }
    body = text;
  }
  return { status: Number(statusLine!.split(" ")[1]), headers, text: body };
}

/**
 * The URL of a frontend path.
 *
 * @param haproxy The HAProxy.
 * @param path The path.
 * @returns E.g. `http://127.0.0.1:41234/` or `http://[::1]:41234/`.
 */
export function urlOf(haproxy: Haproxy, path = "/"): string {
  const host = haproxy.host.includes(":") ? `[${haproxy.host}]` : haproxy.host;
  return `http://${host}:${haproxy.port}${path}`;
}

/**
 * Parses `ip_score=N` from a response body.
 *
 * @param text The body.
 * @returns N, or undefined.
 */
export function scoreOf(text: string): number | undefined {
  const match = /ip_score=(\d+)/.exec(text);
  return match ? Number(match[1]) : undefined;
}

/**
 * Established TCP connections to a local port, as `ss` lists them.
 *
 * @param port The agent's port.
 * @returns How many.
 */
export function establishedTo(port: number): number {
  const run = spawnSync("ss", ["-Htn", "state", "established", `( sport = :${port} )`], {
    encoding: "utf8",
  });
  if (run.error || run.status !== 0) throw new Error(`ss failed: ${run.stderr}`);
  return run.stdout.split("\n").filter((l) => l.trim() !== "").length;
}
