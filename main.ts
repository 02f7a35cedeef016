/**
 * `spoa`: the IP-reputation agent of HAProxy's example, as a command.
 * Run `spoa -h` for the flags. This is the only module that exits.
 *
 * @module
 */

import process from "node:process";
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { type CliOptions, ENV_VARIABLES, parseCli, USAGE, UsageError } from "./lib/cli.ts";
import { parseLookup } from "./lib/cli_lookup.ts";
import { parseServiceArgs } from "./lib/iprep/agent.ts";
import { explain } from "./lib/iprep/explain.ts";
import { loadDatabase } from "./lib/iprep/lists.ts";
import { readEnvironment } from "./lib/runtime/mod.ts";
import { type Agent, AgentModuleError, createLogger, Level } from "./lib/mod.ts";
import { errorText } from "./lib/agent/log.ts";
import { loadAgentModule, logUncaught, moduleUrl, setupAgentModule } from "./lib/serve/module.ts";
import { ModuleSetup, type Routes } from "./lib/serve/setup.ts";
import { type Pool, PoolStartError, startPool } from "./lib/serve/pool.ts";
import { serveWith } from "./lib/serve/server.ts";
import {
  type MetricsEndpoint,
  startMetricsEndpoint,
  startMetricsThread,
} from "./lib/serve/metrics.ts";
import { AgentMetrics } from "./lib/metrics/agent.ts";
import { MetricsRegistry } from "./lib/metrics/registry.ts";
import { VERSION } from "./lib/version.ts";

/** How long SIGTERM/SIGINT lets connections drain before they are cut. */
const SHUTDOWN_GRACE_MS = 3000;

/**
 * Reads the TLS certificate and key, and checks that the key is the
 * certificate's.
 */
function readTls(certFile: string, keyFile: string): { cert: string; key: string } {
  const read = (flag: string, file: string) => {
    try {
      return readFileSync(file, "utf8");
    } catch (err) {
      throw new Error(`Cannot read ${flag} ${file}: ${errorText(err)}`);
    }
  };
  const cert = read("--tls-cert", certFile);
  const key = read("--tls-key", keyFile);
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch (err) {
    throw new Error(`Cannot use --tls-cert ${certFile}: not a PEM certificate (${errorText(err)})`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new Error(`Cannot use --tls-key ${keyFile}: not a PEM private key (${errorText(err)})`);
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    throw new Error(
      `Cannot use --tls-key ${keyFile}: it is not the key of the certificate in ${certFile}`,
    );
  }
  return { cert, key };
}

/** Why listening failed, in one line naming the address. */
function listenFailure(err: unknown): string {
  const text = errorText(err);
  if (text.startsWith("Cannot listen on ")) return text;
  const where = options.socketPath === undefined
    ? `${options.address}:${options.port}`
    : `unix:${options.socketPath}`;
  return `Cannot listen on ${where}: ${text}`;
}

function fail(message: string, status: number): never {
  process.stderr.write(`spoa: ${message}\n`);
  process.exit(status);
}

if (process.argv[2] === "lookup") lookup(process.argv.slice(3));

/** `spoa lookup ADDRESS --block ...`: why the address gets its score, as JSON. */
function lookup(argv: string[]): never {
  let asked;
  try {
    asked = parseLookup(argv, readEnvironment(ENV_VARIABLES));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`spoa: ${err.message}\n${USAGE}`);
    process.exit(2);
  }
  const service = parseServiceArgs(asked.serviceArgs);
  let db;
  try {
    db = service.lists.length === 0 ? undefined : loadDatabase(service.lists, { generation: 1 });
  } catch (err) {
    fail(errorText(err), 1);
  }
  const answer = explain(db, asked.address, service.defaultScore);
  if (answer === undefined) {
    fail(`Cannot look up ${JSON.stringify(asked.address)}: not an IPv4 or IPv6 address`, 2);
  }
  process.stdout.write(JSON.stringify(answer, null, 2) + "\n");
  process.exit(0);
}

let options: CliOptions;
try {
  options = parseCli(process.argv.slice(2), readEnvironment(ENV_VARIABLES));
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

const log = createLogger({
  level: options.debug ? Level.DEBUG : Level.INFO,
  format: options.logFormat,
});
const session = {
  maxFrameSize: options.maxFrameSize,
  pipelining: options.pipelining,
  async: options.async,
  fragmentation: options.fragmentation,
  handlerTimeout: options.handlerTimeout,
};
/** The reference agent's test knobs, `-t` and `-f`. */
const reference = { replyDelay: options.replyDelay, closeAfterFrames: options.closeAfterFrames };

// The agent module: the user's (--agent), or the built-in IP-reputation
// service, which takes --seed as its argument. Both load the same way.
// TLS material is read and checked before anything starts.
let tls: { cert: string; key: string } | undefined;
if (options.tls !== undefined) {
  try {
    tls = readTls(options.tls.certFile, options.tls.keyFile);
  } catch (err) {
    fail(errorText(err), 1);
  }
}

const builtin = options.agent === undefined;
const agentLabel = options.agent ?? "(built-in IP reputation)";
const agentModule = builtin
  ? new URL("./lib/iprep/agent.ts", import.meta.url)
  : moduleUrl(options.agent!);
const agentArgs = builtin ? options.serviceArgs : options.agentArgs;

/** What SIGTERM/SIGINT stops: the single-thread server or the pool. */
let running:
  | { shutdown(graceMs: number): Promise<void>; readonly connections?: number | undefined }
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
  draining = true;
  markDraining?.();
  moduleSetup.close();
  const open = running.connections === undefined ? "" : ` ${running.connections} connection(s)`;
  log.info(`${signal}: draining${open}`);
  void running.shutdown(SHUTDOWN_GRACE_MS).then(async () => {
    await endpoint?.close();
    log.info("stopped");
    process.exit(0);
  });
}

/** `--metrics`: the HTTP endpoint, and whether SIGTERM/SIGINT is draining the agent. */
let endpoint: MetricsEndpoint | undefined;
let pool: Pool | undefined;
let draining = false;
/** The agent module's `setup`, once run, and its routes. */
let moduleSetup: ModuleSetup = ModuleSetup.NONE;
let moduleRoutes: Routes = {};
/** Tells the metrics thread (single-thread agent) that the agent drains. */
let markDraining: (() => void) | undefined;

if (options.workers <= 1) {
  // Errors thrown from the agent's own callbacks are logged, not fatal.
  logUncaught(log);
  const registry = new MetricsRegistry({ warn: (text) => log.warn(text) });
  const metrics = new AgentMetrics(registry, options.metrics !== undefined);
  let agent: Agent;
  try {
    await setUp(0, registry);
    const shared = moduleSetup.view();
    agent = await loadAgentModule(
      agentModule,
      { workerId: 0, workers: 0, args: agentArgs, log, metrics: registry, shared },
      agentLabel,
    );
  } catch (err) {
    fail(err instanceof AgentModuleError ? err.message : errorText(err), 1);
  }
  try {
    running = await serveWith(agent, {
      ...session,
      metrics,
      reference,
      maxConnections: options.maxConnections,
      ...(options.socketPath === undefined
        ? { hostname: options.address, port: options.port }
        : { path: options.socketPath }),
      ...(options.socketMode === undefined ? {} : { socketMode: options.socketMode }),
      ...(tls === undefined ? {} : { tls }),
      log,
    });
  } catch (err) {
    fail(listenFailure(err), 1);
  }
  if (options.metrics !== undefined) {
    // On a thread of its own: scrapes never share the SPOP thread's event loop.
    await serveMetrics(async (hostname, port) => {
      const thread = await startMetricsThread(
        hostname,
        port,
        registry,
        metrics.open,
        log.child("main"),
        {
          // Relative to this file, for `bun build --compile` (see the pool's worker).
          workerUrl: new URL("./lib/serve/metrics_worker.ts", import.meta.url),
          ...(Object.keys(moduleRoutes).length === 0
            ? {}
            : { module: { url: agentModule.href, label: agentLabel, setup: moduleSetup } }),
        },
      );
      markDraining = thread.draining;
      return thread;
    });
  }
} else {
  const registry = new MetricsRegistry({ warn: (text) => log.warn(text) });
  try {
    await setUp(options.workers, registry);
  } catch (err) {
    fail(err instanceof AgentModuleError ? err.message : errorText(err), 1);
  }
  try {
    // One process cannot bind a Unix socket twice: the main thread accepts.
    const dispatch = options.socketPath === undefined ? options.dispatch : "streams";
    if (dispatch !== options.dispatch) {
      log.info(
        "a Unix socket is shared by the main thread handing connections over (streams); " +
          "-n 1 serves a Unix socket with less CPU (README, Workers and dispatch)",
      );
    }
    running = pool = await startPool({
      workers: options.workers,
      dispatch,
      hostname: options.address,
      port: options.port,
      ...(options.socketPath === undefined ? {} : { path: options.socketPath }),
      ...(options.socketMode === undefined ? {} : { socketMode: options.socketMode }),
      config: {
        debug: options.debug,
        logFormat: options.logFormat,
        ...(tls === undefined ? {} : { tls }),
        agent: { module: agentModule.href, label: agentLabel, args: agentArgs },
        session,
        reference,
        // Each worker counts its own connections.
        maxConnections: Math.ceil(options.maxConnections / options.workers),
        metrics: options.metrics !== undefined,
      },
      log: log.child("main"),
      // Relative to this file, so that `bun build --compile` (which flattens
      // modules into one bundle) finds the worker entry point too.
      workerUrl: new URL("./lib/serve/worker.ts", import.meta.url),
      shared: moduleSetup.shared,
    });
    const started = pool;
    moduleSetup.onPublish((value) => started.publish(value));
  } catch (err) {
    if (err instanceof PoolStartError && err.stage === "load") fail(err.message, 1);
    fail(listenFailure(err), 1);
  }
  if (options.metrics !== undefined) {
    const started = pool!;
    await serveMetrics((hostname, port) =>
      startMetricsEndpoint(hostname, port, {
        // The main thread's own: what the agent module's setup counts.
        sources: () => [
          ...started.metricsSources(),
          { layout: registry.layout(), values: registry.values },
        ],
        workersUp: () => started.ready,
        workers: options.workers,
        started: () => started.started,
        draining: () => draining,
        connections: () => undefined,
        routes: moduleRoutes,
        shared: () => moduleSetup.shared,
      }, log.child("main"))
    );
  }
}

/**
 * Runs the agent module's `setup` export on this thread, once, and keeps
 * its routes; SIGHUP asks it to reload.
 */
async function setUp(workers: number, registry: MetricsRegistry): Promise<void> {
  ({ setup: moduleSetup, routes: moduleRoutes } = await setupAgentModule(
    agentModule,
    { args: agentArgs, workers, log, metrics: registry },
    agentLabel,
  ));
  process.on("SIGHUP", () => {
    log.info("SIGHUP: reloading");
    moduleSetup.reload();
  });
}

/** Starts the `--metrics` endpoint, or stops the agent when it cannot listen. */
async function serveMetrics(
  start: (hostname: string, port: number) => Promise<MetricsEndpoint>,
): Promise<void> {
  const { hostname, port } = options.metrics!;
  try {
    endpoint = await start(hostname, port);
  } catch (err) {
    log.error(errorText(err));
    await running?.shutdown(0);
    fail(errorText(err), 1);
  }
}

if (stopping !== undefined) {
  const signal = stopping;
  stopping = undefined;
  stop(signal);
}
