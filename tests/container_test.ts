/**
 * The container image (Containerfile, tools/build-image.sh): built with
 * buildah on vfs storage, run with podman and runc on the host network, it
 * answers SPOP from the host, stops on SIGTERM as PID 1 with status 0, runs
 * as a non-root user and holds nothing but the executable and its libraries.
 *
 * buildah, podman and runc are required: when one is missing the test
 * installs them with apt-get (as root) or fails. It never skips.
 *
 * The image is built once per source state: the script compiles
 * dist/spoa-bun when it is missing or older than the sources, and reuses the
 * image whose `spoa.context.sha256` label matches its context, so the Deno
 * and the Bun run of the suite build it once between them.
 *
 * @module
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { accessSync, constants, readdirSync, readFileSync, statSync } from "node:fs";
import { delimiter, join, relative } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { FrameType, Status } from "../lib/spop.ts";
import { SpopClient } from "./_spop_client.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CONTEXT = join(ROOT, "dist", "image");
const IMAGE = "localhost/spoa:latest";
/** Every podman call uses the storage driver buildah built the image with. */
const PODMAN = ["podman", "--storage-driver", "vfs"];
const TOOLS = ["buildah", "podman", "runc"];
const INSTALL = "apt-get install -y buildah podman runc";
/** Building the image (and perhaps compiling the binary, installing the tools) takes a while. */
const TEST_TIMEOUT_MS = 300_000;
/** How long one command may run before it is killed (a hang guard). */
const COMMAND_WAIT_MS = 240_000;
/** How long the container may take to print its `listening on` line. */
const LISTEN_WAIT_MS = 60_000;
/** podman stop's own timeout before SIGKILL; the agent must exit well before. */
const STOP_TIMEOUT_S = 10;
const RUNTIME = globalThis.navigator?.userAgent?.startsWith("Bun/") ? "bun" : "deno";
/** The PATH for every command: Debian puts runc in /usr/sbin, which a user's PATH may lack. */
const PATH = [
  ...new Set([...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/sbin"]),
].filter((dir) => dir !== "").join(delimiter);

interface Result {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion, killing it after the hang guard. */
function run(
  cmd: string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd[0]!, cmd.slice(1), {
      cwd: ROOT,
      env: { ...process.env, PATH, ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.setEncoding("utf8");
    child.stderr!.setEncoding("utf8");
    child.stdout!.on("data", (s: string) => stdout += s);
    child.stderr!.on("data", (s: string) => stderr += s);
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? COMMAND_WAIT_MS);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Runs a command and fails with its output unless it exits 0. */
async function runOk(cmd: string[], options: { env?: Record<string, string> } = {}) {
  const result = await run(cmd, options);
  assert.equal(
    result.code,
    0,
    `${cmd.join(" ")} exited with ${
      result.code ?? result.signal
    }\n${result.stdout}${result.stderr}`,
  );
  return result;
}

function onPath(name: string): boolean {
  for (const dir of PATH.split(delimiter)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {
      // Not here.
    }
  }
  return false;
}

/** Installs buildah, podman and runc when one is missing, or fails saying how to. */
async function ensureTools(): Promise<void> {
  const missing = TOOLS.filter((tool) => !onPath(tool));
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    assert.fail(`${missing.join(", ")} missing and not root: run \`sudo ${INSTALL}\``);
  }
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const install = INSTALL.split(" ");
  let result = await run(install, { env });
  if (result.code !== 0) {
    // A fresh machine may have no package lists yet.
    await runOk(["apt-get", "update", "-qq"], { env });
    result = await run(install, { env });
  }
  assert.equal(result.code, 0, `${INSTALL} failed:\n${result.stdout}${result.stderr}`);
  const still = TOOLS.filter((tool) => !onPath(tool));
  assert.deepEqual(still, [], `still missing after ${INSTALL}`);
}

let building: Promise<string> | undefined;

/**
 * Builds the image with tools/build-image.sh (a no-op when it is up to date),
 * once per test file run.
 *
 * @returns The script's output.
 */
function buildImage(): Promise<string> {
  building ??= (async () => {
    await ensureTools();
    const { stdout, stderr } = await runOk(["bash", "tools/build-image.sh"]);
    return stdout + stderr;
  })();
  return building;
}

/**
 * The limits to give the container. podman's defaults (nofile 1048576) are above the hard
 * limit on some hosts, and runc cannot raise one: "error setting rlimit type 7 (nofile) /
 * type 6 (nproc): operation not permitted". Here nproc above 32768 (pid_max) failed too,
 * although the hard limit is higher: a few thousand threads of uid 65532 are plenty.
 */
function ulimits(): string[] {
  const limits = readFileSync("/proc/self/limits", "utf8");
  const hard = (what: string, cap: number) => {
    const value = new RegExp(`^${what}\\s+\\S+\\s+(\\S+)`, "m").exec(limits)?.[1];
    return value === undefined || value === "unlimited" ? cap : Math.min(Number(value), cap);
  };
  const nofile = hard("Max open files", 65536);
  const nproc = hard("Max processes", 4096);
  return ["--ulimit", `nofile=${nofile}:${nofile}`, "--ulimit", `nproc=${nproc}:${nproc}`];
}

/** Flags for `podman run` that work here: runc, the host's network, limits it may set. */
function runFlags(name: string): string[] {
  return ["run", "--rm", "--name", name, "--runtime", "runc", "--network", "host", ...ulimits()];
}

function containerName(what: string): string {
  return `spoa-test-${what}-${RUNTIME}-${process.pid}-${Date.now().toString(36)}`;
}

async function removeContainer(name: string): Promise<void> {
  await run([...PODMAN, "rm", "--force", "--ignore", "--time", "0", name]);
}

/** Every file under `dir`, relative to it. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const path = join(entry.parentPath, entry.name);
    if (entry.isFile()) out.push(relative(dir, path));
  }
  return out.sort();
}

test(
  "tools/build-image.sh builds localhost/spoa from scratch with the executable and its libraries",
  {
    timeout: TEST_TIMEOUT_MS,
  },
  async () => {
    const output = await buildImage();
    assert.match(output, /^image - binary: \d+ bytes/m, output);
    const version = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version as string;
    const ids = await runOk([
      ...PODMAN,
      "image",
      "inspect",
      "--format",
      "{{.Id}}",
      `localhost/spoa:${version}`,
      IMAGE,
    ]);
    const [versioned, latest] = ids.stdout.trim().split("\n");
    assert.equal(versioned, latest, `localhost/spoa:${version} and :latest differ`);
    // The context holds the executable and what `ldd` lists, nothing else.
    const files = filesUnder(CONTEXT);
    assert.ok(files.includes("spoa"), files.join(" "));
    for (const file of files.filter((f) => f !== "spoa")) {
      assert.match(file, /^libs\/.+\.so(\.\d+)*$/, `unexpected file in the context: ${file}`);
    }
    assert.ok(statSync(join(CONTEXT, "spoa")).size > 1_000_000);
  },
);

test("the image runs as a non-root numeric user and holds only /spoa and its libraries", {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await buildImage();
  const { stdout } = await runOk([
    ...PODMAN,
    "image",
    "inspect",
    "--format",
    "{{json .Config}}",
    IMAGE,
  ]);
  const config = JSON.parse(stdout) as {
    User?: string;
    Entrypoint?: string[];
    ExposedPorts?: Record<string, unknown>;
    Labels?: Record<string, string>;
  };
  const match = /^(\d+)(?::(\d+))?$/.exec(config.User ?? "");
  assert.ok(match, `User should be a numeric uid[:gid], is "${config.User}"`);
  assert.notEqual(Number(match[1]), 0, "the image runs as root");
  if (match[2] !== undefined) assert.notEqual(Number(match[2]), 0, "the image's group is root");
  assert.deepEqual(config.Entrypoint, ["/spoa"]);
  assert.ok(config.ExposedPorts && "12345/tcp" in config.ExposedPorts, stdout);
  assert.match(config.Labels?.["spoa.context.sha256"] ?? "", /^[0-9a-f]{64}$/);

  // The container's file system is exactly the build context's files.
  const name = containerName("export");
  try {
    await runOk([...PODMAN, "create", "--name", name, IMAGE]);
    const listing = await runOk([
      "bash",
      "-o",
      "pipefail",
      "-c",
      'podman --storage-driver vfs export "$1" | tar -t',
      "export",
      name,
    ]);
    const inImage = listing.stdout.split("\n").filter((p) => p !== "" && !p.endsWith("/"))
      .map((p) => p.replace(/^\.?\//, "")).sort();
    const expected = filesUnder(CONTEXT).map((f) => f === "spoa" ? f : f.replace(/^libs\//, ""))
      .sort();
    assert.deepEqual(inImage, expected);
    assert.ok(!inImage.some((p) => /(^|\/)(sh|bash|busybox)$/.test(p)), inImage.join(" "));
  } finally {
    await removeContainer(name);
  }

  // No shell to run.
  const shell = containerName("sh");
  try {
    const result = await run([
      ...PODMAN,
      ...runFlags(shell),
      "--entrypoint",
      "/bin/sh",
      IMAGE,
      "-c",
      "true",
    ]);
    assert.notEqual(result.code, 0, "/bin/sh ran in the image");
    assert.match(result.stderr, /\/bin\/sh.*(no such file|not found)/i, result.stderr);
  } finally {
    await removeContainer(shell);
  }
});

test("the container answers HELLO and NOTIFY from the host, then exits 0 on SIGTERM as PID 1", {
  timeout: TEST_TIMEOUT_MS,
}, async () => {
  await buildImage();
  const name = containerName("run");
  // Read-only, no tmpfs, no capabilities: the agent writes nothing and needs no privilege.
  const child = spawn(PODMAN[0]!, [
    ...PODMAN.slice(1),
    ...runFlags(name),
    "--read-only",
    "--read-only-tmpfs=false",
    "--cap-drop",
    "all",
    "--security-opt",
    "no-new-privileges",
    IMAGE,
    // Port 0: the kernel picks a free one, the `listening on` line tells it.
    "-p",
    "0",
    "-a",
    "127.0.0.1",
    "-n",
    "2",
  ], { cwd: ROOT, env: { ...process.env, PATH }, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stdout!.resume();
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (s: string) => stderr += s);
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => resolve({ code, signal }));
  });
  let client: SpopClient | undefined;
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`No "listening on" line; stderr: ${stderr}`)),
        LISTEN_WAIT_MS,
      );
      const check = () => {
        const match = /^\S+ info \[main\] listening on 127\.0\.0\.1:(\d+) with 2 workers/m
          .exec(stderr);
        if (match) {
          clearTimeout(timer);
          child.stderr!.off("data", check);
          resolve(Number(match[1]));
        }
      };
      child.stderr!.on("data", check);
      void exited.then((exit) => {
        clearTimeout(timer);
        reject(new Error(`podman run exited with ${exit.code ?? exit.signal}: ${stderr}`));
      });
    });

    client = await SpopClient.connect(port);
    const hello = await client.hello();
    assert.equal(hello.hello?.version, "2.0");
    const ack = await client.notify(1, 1);
    assert.equal(ack.type, FrameType.ACK);
    assert.equal(ack.actions?.length, 1);
    const action = ack.actions?.[0];
    assert.equal(action?.name, "ip_score");
    assert.equal(typeof action?.value, "number");

    // The agent is PID 1: only its own handler makes SIGTERM do anything.
    const pid1 = await runOk([...PODMAN, "top", name, "pid", "user", "args"]);
    assert.match(pid1.stdout, /^\s*1\s+65532\s+\/spoa /m, pid1.stdout);

    const start = performance.now();
    const stop = await run([...PODMAN, "stop", "--time", String(STOP_TIMEOUT_S), name]);
    const exit = await exited;
    const tookMs = performance.now() - start;
    assert.equal(stop.code, 0, stop.stderr);
    assert.deepEqual(exit, { code: 0, signal: null }, stderr);
    assert.ok(
      tookMs < (STOP_TIMEOUT_S * 1000) / 2,
      `stopping took ${Math.round(tookMs)} ms: SIGTERM was ignored, SIGKILL came after the timeout`,
    );
    assert.match(stderr, /info SIGTERM: draining/);
    assert.match(stderr, /info stopped$/m);
    assert.doesNotMatch(stderr, / (error|warn) /, stderr);
    // The open connection was drained with an AGENT-DISCONNECT, then closed.
    const bye = await client.nextFrame();
    assert.equal(bye.type, FrameType.AGENT_DISCONNECT);
    assert.equal(bye.disconnect?.status, Status.NORMAL);
    await client.closed();
  } finally {
    await client?.close();
    await removeContainer(name);
    await exited.catch(() => {});
  }
});
