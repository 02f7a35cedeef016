/**
 * Checks of the options a library user passes, where they enter (`serve()`
 * and the acceptor it builds): the same bounds as the command line's, and
 * errors that name the option, so that a wrong value fails at start rather
 * than as odd behaviour under load.
 *
 * @module
 */

import { MAX_FRAME_SIZE_LIMIT, MIN_MAX_FRAME_SIZE } from "../spop/_constants.ts";
import {
  DEFAULT_REFERENCE_KNOBS,
  DEFAULT_SESSION_OPTIONS,
  type ReferenceKnobs,
  type SessionConfig,
  type SessionOptions,
} from "./session.ts";

type Check = (name: string, value: unknown) => void;

/** An integer in [min, max]. */
function integer(min: number, max = Number.MAX_SAFE_INTEGER): Check {
  return (name, value) => {
    if (typeof value !== "number") throw notA(name, value, "a number");
    if (!Number.isInteger(value) || value < min || value > max) {
      const range = max === Number.MAX_SAFE_INTEGER
        ? `of at least ${min}`
        : `from ${min} to ${max}`;
      throw new RangeError(`Cannot use ${name} ${value}: it must be an integer ${range}`);
    }
  };
}

/** Milliseconds: a finite number of at least `min`. */
function millis(min: number): Check {
  return (name, value) => {
    if (typeof value !== "number") throw notA(name, value, "a number of milliseconds");
    if (!Number.isFinite(value) || value < min) {
      throw new RangeError(
        `Cannot use ${name} ${value}: it must be ${
          min === 0 ? "0 or more" : `at least ${min}`
        } milliseconds`,
      );
    }
  };
}

const boolean: Check = (name, value) => {
  if (typeof value !== "boolean") throw notA(name, value, "a boolean");
};

function notA(name: string, value: unknown, what: string): TypeError {
  const shown = typeof value === "string" ? JSON.stringify(value) : String(value);
  return new TypeError(`Cannot use ${name} ${shown}: it must be ${what}`);
}

const SESSION_CHECKS: Record<keyof SessionOptions, Check> = {
  maxFrameSize: integer(MIN_MAX_FRAME_SIZE, MAX_FRAME_SIZE_LIMIT),
  pipelining: boolean,
  async: boolean,
  fragmentation: boolean,
  helloTimeout: millis(1),
  emptyAcks: boolean,
  maxInFlight: integer(1),
  maxQueuedBytes: integer(1),
  maxReassembledSize: integer(MIN_MAX_FRAME_SIZE),
  handlerTimeout: millis(0),
  frameTimeout: millis(1),
  maxLateHandlers: integer(1),
};

const KNOB_CHECKS: Record<keyof ReferenceKnobs, Check> = {
  replyDelay: millis(0),
  closeAfterFrames: integer(0),
};

/**
 * Checks the keys of an options object against the ones a function knows.
 *
 * @param where The function, for the message (e.g. `serve()`).
 * @param options The object.
 * @param known Every key it may have.
 * @throws {TypeError} For an unknown key (a typo would otherwise be ignored).
 */
export function checkKeys(where: string, options: object, known: readonly string[]): void {
  if (typeof options !== "object" || options === null) {
    throw new TypeError(`Cannot use the options of ${where}: they must be an object`);
  }
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new TypeError(`Cannot use option ${JSON.stringify(key)}: ${where} has no such option`);
    }
  }
}

/** The session options' names. */
export const SESSION_OPTION_KEYS: readonly string[] = Object.keys(SESSION_CHECKS);

/**
 * Fills in and checks session options; `undefined` means the default.
 *
 * @param options Session options, as given.
 * @param knobs The reference agent's test knobs (the CLI's `-t`, `-f`).
 * @returns The complete configuration.
 * @throws {RangeError} For a value out of range, naming the option.
 * @throws {TypeError} For a value of the wrong type.
 */
export function sessionConfig(
  options: Partial<SessionOptions>,
  knobs: Partial<ReferenceKnobs> = {},
): SessionConfig {
  const config: SessionConfig = { ...DEFAULT_SESSION_OPTIONS, ...DEFAULT_REFERENCE_KNOBS };
  const target = config as unknown as Record<string, unknown>;
  fill(target, options, SESSION_CHECKS);
  checkKeys("reference", knobs, Object.keys(KNOB_CHECKS));
  fill(target, knobs, KNOB_CHECKS);
  return config;
}

function fill<K extends string>(
  config: Record<string, unknown>,
  given: Partial<Record<K, unknown>>,
  checks: Record<K, Check>,
): void {
  for (const key of Object.keys(checks) as K[]) {
    const value = given[key];
    if (value === undefined) continue;
    checks[key](key, value);
    config[key] = value;
  }
}

/**
 * Checks a listening address.
 *
 * @param hostname The address to bind.
 * @param port The port.
 * @throws {TypeError} For a hostname that is not a non-empty string.
 * @throws {RangeError} For a port outside 0..65535.
 */
export function checkAddress(hostname: unknown, port: unknown): void {
  if (typeof hostname !== "string" || hostname === "") {
    throw notA("hostname", hostname, "a non-empty string");
  }
  integer(0, 65535)("port", port);
}

/**
 * Checks `maxConnections`.
 *
 * @param value The value given, if any.
 * @throws {RangeError} Below 1.
 */
export function checkMaxConnections(value: unknown): void {
  if (value !== undefined) integer(1)("maxConnections", value);
}

/**
 * Checks a Unix socket's path and mode.
 *
 * @param path The socket file.
 * @param mode Its mode, if given.
 * @throws {TypeError} For an empty path or one with a NUL byte.
 * @throws {RangeError} For a mode outside 0..0o777.
 */
export function checkSocket(path: unknown, mode: unknown): void {
  if (typeof path !== "string" || path === "" || path.includes("\0")) {
    throw new TypeError(`Cannot use path ${JSON.stringify(path)}: give the socket file's path`);
  }
  if (
    mode !== undefined && (typeof mode !== "number" || !Number.isInteger(mode) || mode < 0 ||
      mode > 0o777)
  ) {
    throw new RangeError(
      `Cannot use socketMode ${String(mode)}: it must be a mode from 0 to 0o777`,
    );
  }
}

/**
 * Checks TLS material: PEM text for both, and TCP (not a Unix socket).
 *
 * @param tls The certificate and key.
 * @param path A Unix socket's path, if one is used.
 * @throws {TypeError} For anything else.
 */
export function checkTls(tls: unknown, path: unknown): void {
  const t = tls as { cert?: unknown; key?: unknown } | null;
  if (
    typeof t !== "object" || t === null || typeof t.cert !== "string" ||
    typeof t.key !== "string" || !t.cert.includes("-----BEGIN") || !t.key.includes("-----BEGIN")
  ) {
    throw new TypeError("Cannot use tls: give { cert, key } as PEM text");
  }
  if (path !== undefined) throw new TypeError("Cannot use tls with a Unix socket: TLS is for TCP");
}
