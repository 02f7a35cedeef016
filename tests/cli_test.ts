import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import net from "node:net";
import { type CliOptions, parseCli, USAGE, UsageError } from "../lib/cli.ts";
import { seededScore } from "../lib/iprep/mod.ts";
import { VERSION } from "../lib/version.ts";
import { FrameType, Status } from "../lib/spop.ts";
import { runMain, startAgent } from "./_process.ts";
import { type ReceivedFrame, SpopClient } from "./_spop_client.ts";

const DEFAULTS: CliOptions = {
  help: false,
  version: false,
  debug: false,
  port: 12345,
  workers: 5,
  maxFrameSize: 16384,
  pipelining: true,
  async: false,
  fragmentation: false,
  replyDelay: 0,
  closeAfterFrames: 0,
  address: "0.0.0.0",
  socketPath: undefined,
  socketMode: undefined,
  tls: undefined,
  dispatch: "reuseport",
  maxConnections: 10_000,
  handlerTimeout: 50,
  seed: undefined,
  serviceArgs: [],
  logFormat: "text",
  metrics: undefined,
  agent: undefined,
  agentArgs: [],
};

/** Bad command lines and the flag each error must name. */
const BAD: [string[], string][] = [
  [["-p", "70000"], "-p"],
  [["-p", "abc"], "-p"],
  [["-p", "-1"], "-p"],
  [["-n", "-1"], "-n"],
  [["--workers=-1"], "-n"],
  [["-m", "255"], "-m"],
  [["-m", "16777217"], "-m"],
  [["-c", "bogus"], "-c"],
  [["--dispatch", "threads"], "--dispatch"],
  [["--log-format", "xml"], "--log-format"],
  [["-a", "unix:"], "-a"],
  [["-a", "unix:/tmp/x.sock", "--socket-mode", "999"], "--socket-mode"],
  [["--socket-mode", "0660"], "--socket-mode"],
  [["--tls-cert", "c.pem"], "--tls-key"],
  [["--tls-cert", "c.pem", "--tls-key", "k.pem", "-a", "unix:/tmp/s"], "--tls-cert"],
  [["--max-connections", "0"], "--max-connections"],
  [["--handler-timeout", "5m"], "--handler-timeout"],
  [["-c", "async,bogus"], "-c"],
  [["-t", "10h"], "-t"],
  [["-t", "61s"], "-t"],
  [["-t", "ms"], "-t"],
  [["-f", "0"], "-f"],
  [["-a", ""], "-a"],
  [["--seed", "4294967296"], "--seed"],
  [["--seed", "1.5"], "--seed"],
  [["--bogus"], "--bogus"],
  [["-x"], "-x"],
  [["-p"], "-p"],
  [["-p", "1", "extra"], "extra"],
];

function usageError(flag: string) {
  return (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected UsageError, got ${err}`);
    assert.ok(err.message.includes(flag), `"${err.message}" does not name ${flag}`);
    assert.ok(!err.message.includes("\n"), `"${err.message}" is not one line`);
    return true;
  };
}

test("parseCli() fills in the defaults", () => {
  assert.deepEqual(parseCli([]), DEFAULTS);
});

test("parseCli() reads every flag in short and long form", () => {
  const expected: CliOptions = {
    help: true,
    version: true,
    debug: true,
    port: 9000,
    workers: 2,
    maxFrameSize: 256,
    pipelining: true,
    async: true,
    fragmentation: false,
    replyDelay: 10,
    closeAfterFrames: 3,
    address: "127.0.0.1",
    socketPath: undefined,
    socketMode: undefined,
    tls: undefined,
    dispatch: "streams",
    maxConnections: 100,
    handlerTimeout: 250,
    seed: 7,
    serviceArgs: ["--seed", "7"],
    logFormat: "json",
    metrics: { hostname: "127.0.0.1", port: 9100 },
    agent: undefined,
    agentArgs: [],
  };
  const short = ["-h", "-d", "-p", "9000", "-n", "2", "-m", "256", "-c", "async", "-t", "10"];
  assert.deepEqual(
    parseCli([
      ...short,
      ...["-f", "3", "-a", "127.0.0.1", "--dispatch", "streams", "--seed", "7", "--version"],
      ...["--max-connections", "100", "--handler-timeout", "250", "--log-format", "json"],
      ...["--metrics", "127.0.0.1:9100"],
    ]),
    expected,
  );
  assert.deepEqual(
    parseCli([
      "--help",
      "--debug",
      "--port=9000",
      "--workers",
      "2",
      "--max-frame-size",
      "256",
      "--capability",
      "async",
      "--delay",
      "10ms",
      "--close-after",
      "3",
      "--address",
      "127.0.0.1",
      "--dispatch=streams",
      "--max-connections=100",
      "--handler-timeout=250ms",
      "--seed=7",
      "--log-format=json",
      "--metrics=127.0.0.1:9100",
      "--version",
    ]),
    expected,
  );
});

test("parseCli() accepts -c repeated and comma-separated", () => {
  const options = parseCli(["-c", "pipelining", "-c", "async,fragmentation"]);
  assert.equal(options.pipelining, true);
  assert.equal(options.async, true);
  assert.equal(options.fragmentation, true);
  assert.equal(parseCli(["-c", "fragmentation"]).async, false);
  assert.equal(parseCli(["-c", "async"]).fragmentation, false);
});

test("parseCli() reads -t in us, ms and s, with ms by default", () => {
  assert.equal(parseCli(["-t", "500us"]).replyDelay, 0.5);
  assert.equal(parseCli(["-t", "10ms"]).replyDelay, 10);
  assert.equal(parseCli(["-t", "25"]).replyDelay, 25);
  assert.equal(parseCli(["-t", "2s"]).replyDelay, 2000);
  assert.equal(parseCli(["-t", "1.5s"]).replyDelay, 1500);
  assert.equal(parseCli(["-t", "60s"]).replyDelay, 60_000);
});

test("parseCli() accepts the limits of each range", () => {
  assert.equal(parseCli(["-p", "0"]).port, 0);
  assert.equal(parseCli(["-p", "65535"]).port, 65535);
  assert.equal(parseCli(["-m", "16777216"]).maxFrameSize, 16777216);
  assert.equal(parseCli(["-n", "0"]).workers, 0);
  assert.equal(parseCli(["-f", "1"]).closeAfterFrames, 1);
  assert.equal(parseCli(["--seed", "0"]).seed, 0);
  assert.equal(parseCli(["--seed", "4294967295"]).seed, 4294967295);
  assert.equal(parseCli(["-a", "::1"]).address, "::1");
});

test("parseCli() throws a one-line UsageError naming the flag for each bad value", () => {
  for (const [args, flag] of BAD) {
    assert.throws(() => parseCli(args), usageError(flag), JSON.stringify(args));
  }
});

test("VERSION is package.json's version, a semantic version", () => {
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  assert.match(pkg.version, /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/);
  assert.equal(VERSION, pkg.version);
});

test("spoa -h prints the usage on stdout and exits 0", async () => {
  const exit = await runMain(["-h"]);
  assert.equal(exit.code, 0, exit.stderr);
  assert.equal(exit.stdout, USAGE);
  assert.equal(exit.stderr, "");
});

test("spoa --version prints the version and exits 0", async () => {
  const exit = await runMain(["--version"]);
  assert.equal(exit.code, 0, exit.stderr);
  assert.equal(exit.stdout, `spoa ${VERSION}\n`);
  assert.equal(exit.stderr, "");
});

test("spoa exits 2 with a one-line error naming the flag and the usage on stderr", async () => {
  const exits = await Promise.all(BAD.map(([args]) => runMain(args)));
  for (const [i, exit] of exits.entries()) {
    const [args, flag] = BAD[i]!;
    const label = JSON.stringify(args);
    assert.equal(exit.code, 2, `${label}: ${exit.stderr}`);
    assert.equal(exit.stdout, "", label);
    const [first, ...rest] = exit.stderr.split("\n");
    assert.match(first!, /^spoa: /, label);
    assert.ok(first!.includes(flag), `${label}: "${first}" does not name ${flag}`);
    assert.equal(rest.join("\n"), USAGE, label);
  }
});

test("spoa answers HELLO and NOTIFY, then exits 0 on SIGTERM after AGENT-DISCONNECT 0", async () => {
  const agent = await startAgent();
  let client: SpopClient | undefined;
  try {
    client = await SpopClient.connect(agent.port);
    const hello = await client.hello();
    assert.deepEqual(hello.hello, {
      version: "2.0",
      maxFrameSize: 16380,
      capabilities: "pipelining",
    });
    const ack = await client.notify(1, 1);
    assert.equal(ack.type, FrameType.ACK);
    assert.equal(ack.streamId, 1);
    assert.equal(ack.frameId, 1);
    assert.equal(ack.actions?.[0]?.name, "ip_score");

    const exit = agent.stop("SIGTERM");
    const bye = await client.nextFrame();
    assert.equal(bye.type, FrameType.AGENT_DISCONNECT);
    assert.equal(bye.disconnect?.status, Status.NORMAL);
    await client.closed();
    const { code, stderr } = await exit;
    assert.equal(code, 0, stderr);
    // One thread reports its connections; the pool (the default -n 5) drains its workers.
    assert.match(stderr, /SIGTERM: draining/);
    assert.doesNotMatch(stderr, / error /);
  } finally {
    await client?.close();
    await agent.stop("SIGKILL");
  }
});

test("spoa -d logs the handshake and every frame", async () => {
  const agent = await startAgent(["-d"]);
  let client: SpopClient | undefined;
  try {
    client = await SpopClient.connect(agent.port);
    await client.hello({ engineId: "e-1" });
    await client.notify(300, 2);
    await client.close();
    const { code, stderr } = await agent.stop();
    assert.equal(code, 0, stderr);
    assert.match(stderr, / debug .*<- HAPROXY-HELLO stream=0 frame=0/);
    assert.match(stderr, / debug .*handshake:.*e-1/);
    assert.match(stderr, / debug .*<- NOTIFY stream=300 frame=2/);
    assert.match(stderr, / debug .*-> ACK stream=300 frame=2 actions=1/);
  } finally {
    await client?.close();
    await agent.stop("SIGKILL");
  }
});

test("spoa logs no debug lines without -d", async () => {
  const agent = await startAgent();
  let client: SpopClient | undefined;
  try {
    client = await SpopClient.connect(agent.port);
    await client.hello();
    await client.notify(1, 1);
    await client.close();
    const { code, stderr } = await agent.stop();
    assert.equal(code, 0, stderr);
    assert.doesNotMatch(stderr, / debug /);
  } finally {
    await client?.close();
    await agent.stop("SIGKILL");
  }
});

test("spoa --seed 7 scores 127.0.0.1 as seededScore(7, 127.0.0.1)", async () => {
  const agent = await startAgent(["--seed", "7"]);
  let client: SpopClient | undefined;
  try {
    client = await SpopClient.connect(agent.port);
    await client.hello();
    const expected = seededScore(7, new Uint8Array([127, 0, 0, 1]));
    for (let i = 1; i <= 3; i++) {
      const ack: ReceivedFrame = await client.notify(i, 1);
      assert.equal(ack.actions?.length, 1);
      assert.equal(ack.actions[0]!.value, expected);
    }
  } finally {
    await client?.close();
    await agent.stop("SIGKILL");
  }
});

test("spoa -f 2 closes each connection with AGENT-DISCONNECT 0 after two NOTIFYs", async () => {
  const agent = await startAgent(["-f", "2"]);
  let client: SpopClient | undefined;
  try {
    client = await SpopClient.connect(agent.port);
    await client.hello();
    const first = await client.notify(1, 1);
    assert.equal(first.type, FrameType.ACK);
    assert.equal(client.isClosed, false);
    const second = await client.notify(3, 1);
    assert.equal(second.type, FrameType.ACK);
    assert.equal(second.streamId, 3);
    const bye = await client.nextFrame();
    assert.equal(bye.type, FrameType.AGENT_DISCONNECT);
    assert.equal(bye.disconnect?.status, Status.NORMAL);
    await client.closed();
    assert.equal(client.pending, 0);
  } finally {
    await client?.close();
    await agent.stop("SIGKILL");
  }
});

test("spoa -t 50ms still answers every NOTIFY", async () => {
  const agent = await startAgent(["-t", "50ms"]);
  let client: SpopClient | undefined;
  try {
    client = await SpopClient.connect(agent.port);
    await client.hello();
    const ack = await client.notify(1, 1);
    assert.equal(ack.type, FrameType.ACK);
    assert.equal(ack.streamId, 1);
    assert.equal(ack.actions?.[0]?.name, "ip_score");
  } finally {
    await client?.close();
    await agent.stop("SIGKILL");
  }
});

test("spoa exits 1 with a clear message when the port is in use", async () => {
  const blocker = net.createServer();
  await new Promise<void>((resolve, reject) => {
    blocker.once("error", reject);
    blocker.listen({ host: "127.0.0.1", port: 0 }, () => resolve());
  });
  try {
    const port = (blocker.address() as net.AddressInfo).port;
    const exit = await runMain(["-a", "127.0.0.1", "-p", String(port)]);
    assert.equal(exit.code, 1, exit.stderr);
    const first = exit.stderr.split("\n")[0]!;
    assert.ok(
      first.startsWith(`spoa: Cannot listen on 127.0.0.1:${port}: `),
      `unexpected stderr: ${exit.stderr}`,
    );
    assert.match(first, /EADDRINUSE/, "the reason is named");
    assert.doesNotMatch(exit.stderr, /^\s+at /m, "no stack trace");
  } finally {
    await new Promise((resolve) => blocker.close(resolve));
  }
});

test("spoa keeps accepting after running out of file descriptors", async () => {
  const agent = await startAgent([], { fdLimit: 64 });
  const flood: net.Socket[] = [];
  let client: SpopClient | undefined;
  try {
    // More connections than the agent has descriptors: accept() fails with EMFILE.
    await Promise.all(Array.from({ length: 100 }, () =>
      new Promise<void>((resolve) => {
        const socket = net.connect({ host: "127.0.0.1", port: agent.port });
        flood.push(socket);
        socket.on("error", () => resolve());
        socket.once("connect", () => resolve());
      })));
    for (const socket of flood) socket.destroy();
    client = await SpopClient.connect(agent.port);
    const hello = await client.hello();
    assert.equal(hello.hello?.version, "2.0");
    assert.equal((await client.notify(1, 1)).type, FrameType.ACK);
    const { code, stderr } = await agent.stop();
    assert.equal(code, 0, stderr);
  } finally {
    for (const socket of flood) socket.destroy();
    await client?.close();
    await agent.stop("SIGKILL");
  }
});

test("spoa --log-format json writes one object per line with structured fields", async () => {
  for (const workers of ["0", "2"]) {
    const agent = await startAgent(["-n", workers, "--log-format", "json"]);
    let client: SpopClient | undefined;
    try {
      client = await SpopClient.connect(agent.port);
      await client.hello();
      // A NOTIFY that claims an argument it does not carry: a protocol error (status 4).
      await client.send(new Uint8Array([0, 0, 0, 8, 3, 0, 0, 0, 1, 1, 1, 0]));
      const bye = await client.nextFrame();
      assert.equal(bye.type, FrameType.AGENT_DISCONNECT);
      await client.closed();
      const exit = await agent.stop();
      assert.equal(exit.code, 0, exit.stderr);
      const lines = exit.stderr.trim().split("\n").map((line) => JSON.parse(line));
      for (const line of lines) {
        assert.equal(typeof line.time, "string");
        assert.ok(["error", "warn", "info", "debug"].includes(line.level), line.level);
        assert.equal(typeof line.message, "string");
      }
      const failure = lines.find((l) => l.event === "agent-disconnect");
      assert.ok(failure, exit.stderr);
      assert.equal(failure.level, "warn");
      assert.equal(failure.status, bye.disconnect?.status);
      assert.equal(typeof failure.connection, "number");
      assert.match(failure.peer, /^127\.0\.0\.1:\d+$/);
      if (workers === "2") assert.ok(failure.worker === 1 || failure.worker === 2, exit.stderr);
      else assert.equal(failure.worker, undefined);
      assert.ok(lines.some((l) => /^listening on/.test(l.message) && l.port > 0), exit.stderr);
    } finally {
      await client?.close();
      await agent.stop("SIGKILL");
    }
  }
});

test("parseCli() takes flags from SPOA_* variables, and the command line wins", () => {
  const env = {
    SPOA_PORT: "9000",
    SPOA_WORKERS: "3",
    SPOA_DEBUG: "true",
    SPOA_CAPABILITY: "async,fragmentation",
    SPOA_MAX_FRAME_SIZE: "512",
    SPOA_HANDLER_TIMEOUT: "20ms",
    SPOA_LOG_FORMAT: "json",
    SPOA_DISPATCH: "streams",
    SPOA_HELP: "true", // -h and --version only come from the command line
    SPOA_VERSION: "1",
  };
  const options = parseCli([], env);
  assert.deepEqual(
    [options.port, options.workers, options.debug, options.async, options.fragmentation],
    [9000, 3, true, true, true],
  );
  assert.deepEqual(
    [options.maxFrameSize, options.handlerTimeout, options.logFormat, options.dispatch],
    [512, 20, "json", "streams"],
  );
  assert.equal(options.help, false);
  assert.equal(options.version, false);
  const flags = parseCli(["-p", "1", "-n", "0", "-c", "pipelining", "--log-format", "text"], env);
  assert.deepEqual([flags.port, flags.workers, flags.async, flags.logFormat], [
    1,
    0,
    false,
    "text",
  ]);
  assert.equal(parseCli([], { SPOA_DEBUG: "0" }).debug, false);
  assert.equal(parseCli([], { SPOA_AGENT: "./x.ts" }).agent, "./x.ts");
});

test("parseCli() names the variable of a bad value from the environment", () => {
  const bad: [Record<string, string>, RegExp][] = [
    [
      { SPOA_PORT: "x" },
      /^Invalid value for SPOA_PORT: "x" \(expected an integer from 0 to 65535\)$/,
    ],
    [{ SPOA_DEBUG: "maybe" }, /^Invalid value for SPOA_DEBUG: "maybe" \(expected true or false\)$/],
    [{ SPOA_CAPABILITY: "turbo" }, /^Invalid value for SPOA_CAPABILITY: "turbo"/],
    [{ SPOA_DELAY: "soon" }, /^Invalid value for SPOA_DELAY: "soon"/],
    [{ SPOA_MAX_FRAME_SIZE: "12" }, /^Invalid value for SPOA_MAX_FRAME_SIZE: "12"/],
    [{ SPOA_LOG_FORMAT: "xml" }, /^Invalid value for SPOA_LOG_FORMAT: "xml"/],
  ];
  for (const [env, message] of bad) {
    assert.throws(() => parseCli([], env), (err: Error) => {
      assert.ok(err instanceof UsageError);
      assert.match(err.message, message);
      return true;
    });
  }
  // The same value on the command line is named by its flag.
  assert.throws(
    () => parseCli(["-p", "x"], { SPOA_PORT: "1" }),
    /^UsageError: Invalid value for -p/,
  );
});

test("spoa reads SPOA_* variables from its environment", async () => {
  const agent = await startAgent([], { env: { SPOA_WORKERS: "2", SPOA_LOG_FORMAT: "json" } });
  try {
    const exit = await agent.stop();
    assert.equal(exit.code, 0, exit.stderr);
    const lines = exit.stderr.trim().split("\n").map((line) => JSON.parse(line));
    assert.ok(lines.some((l) => /with 2 workers/.test(l.message)), exit.stderr);
  } finally {
    await agent.stop("SIGKILL");
  }
  const bad = await runMain([], { SPOA_PORT: "99999" });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^spoa: Invalid value for SPOA_PORT: "99999"/);
});

test("parseCli() reads --metrics as ADDRESS:PORT, [IPv6]:PORT or :PORT, and names a bad one", () => {
  assert.deepEqual(parseCli(["--metrics", "10.0.0.5:9100"]).metrics, {
    hostname: "10.0.0.5",
    port: 9100,
  });
  assert.deepEqual(parseCli(["--metrics", "[::1]:9100"]).metrics, { hostname: "::1", port: 9100 });
  assert.deepEqual(parseCli(["--metrics", ":0"]).metrics, { hostname: "0.0.0.0", port: 0 });
  assert.deepEqual(parseCli([], { SPOA_METRICS: "127.0.0.1:9200" }).metrics, {
    hostname: "127.0.0.1",
    port: 9200,
  });
  for (const bad of ["9100", "127.0.0.1", "127.0.0.1:99999", "a b:1", "::1:9100", "host:"]) {
    assert.throws(
      () => parseCli(["--metrics", bad]),
      (err: Error) =>
        err instanceof UsageError &&
        err.message ===
          `Invalid value for --metrics: "${bad}" (expected ADDRESS:PORT, e.g. 127.0.0.1:9100)`,
    );
  }
  assert.throws(
    () => parseCli([], { SPOA_METRICS: "nope" }),
    /^UsageError: Invalid value for SPOA_METRICS: "nope"/,
  );
});
