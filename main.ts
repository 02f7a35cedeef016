/**
 * `spoa`: the IP-reputation agent of HAProxy's example, as a command.
 * Run `spoa -h` for the flags. This is the only module that exits.
 *
 * @module
 */

import process from "node:process";
import { parseCli, USAGE, UsageError } from "./lib/cli.ts";
import { ipReputation } from "./lib/iprep.ts";
import { createLogger, Level, serve } from "./lib/mod.ts";
import { errorText } from "./lib/log.ts";
import { startPool } from "./lib/pool.ts";
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
const session = {
  maxFrameSize: options.maxFrameSize,
  pipelining: options.pipelining,
  async: options.async,
  fragmentation: options.fragmentation,
  handlerTimeout: options.handlerTimeout,
};
/** The reference agent's test knobs, `-t` and `-f`. */
const reference = { replyDelay: options.replyDelay, closeAfterFrames: options.closeAfterFrames };

/** What SIGTERM/SIGINT stops: the single-thread server or the pool. */
let running:
  | { shutdown(graceMs: number): Promise<void>; readonly connections?: number }
  | undefined;
let stopping: string | undefined;

// Signals are handled from the start: one that arrives while the workers
// start is acted on as soon as they are up.
process.on("SIGINT", () => stop("SIGINT"));
process.on("SIGTERM", () => stop("SIGTERM"));

function stop(signal: string): void {
  if (stopping !== undefined && running !== undefined) {
    log.warn(`${signal} again: exiting at once`);
    process.exit(1);
  }
  stopping = signal;
  if (running === undefined) return;
  const open = running.connections === undefined ? "" : ` ${running.connections} connection(s)`;
  log.info(`${signal}: draining${open}`);
  void running.shutdown(SHUTDOWN_GRACE_MS).then(() => {
    log.info("stopped");
    process.exit(0);
  });
}

try {
  if (options.workers <= 1) {
    const agent = ipReputation(options.seed === undefined ? {} : { seed: options.seed });
    running = await serve(agent, {
      ...session,
      reference,
      maxConnections: options.maxConnections,
      hostname: options.address,
      port: options.port,
      log,
    });
  } else {
    running = await startPool({
      workers: options.workers,
      dispatch: options.dispatch,
      hostname: options.address,
      port: options.port,
      config: {
        debug: options.debug,
        ...(options.seed === undefined ? {} : { seed: options.seed }),
        session,
        reference,
        // Each worker counts its own connections.
        maxConnections: Math.ceil(options.maxConnections / options.workers),
      },
      log: log.child("main"),
      // Relative to this file, so that `bun build --compile` (which flattens
      // modules into one bundle) finds the worker entry point too.
      workerUrl: new URL("./lib/worker.ts", import.meta.url),
    });
  }
} catch (err) {
  fail(`Cannot listen on ${options.address}:${options.port}: ${errorText(err)}`, 1);
}

if (stopping !== undefined) {
  const signal = stopping;
  stopping = undefined;
  stop(signal);
}
