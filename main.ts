/**
 * `spoa`: the IP-reputation agent of HAProxy's example, as a command.
 * Run `spoa -h` for the flags. This is the only module that exits.
 *
 * @module
 */

import process from "node:process";
import { parseCli, USAGE, UsageError } from "./lib/cli.ts";
import { ipReputation } from "./lib/iprep.ts";
import { createLogger, Level, serve, type Server } from "./lib/mod.ts";
import { VERSION } from "./lib/version.ts";

/** How long SIGTERM/SIGINT lets connections drain before they are cut. */
const SHUTDOWN_GRACE_MS = 3000;

function fail(message: string, status: number): never {
  process.stderr.write(`spoa: ${message}\n`);
  process.exit(status);
}

let options;
try {
  options = parseCli(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  process.stderr.write(`spoa: ${err.message}\n${USAGE}`);
  process.exit(2);
}
if (options.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
if (options.version) {
  process.stdout.write(`spoa ${VERSION}\n`);
  process.exit(0);
}

const log = createLogger({ level: options.debug ? Level.DEBUG : Level.INFO });
const agent = ipReputation(options.seed === undefined ? {} : { seed: options.seed });

let server: Server;
try {
  server = await serve(agent, {
    hostname: options.address,
    port: options.port,
    maxFrameSize: options.maxFrameSize,
    pipelining: options.pipelining,
    async: options.async,
    fragmentation: options.fragmentation,
    replyDelay: options.replyDelay,
    closeAfterFrames: options.closeAfterFrames,
    log,
  });
} catch (err) {
  // Bun's message ("Failed to listen at <host>") omits the reason; its code has it.
  const detail = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown } | null)?.code;
  const reason = typeof code === "string" && !detail.includes(code) ? ` (${code})` : "";
  fail(`Cannot listen on ${options.address}:${options.port}: ${detail}${reason}`, 1);
}

let stopping = false;
function stop(signal: string): void {
  if (stopping) {
    log.warn(`${signal} again: exiting at once`);
    process.exit(1);
  }
  stopping = true;
  log.info(`${signal}: draining ${server.connections} connection(s)`);
  void server.shutdown(SHUTDOWN_GRACE_MS).then(() => {
    log.info("stopped");
    process.exit(0);
  });
}
process.on("SIGINT", () => stop("SIGINT"));
process.on("SIGTERM", () => stop("SIGTERM"));
