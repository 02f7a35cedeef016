/**
 * The `spoa` command line: flags of HAProxy's example agent (`spoa -h`) plus
 * a few of our own, parsed strictly with `node:util` `parseArgs`. Parsing
 * never exits: bad input throws a {@linkcode UsageError} whose message is one
 * line naming the flag.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { MAX_FRAME_SIZE_LIMIT, MIN_MAX_FRAME_SIZE } from "./spop/_constants.ts";
import { parseServiceArgs, SERVICE_OPTIONS } from "./iprep/agent.ts";

export { USAGE } from "./cli_usage.ts";

/** The parsed command line. */
export interface CliOptions {
  /** `-h`: print the usage and exit. */
  help: boolean;
  /** `--version`: print the version and exit. */
  version: boolean;
  /** `-d`: debug logging. */
  debug: boolean;
  /** `-p`: the port. */
  port: number;
  /** `-n`: worker threads. */
  workers: number;
  /** `-m`: our max-frame-size. */
  maxFrameSize: number;
  /** `-c pipelining` (always on; accepted for compatibility). */
  pipelining: boolean;
  /** `-c async`. */
  async: boolean;
  /** `-c fragmentation`. */
  fragmentation: boolean;
  /** `-t`, in milliseconds. */
  replyDelay: number;
  /** `-f`; 0 for never. */
  closeAfterFrames: number;
  /** `-a`. */
  address: string;
  /** `-a unix:/path`: the Unix socket's path. */
  socketPath: string | undefined;
  /** `--socket-mode`, e.g. `0o660`. */
  socketMode: number | undefined;
  /** `--tls-cert` and `--tls-key`: the files, when TLS is on. */
  tls: { certFile: string; keyFile: string } | undefined;
  /** `--dispatch`. */
  dispatch: "reuseport" | "streams";
  /** `--max-connections`. */
  maxConnections: number;
  /** `--handler-timeout`, in milliseconds; 0 for none. */
  handlerTimeout: number;
  /** `--seed`, if given. */
  seed: number | undefined;
  /** The built-in service's arguments: `--seed`, the lists and their options, as given. */
  serviceArgs: string[];
  /** `--log-format`. */
  logFormat: "text" | "json";
  /** `--metrics`: where to serve `/metrics` and `/health`, if given. */
  metrics: { hostname: string; port: number } | undefined;
  /** `--agent`: the agent module's path or URL, if given. */
  agent: string | undefined;
  /** The arguments after `--`, for the agent module. */
  agentArgs: string[];
}

/** A bad command line; `message` is one line naming the flag. */
export class UsageError extends Error {
  /** @param message What is wrong, naming the flag. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

const CAPABILITIES = ["pipelining", "async", "fragmentation"] as const;

/** The flags, for `parseArgs`. */
const OPTIONS = {
  help: { type: "boolean", short: "h" },
  debug: { type: "boolean", short: "d" },
  port: { type: "string", short: "p" },
  workers: { type: "string", short: "n" },
  "max-frame-size": { type: "string", short: "m" },
  capability: { type: "string", short: "c", multiple: true },
  delay: { type: "string", short: "t" },
  "close-after": { type: "string", short: "f" },
  address: { type: "string", short: "a" },
  dispatch: { type: "string" },
  "max-connections": { type: "string" },
  "handler-timeout": { type: "string" },
  // The built-in service's: --seed, the lists and their options.
  ...SERVICE_OPTIONS,
  agent: { type: "string" },
  "log-format": { type: "string" },
  metrics: { type: "string" },
  "socket-mode": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  version: { type: "boolean" },
} as const;

/** Flags that only make sense on the command line. */
const NOT_FROM_ENV: readonly string[] = ["help", "version"];

/**
 * The environment variable of a flag: `SPOA_` and its long name in capitals,
 * `-` as `_` (`--max-frame-size` is `SPOA_MAX_FRAME_SIZE`).
 *
 * @param long The flag's long name, e.g. `"max-frame-size"`.
 * @returns The variable's name.
 */
export function envName(long: string): string {
  return `SPOA_${long.toUpperCase().replaceAll("-", "_")}`;
}

/** Every environment variable `spoa` reads. */
export const ENV_VARIABLES: readonly string[] = Object.keys(OPTIONS)
  .filter((long) => !NOT_FROM_ENV.includes(long))
  .map(envName);

const TRUE = ["1", "true", "yes", "on"];
const FALSE = ["0", "false", "no", "off", ""];

/**
 * Parses the command line.
 *
 * @param argv The arguments after the program name.
 * @returns The options, with defaults filled in.
 * @throws {UsageError} For an unknown flag, a missing or bad value, or a
 * positional argument.
 *
 * @example Usage
 * ```ts
 * import { parseCli } from "./cli.ts";
 *
 * const options = parseCli(["-p", "9000", "-c", "async", "-d"]);
 * // options.port === 9000, options.async === true, options.workers === 5
 * ```
 */
export function parseCli(argv: string[], env: Readonly<Record<string, string>> = {}): CliOptions {
  // Everything after the first `--` belongs to the agent module.
  const split = argv.indexOf("--");
  const own = split < 0 ? argv : argv.slice(0, split);
  const agentArgs = split < 0 ? [] : argv.slice(split + 1);
  let values;
  try {
    ({ values } = parseArgs({
      args: own,
      strict: true,
      allowPositionals: false,
      options: OPTIONS,
    }));
  } catch (err) {
    throw new UsageError(describeParseError(err));
  }
  // A flag not on the command line may come from its environment variable;
  // errors then name the variable.
  const given: Record<string, unknown> = values;
  const source: Record<string, string> = {};
  for (const [long, spec] of Object.entries(OPTIONS)) {
    const variable = envName(long);
    const text = env[variable];
    if (given[long] !== undefined || NOT_FROM_ENV.includes(long) || text === undefined) continue;
    source[long] = variable;
    if (spec.type === "boolean") {
      const word = text.trim().toLowerCase();
      if (!TRUE.includes(word) && !FALSE.includes(word)) {
        throw new UsageError(`Invalid value for ${variable}: "${text}" (expected true or false)`);
      }
      given[long] = TRUE.includes(word);
    } else given[long] = envValue(spec, text);
  }
  /** How a flag was given, for errors: `-p` or `SPOA_PORT`. */
  const named = (long: string, flag: string) => source[long] ?? flag;
  const caps = new Set<string>();
  for (const value of values.capability ?? []) {
    for (const item of value.split(",")) {
      const cap = item.trim();
      if (!(CAPABILITIES as readonly string[]).includes(cap)) {
        throw new UsageError(
          `Invalid value for ${
            named("capability", "-c")
          }: "${cap}" (expected pipelining, async or fragmentation)`,
        );
      }
      caps.add(cap);
    }
  }
  const address = values.address ?? "0.0.0.0";
  if (address.trim() === "" || /\s/.test(address)) {
    throw new UsageError(
      `Invalid value for ${named("address", "-a")}: "${address}" (expected an address)`,
    );
  }
  const socketPath = address.startsWith("unix:") ? address.slice("unix:".length) : undefined;
  if (socketPath !== undefined && (socketPath === "" || socketPath.includes("\0"))) {
    throw new UsageError(
      `Invalid value for ${named("address", "-a")}: "${address}" (expected unix:/path/to/socket)`,
    );
  }
  const modeText = values["socket-mode"];
  let socketMode: number | undefined;
  if (modeText !== undefined) {
    socketMode = /^0?[0-7]{3}$/.test(modeText) ? parseInt(modeText, 8) : NaN;
    if (Number.isNaN(socketMode)) {
      throw new UsageError(
        `Invalid value for ${
          named("socket-mode", "--socket-mode")
        }: "${modeText}" (expected an octal mode such as 0660)`,
      );
    }
    if (socketPath === undefined) {
      throw new UsageError(
        `Cannot use ${named("socket-mode", "--socket-mode")} without a Unix socket (-a unix:/path)`,
      );
    }
  }
  const certFile = values["tls-cert"];
  const keyFile = values["tls-key"];
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new UsageError("Cannot use TLS: give both --tls-cert and --tls-key");
  }
  if (certFile !== undefined && socketPath !== undefined) {
    throw new UsageError("Cannot use TLS on a Unix socket: --tls-cert and --tls-key are for TCP");
  }
  const dispatch = values.dispatch ?? "reuseport";
  if (dispatch !== "reuseport" && dispatch !== "streams") {
    throw new UsageError(
      `Invalid value for ${
        named("dispatch", "--dispatch")
      }: "${dispatch}" (expected reuseport or streams)`,
    );
  }
  const logFormat = values["log-format"] ?? "text";
  if (logFormat !== "text" && logFormat !== "json") {
    throw new UsageError(
      `Invalid value for ${
        named("log-format", "--log-format")
      }: "${logFormat}" (expected text or json)`,
    );
  }
  const metrics = values.metrics === undefined
    ? undefined
    : metricsAddress(named("metrics", "--metrics"), values.metrics);
  const agent = values.agent;
  if (agent !== undefined && agent.trim() === "") {
    throw new UsageError(
      `Invalid value for ${named("agent", "--agent")}: "${agent}" (expected a path or URL)`,
    );
  }
  const serviceArgs = asArgs(given, SERVICE_FLAGS);
  const serviceFlag = SERVICE_FLAGS.find((long) => given[long] !== undefined);
  if (agent !== undefined && serviceFlag !== undefined) {
    throw new UsageError(
      `Cannot use ${
        named(serviceFlag, `--${serviceFlag}`)
      } with --agent: it is the built-in service's (pass module arguments after --)`,
    );
  }
  checkServiceArgs(serviceArgs);
  if (agent === undefined && split >= 0) {
    throw new UsageError("Unexpected arguments after --: they are for an agent module (--agent)");
  }
  return {
    help: values.help ?? false,
    version: values.version ?? false,
    debug: values.debug ?? false,
    port: integer(named("port", "-p"), values.port, 12345, 0, 65535),
    workers: integer(named("workers", "-n"), values.workers, 5, 0, 1024),
    maxFrameSize: integer(
      named("max-frame-size", "-m"),
      values["max-frame-size"],
      16384,
      MIN_MAX_FRAME_SIZE,
      MAX_FRAME_SIZE_LIMIT,
    ),
    pipelining: true,
    async: caps.has("async"),
    fragmentation: caps.has("fragmentation"),
    replyDelay: duration(named("delay", "-t"), values.delay),
    closeAfterFrames: integer(
      named("close-after", "-f"),
      values["close-after"],
      0,
      1,
      Number.MAX_SAFE_INTEGER,
    ),
    address,
    socketPath,
    socketMode,
    tls: certFile === undefined ? undefined : { certFile, keyFile: keyFile! },
    dispatch,
    maxConnections: integer(
      named("max-connections", "--max-connections"),
      values["max-connections"],
      10_000,
      1,
      1_000_000,
    ),
    handlerTimeout: values["handler-timeout"] === undefined
      ? 50
      : duration(named("handler-timeout", "--handler-timeout"), values["handler-timeout"]),
    seed: values.seed === undefined
      ? undefined
      : integer(named("seed", "--seed"), values.seed, 0, 0, 0xffff_ffff),
    serviceArgs,
    logFormat,
    metrics,
    agent,
    agentArgs,
  };
}

/**
 * A string flag's value from its environment variable: a list, comma-separated,
 * for a repeatable flag.
 *
 * @param spec The flag's `parseArgs` option.
 * @param text The variable's value.
 * @returns What the flag would have given.
 */
export function envValue(
  spec: { type: string; multiple?: boolean },
  text: string,
): string | string[] {
  return spec.multiple ? text.split(",").map((item) => item.trim()) : text;
}

/**
 * Flags' values as arguments again (`--block a --block b`).
 *
 * @param values Values by long name.
 * @param longs The flags to take, in order.
 * @returns The arguments.
 */
export function asArgs(
  values: Readonly<Record<string, unknown>>,
  longs: readonly string[],
): string[] {
  return longs.flatMap((long) => {
    const value = values[long] as string | string[] | undefined;
    if (value === undefined) return [];
    return (Array.isArray(value) ? value : [value]).flatMap((item) => [`--${long}`, item]);
  });
}

/** The built-in service's flags, passed on as its module arguments. */
const SERVICE_FLAGS = Object.keys(SERVICE_OPTIONS) as (keyof typeof SERVICE_OPTIONS)[];

/**
 * Checks the built-in service's arguments as its module will read them.
 *
 * @param args The arguments.
 * @throws {UsageError} Naming the argument that cannot be used.
 */
export function checkServiceArgs(args: string[]): void {
  try {
    parseServiceArgs(args);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** `ADDR:PORT`, `[IPv6]:PORT` or `:PORT` (all IPv4 interfaces). */
function metricsAddress(flag: string, text: string): { hostname: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:\[\]]*)):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || !(port <= 65535)) {
    throw new UsageError(
      `Invalid value for ${flag}: "${text}" (expected ADDRESS:PORT, e.g. 127.0.0.1:9100)`,
    );
  }
  return { hostname: match[1] ?? (match[2] || "0.0.0.0"), port };
}

function integer(
  flag: string,
  text: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (text === undefined) return fallback;
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(value >= min && value <= max)) {
    throw new UsageError(
      `Invalid value for ${flag}: "${text}" (expected an integer from ${min} to ${max})`,
    );
  }
  return value;
}

/** `-t`: a number with unit us, ms (default) or s; at most 60 s. Returns ms. */
function duration(flag: string, text: string | undefined): number {
  if (text === undefined) return 0;
  const match = /^(\d+(?:\.\d+)?)(us|ms|s)?$/.exec(text);
  const scale = { us: 0.001, ms: 1, s: 1000 }[match?.[2] ?? "ms"] ?? 1;
  const ms = match ? Number(match[1]) * scale : NaN;
  if (!(ms <= 60_000)) {
    throw new UsageError(
      `Invalid value for ${flag}: "${text}" (expected a time such as 10ms, 500us or 1s, at most 60s)`,
    );
  }
  return ms;
}

/**
 * Rewrites parseArgs errors (whose wording differs by runtime) into one line.
 *
 * @param err What `parseArgs` threw.
 * @returns One line naming the option.
 */
export function describeParseError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: string }).code;
  const quoted = /'([^']*)'/.exec(message)?.[1] ?? message;
  switch (code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `Unknown option ${quoted}`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return `Option ${quoted.replace(/ <value>$/, "")} needs a value`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `Unexpected argument ${quoted}`;
    default:
      return message.split("\n")[0]!;
  }
}
