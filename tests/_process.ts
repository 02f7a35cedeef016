/**
 * Runs `main.ts` as a subprocess with the runtime that runs the tests
 * (`process.execPath`): `deno run --allow-net main.ts ...` under Deno,
 * `bun main.ts ...` under Bun. Processes are stopped by PID.
 *
 * @module
 */

import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** How long a helper waits before it gives up (a hang guard, not a speed check). */
export const PROCESS_WAIT_MS = 15_000;

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const LIB = fileURLToPath(new URL("../lib", import.meta.url));

/** How a process ended. */
export interface Exit {
  /** The exit code, or `null` when a signal ended it. */
  code: number | null;
  /** The signal that ended it, if any. */
  signal: string | null;
  /** Everything it wrote to stdout. */
  stdout: string;
  /** Everything it wrote to stderr. */
  stderr: string;
}

/** A running agent. */
export interface AgentProcess {
  /** Its PID. */
  readonly pid: number;
  /** The port from its `listening on` line. */
  readonly port: number;
  /** Its stdout so far. */
  readonly stdout: string;
  /** Its stderr so far. */
  readonly stderr: string;
  /** Resolves when it exits. */
  readonly exited: Promise<Exit>;
  /**
   * Sends a signal by PID and waits for the exit; SIGKILL after the hang
   * guard. Safe to call after the process has exited.
   *
   * @param signal SIGTERM by default.
   * @returns How it ended.
   */
  stop(signal?: NodeJS.Signals): Promise<Exit>;
}

/**
 * The agent executable under test, when it is a compiled binary rather than
 * `main.ts` (`SPOA_AGENT_BIN`, set by the test runner for `dist/` builds).
 */
export const AGENT_BIN: string | undefined = process.env.SPOA_AGENT_BIN || undefined;

/**
 * The command that runs the agent: the binary in `SPOA_AGENT_BIN`, or
 * `main.ts` with the current runtime.
 *
 * @param args Arguments for the agent.
 * @returns The executable and its arguments.
 */
export function mainCommand(args: string[]): [string, string[]] {
  if (AGENT_BIN !== undefined) return [AGENT_BIN, args];
  const agent = globalThis.navigator?.userAgent ?? "";
  if (agent.startsWith("Deno/")) {
    /** The folder of a flag's file, when the flag is given a file path. */
    const folderOf = (flag: string) => {
      const at = args.indexOf(flag);
      const value = at < 0 ? undefined : args[at + 1];
      return value === undefined || /^\w+:/.test(value)
        ? undefined
        : path.dirname(path.resolve(ROOT, value));
    };
    // A Unix socket (-a unix:PATH) is read and written in its folder.
    const socket = args.find((a) => a.startsWith("unix:"))?.slice("unix:".length);
    const folder = socket === undefined ? undefined : path.dirname(socket);
    // The IP-reputation lists (FILE or FILE=SCORE, repeatable) are read where they are.
    const lists = args.flatMap((a, i) =>
      (args[i - 1] === "--block" || args[i - 1] === "--allow")
        ? [path.dirname(path.resolve(ROOT, a.replace(/=\d+$/, "")))]
        : []
    );
    // The agent module and TLS files are read where they are.
    const reads = [
      LIB,
      folderOf("--agent"),
      folderOf("--tls-cert"),
      folderOf("--tls-key"),
      folder,
      ...lists,
    ].filter((f) => f !== undefined).join(",");
    return [process.execPath, [
      "run",
      "--allow-net",
      `--allow-read=${reads}`,
      ...(folder === undefined ? [] : [`--allow-write=${folder}`]),
      // The SPOA_* variables (lib/cli.ts), as the README's commands allow.
      "--allow-env",
      MAIN,
      ...args,
    ]];
  }
  if (agent.startsWith("Bun/")) return [process.execPath, [MAIN, ...args]];
  throw new Error(`Cannot run main.ts on "${agent}"`);
}

interface Spawned {
  child: ChildProcess;
  out: { stdout: string; stderr: string };
  exited: Promise<Exit>;
}

function spawnMain(args: string[], fdLimit?: number, env: Record<string, string> = {}): Spawned {
  let [cmd, argv] = mainCommand(args);
  if (fdLimit !== undefined) {
    // POSIX sh lowers RLIMIT_NOFILE, then execs: the PID stays the agent's.
    argv = ["-c", 'ulimit -n "$0" && exec "$@"', String(fdLimit), cmd, ...argv];
    cmd = "/bin/sh";
  }
  const child = spawn(cmd, argv, {
    cwd: ROOT,
    env: { ...process.env, NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const out = { stdout: "", stderr: "" };
  child.stdout!.setEncoding("utf8");
  child.stderr!.setEncoding("utf8");
  child.stdout!.on("data", (s: string) => out.stdout += s);
  child.stderr!.on("data", (s: string) => out.stderr += s);
  const exited = new Promise<Exit>((resolve, reject) => {
    child.once("error", reject);
    // "close" comes after both pipes ended, so the output is complete.
    child.once("close", (code, signal) => resolve({ code, signal, ...out }));
  });
  return { child, out, exited };
}

function killByPid(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

async function withGuard(spawned: Spawned, what: string): Promise<Exit> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      killByPid(spawned.child.pid, "SIGKILL");
      reject(new Error(`Timed out waiting for ${what}; stderr: ${spawned.out.stderr}`));
    }, PROCESS_WAIT_MS);
  });
  try {
    return await Promise.race([spawned.exited, guard]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs `main.ts` to completion (for `-h`, `--version`, bad flags). A process
 * still running after the hang guard is killed and the call rejects.
 *
 * @param args Arguments for `main.ts`.
 * @returns How it ended, with its output.
 */
export function runMain(args: string[], env: Record<string, string> = {}): Promise<Exit> {
  return withGuard(spawnMain(args, undefined, env), `main.ts ${args.join(" ")} to exit`);
}

/** Options of {@linkcode startAgent}. */
export interface StartOptions {
  /** Run with this limit on open files (`ulimit -n`, through /bin/sh). */
  fdLimit?: number;
  /** More environment variables (e.g. `SPOA_WORKERS`). */
  env?: Record<string, string>;
}

/**
 * Starts the agent on 127.0.0.1 and a free port (`-p 0 -a 127.0.0.1` come
 * first; later flags may add to them) and waits for its `listening on` line.
 *
 * @param args More arguments for `main.ts`.
 * @param options How to run it.
 * @returns The running agent.
 */
export async function startAgent(
  args: string[] = [],
  options: StartOptions = {},
): Promise<AgentProcess> {
  const spawned = spawnMain(["-p", "0", "-a", "127.0.0.1", ...args], options.fdLimit, options.env);
  const { child, out, exited } = spawned;
  const stop = async (signal: NodeJS.Signals = "SIGTERM"): Promise<Exit> => {
    if (child.exitCode === null && child.signalCode === null) killByPid(child.pid, signal);
    return await withGuard(spawned, `the agent (PID ${child.pid}) to exit on ${signal}`);
  };
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`No "listening on" line; stderr: ${out.stderr}`)),
        PROCESS_WAIT_MS,
      );
      const check = () => {
        // The main thread's line, not a worker's: workers bind before the pool is ready.
        const match = /^\S+ info (?:\[main\] )?listening on (\S+):(\d+)/m.exec(out.stderr) ??
          // --log-format json
          /^\{"time":"[^"]*","level":"info",(?:"component":"main",)?"message":"listening on ([^"]+):(\d+)/m
            .exec(out.stderr);
        // A Unix socket: no port.
        const unix = /^\S+ info (?:\[main\] )?listening on unix:/m.test(out.stderr);
        if (match || unix) {
          clearTimeout(timer);
          child.stderr!.off("data", check);
          resolve(match ? Number(match[2]) : 0);
        }
      };
      child.stderr!.on("data", check);
      void exited.then((exit) => {
        clearTimeout(timer);
        reject(new Error(`The agent exited with ${exit.code} before listening: ${exit.stderr}`));
      }, reject);
      check();
    });
  } catch (err) {
    await stop("SIGKILL").catch(() => {});
    throw err;
  }
  return {
    pid: child.pid!,
    port,
    get stdout() {
      return out.stdout;
    },
    get stderr() {
      return out.stderr;
    },
    exited,
    stop,
  };
}
