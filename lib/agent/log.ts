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
  const base = name === "" ? {} : nameFields(name);
  return new LineLogger({ level, sink, now, format, base }, undefined, name, undefined);
}

/** What a logger's name says, as JSON fields. */
function nameFields(name: string): Record<string, string | number> {
  const worker = /^worker (\d+)$/.exec(name);
  if (worker) return { worker: Number(worker[1]) };
  const connection = /^#(\d+)$/.exec(name);
  if (connection) return { connection: Number(connection[1]) };
  return { component: name };
}

/** What a logger and its children share. */
interface LogConfig {
  readonly level: Level;
  readonly sink: (line: string) => void;
  readonly now: () => Date;
  readonly format: LogFormat;
  /** The root logger's fields (what its name says). */
  readonly base: LogFields;
}

/**
 * A logger as one small object, its methods shared: servers make a child per
 * connection, and thousands of connections must not cost thousands of
 * closures. A child keeps its parent, its name and its fields; the line's
 * name and fields are put together only when a line is written.
 */
class LineLogger implements Logger {
  readonly debugEnabled: boolean;
  readonly #config: LogConfig;
  readonly #parent: LineLogger | undefined;
  /** This logger's part of the name (the whole name for a root logger). */
  readonly #name: string;
  /** The fields given to `child()` (they follow those its name says). */
  readonly #fields: LogFields | undefined;

  constructor(
    config: LogConfig,
    parent: LineLogger | undefined,
    name: string,
    fields: LogFields | undefined,
  ) {
    this.debugEnabled = config.level >= Level.DEBUG;
    this.#config = config;
    this.#parent = parent;
    this.#name = name;
    this.#fields = fields;
  }

  error(message: string, fields?: LogFields): void {
    this.#write(Level.ERROR, message, fields);
  }

  warn(message: string, fields?: LogFields): void {
    this.#write(Level.WARN, message, fields);
  }

  info(message: string, fields?: LogFields): void {
    this.#write(Level.INFO, message, fields);
  }

  debug(message: string, fields?: LogFields): void {
    this.#write(Level.DEBUG, message, fields);
  }

  child(name: string, fields?: LogFields): Logger {
    return new LineLogger(this.#config, this, name, fields);
  }

  /** The full name: the parents' names, then this one's. */
  #fullName(): string {
    const parent = this.#parent === undefined ? "" : this.#parent.#fullName();
    return parent === "" ? this.#name : `${parent} ${this.#name}`;
  }

  /** The fields of every line: the parents' fields, what this name says, the child's fields. */
  #baseFields(): LogFields {
    if (this.#parent === undefined) return this.#config.base;
    return { ...this.#parent.#baseFields(), ...nameFields(this.#name), ...this.#fields };
  }

  #write(at: Level, message: string, fields: LogFields | undefined): void {
    const { level, sink, now, format } = this.#config;
    if (at > level) return;
    if (format === "text") {
      const name = this.#fullName();
      const tag = name === "" ? "" : ` [${name}]`;
      sink(`${now().toISOString()} ${LABELS[at]}${tag} ${message}`);
      return;
    }
    const line = {
      time: now().toISOString(),
      level: LABELS[at],
      ...this.#baseFields(),
      message,
      ...fields,
    };
    sink(JSON.stringify(line, jsonValue));
  }
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
