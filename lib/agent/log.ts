/**
 * A small leveled logger (replacing `@std/log`, which is being retired):
 * one line per event on stderr, `<ISO time> <level> [<name>] <message>`.
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

/** Writes log lines. */
export interface Logger {
  /** Whether `debug()` lines are written. */
  readonly debugEnabled: boolean;
  /** Logs a failure that needs attention. */
  error(message: string): void;
  /** Logs something unexpected that was handled. */
  warn(message: string): void;
  /** Logs a lifecycle event (listening, stopping). */
  info(message: string): void;
  /** Logs detail for troubleshooting (frames, handshakes). */
  debug(message: string): void;
  /**
   * A logger that writes the same way with a longer name.
   *
   * @param name Appended to this logger's name, e.g. a connection id.
   * @returns The new logger.
   */
  child(name: string): Logger;
}

/** Options for {@linkcode createLogger}. */
export interface LoggerOptions {
  /** The most verbose level written; `Level.INFO` by default. */
  level?: Level;
  /** Shown in brackets on each line, e.g. `"worker 1"`. */
  name?: string;
  /** Receives each finished line; `console.error` by default. */
  sink?: (line: string) => void;
  /** The time source; `() => new Date()` by default. */
  now?: () => Date;
}

/**
 * Creates a logger.
 *
 * @param options Level, name and where lines go.
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
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? Level.INFO;
  const sink = options.sink ?? ((line: string) => console.error(line));
  const now = options.now ?? (() => new Date());
  return makeLogger(level, options.name ?? "", sink, now);
}

function makeLogger(
  level: Level,
  name: string,
  sink: (line: string) => void,
  now: () => Date,
): Logger {
  const tag = name === "" ? "" : ` [${name}]`;
  const write = (at: Level, message: string) => {
    if (at <= level) sink(`${now().toISOString()} ${LABELS[at]}${tag} ${message}`);
  };
  return {
    debugEnabled: level >= Level.DEBUG,
    error: (message) => write(Level.ERROR, message),
    warn: (message) => write(Level.WARN, message),
    info: (message) => write(Level.INFO, message),
    debug: (message) => write(Level.DEBUG, message),
    child: (child) => makeLogger(level, name === "" ? child : `${name} ${child}`, sink, now),
  };
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
