/**
 * A small leveled logger (replacing `@std/log`, which is being retired):
 * one line per event on stderr, `<ISO time> <level> [<name>] <message>`, or
 * one JSON object per line (`format: "json"`) with structured fields.
 *
 * Debug lines on hot paths should be guarded with `log.debugEnabled`, so
 * that no string is built when debug is off.
 *
 * @module
 */

/** Log levels, most severe first. */
export const Level = { ERROR: 0, WARN: 1, INFO: 2, DEBUG: 3 } as const;
/** One of the {@linkcode Level} values. */
export type Level = typeof Level[keyof typeof Level];

const LABELS = ["error", "warn", "info", "debug"] as const;

/**
 * Structured fields of a log line: in the JSON format they are keys of the
 * line's object; the text format shows the message only (which says the same).
 */
export type LogFields = Readonly<Record<string, string | number | bigint | boolean | null>>;

/** How lines are written: `text` (one readable line) or `json` (one object per line). */
export type LogFormat = "text" | "json";

/** Writes log lines. */
export interface Logger {
  /** Whether `debug()` lines are written. */
  readonly debugEnabled: boolean;
  /** Logs a failure that needs attention. */
  error(message: string, fields?: LogFields): void;
  /** Logs something unexpected that was handled. */
  warn(message: string, fields?: LogFields): void;
  /** Logs a lifecycle event (listening, stopping). */
  info(message: string, fields?: LogFields): void;
  /** Logs detail for troubleshooting (frames, handshakes). */
  debug(message: string, fields?: LogFields): void;
  /**
   * A logger that writes the same way with a longer name.
   *
   * @param name Appended to this logger's name, e.g. a connection id. In
   * JSON, `worker N` becomes the field `worker`, `#N` the field
   * `connection`, and any other name the field `component`.
   * @param fields Fields of every line of the new logger (JSON only).
   * @returns The new logger.
   */
  child(name: string, fields?: LogFields): Logger;
}

/** Options for {@linkcode createLogger}. */
export interface LoggerOptions {
  /** The most verbose level written; `Level.INFO` by default. */
  level?: Level;
  /** Shown in brackets on each line, e.g. `"worker 1"`. */
  name?: string;
  /** `text` (the default) or `json`. */
  format?: LogFormat;
  /** Receives each finished line; `console.error` by default. */
  sink?: (line: string) => void;
  /** The time source; `() => new Date()` by default. */
  now?: () => Date;
}

/**
 * Creates a logger.
 *
 * @param options Level, name, format and where lines go.
 * @returns The logger.
 *
 * @example Debug logging into an array
 * ```ts
 * import { createLogger, Level } from "./log.ts";
 *
 * const lines: string[] = [];
 * const log = createLogger({ level: Level.DEBUG, name: "main", sink: (l) => lines.push(l) });
 * log.child("conn 1").debug("HELLO received");
 * // lines[0] ends with "debug [main conn 1] HELLO received"
 * ```
 *
 * @example One JSON object per line
 * ```ts
 * import { createLogger } from "./log.ts";
 *
 * const lines: string[] = [];
 * const log = createLogger({ format: "json", name: "worker 2", sink: (l) => lines.push(l) });
 * log.child("#7", { peer: "10.0.0.5:41000" }).warn("closing", { status: 2 });
 * // JSON.parse(lines[0]!) has level "warn", worker 2, connection 7, peer, message and status
 * ```
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? Level.INFO;
  const sink = options.sink ?? ((line: string) => console.error(line));
  const now = options.now ?? (() => new Date());
  const name = options.name ?? "";
  const format = options.format ?? "text";
  if (format !== "text" && format !== "json") {
    throw new TypeError(`Cannot use log format ${JSON.stringify(format)}: use "text" or "json"`);
  }
  return makeLogger(level, name, sink, now, format, name === "" ? {} : nameFields(name));
}

/** What a logger's name says, as JSON fields. */
function nameFields(name: string): Record<string, string | number> {
  const worker = /^worker (\d+)$/.exec(name);
  if (worker) return { worker: Number(worker[1]) };
  const connection = /^#(\d+)$/.exec(name);
  if (connection) return { connection: Number(connection[1]) };
  return { component: name };
}

function makeLogger(
  level: Level,
  name: string,
  sink: (line: string) => void,
  now: () => Date,
  format: LogFormat,
  base: LogFields,
): Logger {
  const tag = name === "" ? "" : ` [${name}]`;
  const write = format === "text"
    ? (at: Level, message: string) => {
      if (at <= level) sink(`${now().toISOString()} ${LABELS[at]}${tag} ${message}`);
    }
    : (at: Level, message: string, fields?: LogFields) => {
      if (at > level) return;
      const line = { time: now().toISOString(), level: LABELS[at], ...base, message, ...fields };
      sink(JSON.stringify(line, jsonValue));
    };
  return {
    debugEnabled: level >= Level.DEBUG,
    error: (message, fields) => write(Level.ERROR, message, fields),
    warn: (message, fields) => write(Level.WARN, message, fields),
    info: (message, fields) => write(Level.INFO, message, fields),
    debug: (message, fields) => write(Level.DEBUG, message, fields),
    child: (child, fields) =>
      makeLogger(level, name === "" ? child : `${name} ${child}`, sink, now, format, {
        ...base,
        ...nameFields(child),
        ...fields,
      }),
  };
}

/** 64-bit ids are bigints: JSON gets them as strings. */
function jsonValue(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}

/**
 * An error in full for a log line about a failure: its stack when it has
 * one, so that the failing code can be found.
 *
 * @param err Anything thrown.
 * @returns The stack, the message, or the value as text.
 */
export function errorDetail(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}

/**
 * The text of an error for a log line or a message: its message, plus its
 * `code` when the message does not mention it (Bun's bind errors say only
 * "Failed to listen" and keep `EADDRINUSE` in `code`).
 *
 * @param err Anything thrown.
 * @returns One line of text.
 */
export function errorText(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && !message.includes(code) ? `${message} (${code})` : message;
}
