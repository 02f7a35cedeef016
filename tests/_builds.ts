/**
 * The outside programs that tests and benchmarks run, found through the
 * environment so that the project never carries them:
 *
 * - `SPOA_HAPROXY_BINS`: the HAProxy executables to test against, separated
 *   by `:` as in `PATH` (names are looked up on `PATH`). Unset or empty, it is
 *   Debian's `haproxy` alone. `.ci/run` sets it to `haproxy` and
 *   `../shared/bin/haproxy-3.4`.
 * - `SPOA_C_AGENT_BIN`: HAProxy's C example agent (`haproxy/spoa-example`),
 *   for side-by-side benchmarks. Unset, there is none.
 *
 * ```sh
 * SPOA_HAPROXY_BINS=haproxy:/opt/haproxy-3.2/sbin/haproxy npm test
 * ```
 *
 * @module
 */

import { spawnSync } from "node:child_process";
import { delimiter } from "node:path";
import process from "node:process";

/** One HAProxy executable, as `-v` describes it. */
export interface HaproxyBuild {
  /** The executable: a path, or a name looked up on `PATH`. */
  readonly bin: string;
  /**
   * Its version, e.g. `2.6.12`, `3.4.0`, `3.5-dev6`; empty when it could not
   * be run (then {@linkcode HaproxyBuild.error} says why).
   */
  readonly version: string;
  /** Major and minor version, e.g. `[3, 4]`. */
  readonly release: readonly [number, number];
  /**
   * True for the SPOE engine of HAProxy 1.8 to 3.0 (applets, async,
   * fragmentation, `timeout hello`/`idle`); false for the engine rewritten in
   * 3.1 (`mode spop`, pooled connections, neither async nor fragmentation).
   */
  readonly legacy: boolean;
  /** For test names and reports, e.g. `HAProxy 2.6.12`. */
  readonly label: string;
  /** The first line `-v` printed (empty when it could not be run). */
  readonly versionLine: string;
  /** Why the executable could not be used, when it could not. */
  readonly error?: string;
}

/**
 * Reads a version line (`HAProxy version 2.6.12-1+deb12u4 2026/10/17 - ...`).
 *
 * @param line The first line of `haproxy -v`.
 * @returns The version (`2.6.12`, `3.5-dev6`) and its major and minor, or
 *   undefined when the line is not HAProxy's.
 */
export function parseHaproxyVersion(
  line: string,
): { version: string; release: [number, number] } | undefined {
  const match = /^HA-?Proxy version (\d+)\.(\d+)((?:\.\d+)|(?:-dev\d*))?/.exec(line);
  if (!match) return undefined;
  return {
    version: `${match[1]}.${match[2]}${match[3] ?? ""}`,
    release: [Number(match[1]), Number(match[2])],
  };
}

function describe(bin: string): HaproxyBuild {
  const run = spawnSync(bin, ["-v"], { encoding: "utf8", timeout: 10_000 });
  const failed = (error: string): HaproxyBuild => ({
    bin,
    version: "",
    release: [0, 0],
    legacy: false,
    label: `HAProxy at ${bin}`,
    versionLine: "",
    error,
  });
  if (run.error) return failed(`${bin} cannot be run: ${run.error.message}`);
  if (run.status !== 0) return failed(`${bin} -v exited with ${run.status}: ${run.stderr.trim()}`);
  const versionLine = run.stdout.split("\n")[0] ?? "";
  const parsed = parseHaproxyVersion(versionLine);
  if (!parsed) return failed(`${bin} -v printed no HAProxy version: ${run.stdout.slice(0, 200)}`);
  const [major, minor] = parsed.release;
  return {
    bin,
    version: parsed.version,
    release: parsed.release,
    legacy: major < 3 || (major === 3 && minor === 0),
    label: `HAProxy ${parsed.version}`,
    versionLine,
  };
}

let cached: HaproxyBuild[] | undefined;

/**
 * Every HAProxy of `SPOA_HAPROXY_BINS` (Debian's `haproxy` when unset), in
 * the order given, each run once with `-v`. One that cannot be run is kept,
 * with {@linkcode HaproxyBuild.error} set, so that the tests using it fail
 * rather than skip. Two entries of the same version are told apart by their
 * path in {@linkcode HaproxyBuild.label}.
 *
 * @returns The builds, at least one.
 */
export function haproxyBuilds(): HaproxyBuild[] {
  if (cached) return cached;
  const listed = (process.env.SPOA_HAPROXY_BINS ?? "").split(delimiter).filter((s) => s !== "");
  const builds = (listed.length > 0 ? listed : ["haproxy"]).map(describe);
  cached = builds.map((b) =>
    builds.some((o) => o !== b && o.label === b.label)
      ? { ...b, label: `${b.label} (${b.bin})` }
      : b
  );
  return cached;
}

/**
 * Throws when a build cannot be used, with a hint for the usual cause.
 *
 * @param build The build.
 * @returns The build.
 */
export function usable(build: HaproxyBuild): HaproxyBuild {
  if (build.error === undefined) return build;
  const hint = build.bin === "haproxy"
    ? " (apt-get install -y haproxy; CI's .ci/run does)"
    : " (SPOA_HAPROXY_BINS lists it)";
  throw new Error(build.error + hint);
}

/**
 * HAProxy's C example agent, from `SPOA_C_AGENT_BIN`.
 *
 * @returns Its path, or undefined when the variable is unset or empty.
 */
export function cAgentBin(): string | undefined {
  return process.env.SPOA_C_AGENT_BIN || undefined;
}
