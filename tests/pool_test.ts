import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { createLogger, Level } from "../lib/agent/log.ts";
import { type Pool, PoolStartError, startPool } from "../lib/serve/pool.ts";
import type { Dispatch, WorkerConfig } from "../lib/serve/pool_protocol.ts";
import { ActionType, DataType, Flag, FrameType, Status, VarScope } from "../lib/spop.ts";
import { PROCESS_WAIT_MS, startAgent } from "./_process.ts";
import {
  concat,
  notifyBytes,
  type ReceivedFrame,
  SpopClient,
  WAIT_MS,
  waitFor,
} from "./_spop_client.ts";

const MODES: Dispatch[] = ["reuseport", "streams"];
/**
 * Above every hang guard inside a test, so that a guard fails it and its
 * `finally` stops what it started (bun test would cut it off after 5 s).
 */
const TEST_TIMEOUT_MS = 120_000;
/** NOTIFYs each client pipelines in one write. */
const PIPELINED = 20;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Waits for `promise` at most `ms` (a hang guard): a hang then fails the test
 * with what was pending, rather than the test timeout without a word.
 */
async function within<T>(promise: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out waiting for ${what()}`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

function assertScoreAck(frame: ReceivedFrame): void {
  assert.equal(frame.type, FrameType.ACK, `frame type ${frame.type}`);
  assert.equal(frame.flags, Flag.FIN);
  assert.equal(frame.actions?.length, 1);
  const action = frame.actions[0]!;
  assert.equal(action.type, ActionType.SET_VAR);
  assert.equal(action.scope, VarScope.SESS);
  assert.equal(action.name, "ip_score");
  assert.equal(action.dataType, DataType.UINT32);
  const score = action.value as number;
  assert.ok(Number.isInteger(score) && score >= 0 && score <= 100, `score ${score}`);
}

/**
 * Sends `count` NOTIFYs (stream-ids `base`.., frame-id 1..) in one write and
 * checks that exactly their ACKs come back, each with an ip_score.
 */
async function pipelined(client: SpopClient, base: number, count = PIPELINED): Promise<void> {
  const expected = new Set<string>();
  const frames: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    expected.add(`${base + i}/${i + 1}`);
    frames.push(notifyBytes(base + i, i + 1));
  }
  await client.send(concat(frames));
  for (let i = 0; i < count; i++) {
    const frame = await client.nextFrame();
    assertScoreAck(frame);
    const key = `${frame.streamId}/${frame.frameId}`;
    assert.ok(expected.delete(key), `unexpected or repeated ACK ${key}`);
  }
}

/** One parsed line of the agent's stderr. */
interface LogLine {
  level: string;
  /** The bracketed name, `undefined` for the main thread's root logger. */
  name: string | undefined;
  message: string;
}

const LOG_LINE =
  /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (error|warn|info|debug)(?: \[([^\]]+)\])? (.*)$/;

function parseLog(stderr: string): LogLine[] {
  return stderr.split("\n").filter((line) => line !== "").map((line) => {
    const match = LOG_LINE.exec(line);
    assert.ok(match, `not a log line: ${JSON.stringify(line)}`);
    return { level: match[1]!, name: match[2], message: match[3]! };
  });
}

/** The workers named in `[worker K #J] accepted ...` lines, one entry per connection. */
function acceptedBy(lines: LogLine[]): number[] {
  const workers: number[] = [];
  for (const line of lines) {
    const match = /^worker (\d+) #\d+$/.exec(line.name ?? "");
    if (match && /^accepted 127\.0\.0\.1:\d+$/.test(line.message)) workers.push(Number(match[1]));
  }
  return workers;
}

/** Connects, says HELLO and checks one round of pipelined NOTIFYs. */
async function helloAndNotify(port: number, clients: SpopClient[], base: number): Promise<void> {
  const client = await SpopClient.connect(port);
  clients.push(client);
  const hello = await client.hello();
  assert.equal(hello.hello?.capabilities, "pipelining");
  await pipelined(client, base);
}

for (const mode of MODES) {
  for (const workers of [2, 4]) {
    test(
      `spoa -n ${workers} --dispatch ${mode} serves clients on several workers that name themselves`,
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const agent = await startAgent(["-n", String(workers), "--dispatch", mode, "-d"]);
        const clients: SpopClient[] = [];
        try {
          await waitFor(
            () => agent.stderr.includes(`with ${workers} workers (${mode})`),
            "the pool to listen",
            PROCESS_WAIT_MS,
          );
          let opened = 0;
          const batch = async () => {
            const sessions: Promise<void>[] = [];
            for (let i = 0; i < 4 * workers; i++) {
              sessions.push(helloAndNotify(agent.port, clients, 1000 * ++opened));
              await sleep(5);
            }
            await Promise.all(sessions);
            await waitFor(
              () => acceptedBy(parseLog(agent.stderr)).length === opened,
              "an accepted line for each connection",
              PROCESS_WAIT_MS,
            );
          };
          await batch();
          // The kernel hashes reuseport connections: 8 may all land on one of
          // two workers (1 in 128). Another batch or two rule that chance out;
          // a pool with one listening worker still fails.
          for (let extra = 0; extra < 3; extra++) {
            if (new Set(acceptedBy(parseLog(agent.stderr))).size >= 2) break;
            await batch();
          }
          await Promise.all(clients.map((c) => c.close()));
          const exit = await agent.stop();
          assert.equal(exit.code, 0, exit.stderr);

          const lines = parseLog(exit.stderr);
          const served = acceptedBy(lines);
          assert.equal(served.length, opened, "one accepted line per connection");
          const distinct = new Set(served);
          assert.ok(distinct.size >= 2, `connections served by workers ${[...distinct]}`);
          for (const w of distinct) assert.ok(w >= 1 && w <= workers, `worker ${w}`);
          const mains = lines.filter((l) => l.name === "main");
          assert.ok(
            mains.some((l) => l.message.endsWith(`with ${workers} workers (${mode})`)),
            "the main thread's listening line",
          );
          if (mode === "streams") {
            // Round-robin: every worker gets some.
            assert.deepEqual(
              [...distinct].sort((a, b) => a - b),
              Array.from({ length: workers }, (_, i) => i + 1),
            );
          } else {
            for (let w = 1; w <= workers; w++) {
              assert.ok(
                lines.some((l) =>
                  l.name === `worker ${w}` && l.message === `listening on 127.0.0.1:${agent.port}`
                ),
                `worker ${w} logs that it listens`,
              );
            }
          }
          for (const line of lines) {
            if (line.name === undefined) {
              // Only the main thread's root logger writes untagged lines.
              assert.match(line.message, /^(SIGTERM: draining|stopped)$/);
            } else if (line.name !== "main") {
              const match = /^worker (\d+)(?: #\d+)?$/.exec(line.name);
              assert.ok(match, `unexpected name [${line.name}]`);
              const w = Number(match[1]);
              assert.ok(w >= 1 && w <= workers, `[${line.name}]`);
            }
            assert.notEqual(line.level, "error", line.message);
            // The main thread may warn about the runtime (Deno without --unstable-net).
            if (line.level === "warn") assert.equal(line.name, "main", line.message);
          }
        } finally {
          await Promise.all(clients.map((c) => c.close()));
          await agent.stop("SIGKILL");
        }
      },
    );
  }
}

for (const workers of [0, 1]) {
  test(`spoa -n ${workers} serves HELLO and NOTIFYs on the main thread without workers`, {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const agent = await startAgent(["-n", String(workers), "-d"]);
    const clients: SpopClient[] = [];
    try {
      await helloAndNotify(agent.port, clients, 1);
      await helloAndNotify(agent.port, clients, 100);
      await Promise.all(clients.map((c) => c.close()));
      const exit = await agent.stop();
      assert.equal(exit.code, 0, exit.stderr);
      assert.doesNotMatch(exit.stderr, /\[worker/);
      assert.doesNotMatch(exit.stderr, /workers \(/);
      assert.equal(acceptedBy(parseLog(exit.stderr)).length, 0);
      assert.equal(exit.stderr.match(/ debug \[#\d+\] accepted 127\.0\.0\.1:/g)?.length, 2);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await agent.stop("SIGKILL");
    }
  });
}

const CONFIG: WorkerConfig = {
  debug: false,
  agent: {
    module: new URL("../lib/iprep/agent.ts", import.meta.url).href,
    label: "iprep",
    args: [],
  },
  session: {
    maxFrameSize: 16384,
    pipelining: true,
    async: false,
    fragmentation: false,
  },
};

/** What one client of the crash test saw. */
interface ClientRun {
  /** When its HELLO was answered. */
  helloAt: number | undefined;
  /** When each of its rounds of ACKs was complete. */
  ackedAt: number[];
  /** `served` until told to stop, `closed` by the agent, or `failed`. */
  outcome: "running" | "served" | "closed" | "failed";
  error: unknown;
  /** What it waits for now (named by the hang guards). */
  waiting: string;
}

/** Says HELLO, then sends rounds of pipelined NOTIFYs until `stop()` or a close. */
async function keepNotifying(
  port: number,
  clients: SpopClient[],
  stop: () => boolean,
  run: ClientRun,
): Promise<void> {
  let client: SpopClient;
  run.waiting = "its connection";
  try {
    client = await SpopClient.connect(port);
  } catch (err) {
    // With `reuseport`, a connection still queued for a worker as it dies is
    // reset by the kernel (unless net.ipv4.tcp_migrate_req is set), which the
    // runtime may report before the connection completes.
    const reset = (err as { code?: unknown }).code === "ECONNRESET";
    run.outcome = reset ? "closed" : "failed";
    run.error = err;
    return;
  }
  clients.push(client);
  try {
    run.waiting = "the AGENT-HELLO";
    await client.hello();
    run.helloAt = Date.now();
    for (let round = 1; !stop(); round++) {
      run.waiting = `the ACKs of round ${round}`;
      await pipelined(client, round * 100, 5);
      run.ackedAt.push(Date.now());
      await sleep(10);
    }
    run.outcome = "served";
  } catch (err) {
    run.waiting = `the agent to close after ${err}`;
    const closedByAgent = !(err instanceof assert.AssertionError) &&
      !String(err).includes("Timed out") &&
      await client.closed().then(() => true, () => false);
    run.outcome = closedByAgent ? "closed" : "failed";
    run.error = err;
  }
}

/** A pool restart line: `worker K died (...); starting a new one in D ms`. */
interface Death {
  worker: number;
  /** The reason given: the worker's uncaught error. */
  why: string;
  delay: number;
  at: number;
}

/** Also matches a reason that spans lines, so that the one-line check below can fail. */
const DIED = /^worker (\d+) died \(([\s\S]*)\); starting a new one in (\d+) ms$/;

/** A debug logger that keeps every line, and each worker death it reports. */
function deathLog(): { lines: string[]; deaths: Death[]; log: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  const deaths: Death[] = [];
  const log = createLogger({
    level: Level.DEBUG,
    sink: (line) => {
      lines.push(line);
      const match = DIED.exec(line.replace(/^\S+ error /, ""));
      if (match) {
        deaths.push({
          worker: Number(match[1]),
          why: match[2]!,
          delay: Number(match[3]),
          at: Date.now(),
        });
      }
    },
  });
  return { lines, deaths, log };
}

/** Polls an asynchronous condition until it holds (a hang guard, not a speed check). */
async function eventually(condition: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!await condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * Whether a connection to the port is refused. A connection neither refused
 * nor accepted within a second (a listener whose backlog is full drops it)
 * is not refused: something listens.
 */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: "127.0.0.1" });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, 1000);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

for (const mode of MODES) {
  test(
    `startPool --dispatch ${mode} restarts a crashing worker with growing delays while the others serve`,
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { lines, deaths, log } = deathLog();
      const clients: SpopClient[] = [];
      const runs: ClientRun[] = [];
      const pending: Promise<void>[] = [];
      let stopping = false;
      let minRunning = Infinity;
      let sampler: ReturnType<typeof setInterval> | undefined;
      let pool: Pool | undefined;
      try {
        pool = await within(
          startPool({
            workers: 2,
            dispatch: mode,
            hostname: "127.0.0.1",
            port: 0,
            config: CONFIG,
            log,
            workerUrl: new URL("./_crash_worker.ts", import.meta.url),
          }),
          PROCESS_WAIT_MS,
          () => `the pool to start; log:\n${lines.join("\n")}`,
        );
        const running = pool;
        sampler = setInterval(() => minRunning = Math.min(minRunning, running.running), 5);
        const open = () => {
          const run: ClientRun = {
            helloAt: undefined,
            ackedAt: [],
            outcome: "running",
            error: undefined,
            waiting: "",
          };
          runs.push(run);
          pending.push(keepNotifying(running.port, clients, () => stopping, run));
        };
        /** A client still served whose session began before a crash and got ACKs after it. */
        const servedAcross = () =>
          runs.some((run) =>
            (run.outcome === "running" || run.outcome === "served") && run.helloAt !== undefined &&
            deaths.some((d) => d.worker === 1 && run.helloAt! < d.at && run.ackedAt.at(-1)! > d.at)
          );
        for (let i = 0; i < 4; i++) open();
        // A hang guard. Each restart loads (and under `deno test` type-checks)
        // the worker anew, which takes seconds on a loaded machine.
        const deadline = Date.now() + 45_000;
        while (
          deaths.filter((d) => d.worker === 1).length < 3 || !servedAcross() ||
          !runs.some((run) => run.outcome === "closed")
        ) {
          assert.ok(Date.now() < deadline, `timed out; log:\n${lines.join("\n")}`);
          if (runs.some((run) => run.outcome === "failed")) break;
          open();
          await sleep(50);
        }
        stopping = true;
        // A client's every wait has a guard of WAIT_MS, but sends have none.
        await within(Promise.all(pending), 3 * WAIT_MS, () => {
          const left = runs.flatMap((run, i) =>
            run.outcome === "running" ? [`client ${i + 1}: ${run.waiting}`] : []
          );
          return `the clients to stop (${left.join("; ")})`;
        });
        clearInterval(sampler);

        const failed = runs.filter((run) => run.outcome === "failed");
        assert.deepEqual(failed.map((run) => String(run.error)), [], "clients failed");
        assert.ok(runs.every((run) => run.outcome === "served" || run.outcome === "closed"));
        assert.ok(runs.some((run) => run.outcome === "closed"), "a client on worker 1 was closed");
        assert.ok(servedAcross(), "a client on worker 2 got ACKs after worker 1 crashed");

        const crashes = deaths.filter((d) => d.worker === 1);
        assert.ok(crashes.length >= 3, `worker 1 died ${crashes.length} times`);
        for (let i = 1; i < crashes.length; i++) {
          assert.ok(
            crashes[i]!.delay > crashes[i - 1]!.delay,
            `restart delays ${crashes.map((d) => d.delay)}`,
          );
        }
        assert.equal(crashes[0]!.delay, 100);
        for (const crash of crashes) assert.match(crash.why, /worker 1 crashes on purpose/);
        // One event, one line, on both runtimes.
        for (const line of lines) assert.doesNotMatch(line, /\n/);
        assert.equal(deaths.filter((d) => d.worker !== 1).length, 0, lines.join("\n"));
        assert.ok(minRunning >= 1, `running fell to ${minRunning}`);

        const port = pool.port;
        await within(pool.shutdown(1000), 2000 + WAIT_MS, () => "the pool to shut down");
        pool = undefined;
        assert.equal(running.running, 0);
        // A crashed worker's sockets close as its thread is torn down, which on
        // Deno may end a few milliseconds after terminate(): poll (a hang guard).
        await eventually(() => refused(port), "nothing to listen after shutdown");
      } finally {
        clearInterval(sampler);
        stopping = true;
        await Promise.all(clients.map((c) => c.close()));
        await pool?.shutdown(0);
      }
    },
  );
}

test(
  "startPool --dispatch reuseport fails, rather than waits forever, when a worker dies after loading",
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const lines: string[] = [];
    const starting = startPool({
      workers: 2,
      dispatch: "reuseport",
      hostname: "127.0.0.1",
      port: 0,
      config: CONFIG,
      log: createLogger({ level: Level.DEBUG, sink: (line) => lines.push(line) }),
      workerUrl: new URL("./_load_crash_worker.ts", import.meta.url),
    });
    try {
      await assert.rejects(
        within(starting, PROCESS_WAIT_MS, () => `the pool to fail; log:\n${lines.join("\n")}`),
        (err) => {
          assert.ok(err instanceof PoolStartError, String(err));
          assert.equal(err.stage, "listen");
          assert.match(err.message, /^worker 1 died after loading \(.*on purpose/);
          return true;
        },
      );
    } finally {
      void starting.then((pool) => pool.shutdown(0), () => {}); // Should it start after all.
    }
  },
);

/** The cells of `_early_crash_worker.ts`'s shared memory. */
const Cell = { GO: 0, WORKER_1: 1, WORKER_2: 2, REPLACEMENT_DIED: 3, COUNT: 4 } as const;

for (const mode of MODES) {
  test(
    `startPool --dispatch ${mode} restarts a worker that died before the pool was up, and its replacement too`,
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const { lines, deaths, log } = deathLog();
      const cells = new Int32Array(new SharedArrayBuffer(4 * Cell.COUNT));
      const starting = startPool({
        workers: 2,
        dispatch: mode,
        hostname: "127.0.0.1",
        port: 0,
        config: CONFIG,
        log,
        workerUrl: new URL("./_early_crash_worker.ts", import.meta.url),
        shared: cells.buffer,
      });
      let pool: Pool | undefined;
      try {
        // Worker 1 served, died, and its replacement died before it loaded,
        // while worker 2 holds back its report that it serves.
        await within(
          Promise.race([
            waitFor(
              () => Atomics.load(cells, Cell.REPLACEMENT_DIED) === 1,
              "worker 1's replacement to die",
              PROCESS_WAIT_MS,
            ),
            starting.then(() => {
              throw new Error("startPool resolved while worker 2 was held back");
            }),
          ]),
          PROCESS_WAIT_MS,
          () => `worker 1 to die twice; log:\n${lines.join("\n")}`,
        );
        // Time for the pool to see that death too, before worker 2 serves.
        await sleep(300);
        Atomics.store(cells, Cell.GO, 1);
        pool = await within(
          starting,
          PROCESS_WAIT_MS,
          () => `the pool to start; log:\n${lines.join("\n")}`,
        );
        // A hang guard: worker 1's third thread starts 200 ms after its second died.
        const deadline = Date.now() + PROCESS_WAIT_MS;
        while (pool.ready < 2) {
          assert.ok(
            Date.now() < deadline,
            `timed out waiting for both workers to serve (${pool.ready} ready, ` +
              `${pool.running} running); log:\n${lines.join("\n")}`,
          );
          await sleep(20);
        }
        assert.equal(Atomics.load(cells, Cell.WORKER_1), 3, "threads of worker 1");
        assert.equal(Atomics.load(cells, Cell.WORKER_2), 1, "threads of worker 2");
        assert.equal(pool.started, 4);
        assert.equal(pool.running, 2);
        assert.deepEqual(
          deaths.map((d) => [d.worker, d.delay]),
          [[1, 100], [1, 200]],
          lines.join("\n"),
        );
        assert.match(deaths[0]!.why, /thread 1\) dies after it serves on purpose/);
        assert.match(deaths[1]!.why, /thread 2\) dies before it loads on purpose/);
        await within(pool.shutdown(1000), 2000 + WAIT_MS, () => "the pool to shut down");
        pool = undefined;
      } finally {
        Atomics.store(cells, Cell.GO, 1);
        await pool?.shutdown(0);
        // Should it start after all, or later (shutting a pool down twice does nothing).
        void starting.then((started) => started.shutdown(0), () => {});
      }
    },
  );
}

/** What one client of the shutdown test saw. */
interface LoadRun {
  acks: number;
  disconnect: ReceivedFrame | undefined;
  closedWithoutDisconnect: boolean;
}

/**
 * Keeps `window` NOTIFYs in flight (one more for each ACK) until the agent
 * disconnects, checking that every ACK answers an outstanding NOTIFY and that
 * nothing follows the AGENT-DISCONNECT.
 */
async function loadUntilDisconnect(
  client: SpopClient,
  window: number,
  run: LoadRun,
): Promise<void> {
  const outstanding = new Set<string>();
  let next = 1;
  const sendOne = () => {
    const id = next++;
    outstanding.add(`${id}/1`);
    client.send(notifyBytes(id, 1)).catch(() => {
      // The agent closed: what it answered is checked below.
    });
  };
  for (let i = 0; i < window; i++) sendOne();
  for (;;) {
    let frame: ReceivedFrame;
    try {
      frame = await client.nextFrame(PROCESS_WAIT_MS);
    } catch (err) {
      if (!client.isClosed) throw err;
      run.closedWithoutDisconnect = true;
      return;
    }
    if (frame.type === FrameType.AGENT_DISCONNECT) {
      run.disconnect = frame;
      await client.closed(PROCESS_WAIT_MS);
      assert.equal(client.pending, 0, "no frame after AGENT-DISCONNECT");
      return;
    }
    assertScoreAck(frame);
    const key = `${frame.streamId}/${frame.frameId}`;
    assert.ok(outstanding.delete(key), `ACK ${key} answers no outstanding NOTIFY`);
    run.acks++;
    sendOne();
  }
}

for (const mode of MODES) {
  test(
    `spoa -n 2 --dispatch ${mode} answers in-flight NOTIFYs, then disconnects every client on SIGTERM`,
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const agent = await startAgent(["-n", "2", "--dispatch", mode]);
      const clients: SpopClient[] = [];
      try {
        await waitFor(
          () => agent.stderr.includes(`with 2 workers (${mode})`),
          "the pool to listen",
          PROCESS_WAIT_MS,
        );
        for (let i = 0; i < 6; i++) {
          const client = await SpopClient.connect(agent.port);
          clients.push(client);
          await client.hello();
        }
        const results: LoadRun[] = clients.map(() => ({
          acks: 0,
          disconnect: undefined,
          closedWithoutDisconnect: false,
        }));
        const loads = Promise.all(
          clients.map((client, i) => loadUntilDisconnect(client, 8, results[i]!)),
        );
        // Every client is busy: SIGTERM lands with NOTIFYs in flight.
        const busy = waitFor(() => results.every((r) => r.acks >= 50), "every client to get ACKs");
        await Promise.race([busy, loads]);
        await busy;
        const exit = agent.stop();
        await loads;
        const { code, stderr } = await exit;
        assert.equal(code, 0, stderr);
        assert.equal(
          results.filter((r) => r.closedWithoutDisconnect).length,
          0,
          "clients closed without AGENT-DISCONNECT",
        );
        for (const result of results) {
          assert.ok(result.acks > 0, "ACKs before the disconnect");
          assert.equal(result.disconnect?.flags, Flag.FIN);
          assert.equal(
            result.disconnect?.disconnect?.status,
            Status.NORMAL,
            result.disconnect?.disconnect?.message,
          );
        }
      } finally {
        await Promise.all(clients.map((c) => c.close()));
        await agent.stop("SIGKILL");
      }
    },
  );
}
