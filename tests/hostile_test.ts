/**
 * Hostile peers over real sockets, against the agent of `main.ts` running as
 * a subprocess under the runtime running the tests (default `-n 5`, and
 * `-n 1`): garbage, oversized LENGTHs, resets in the middle of a frame,
 * random junk, connection floods past `--max-connections`, a thousand peers
 * trickling a byte per second, and a HAProxy killed with SIGKILL under load.
 * Through all of it, well-behaved connections must keep being served.
 *
 * Every process listens on 127.0.0.1 with port 0 and is stopped by PID in a
 * `finally`. Timeouts only guard against hangs; nothing asserts on speed.
 *
 * @module
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import net from "node:net";
import { Flag, FrameType, Status } from "../lib/spop.ts";
import { writeVarint } from "../lib/spop/_varint.ts";
import { type AgentProcess, startAgent, type StartOptions } from "./_process.ts";
import {
  concat,
  helloBytes,
  notifyBytes,
  type ReceivedFrame,
  SpopClient,
  WAIT_MS,
  waitFor,
} from "./_spop_client.ts";
import {
  establishedTo,
  get,
  type Haproxy,
  haproxyBuilds,
  scoreOf,
  sleep,
  startHaproxy,
  until,
  urlOf,
} from "./_haproxy.ts";

/**
 * Above every hang guard inside a test, so that a guard fails the test and its
 * `finally` stops what it started (bun test would cut it off after 5 s).
 */
const TEST_TIMEOUT_MS = 60_000;
/**
 * Hang guard for a disconnect that may come from the agent's 5 s frame
 * timeout (checked by a sweep once a second).
 */
const TIMEOUT_GUARD_MS = 12_000;
/** Every status code the agent may send. */
const STATUSES = new Set<number>(Object.values(Status));
/** A log line at warn or error level (`<time> <level> [<name>] <message>`). */
const WARN_OR_ERROR = /^\S+ (?:warn|error) /;
/** The one warn line hostile bytes may cause, naming the status sent. */
const PROTOCOL_ERROR = / warn (?:\[[^\]]*\] )?protocol error, closing with status (\d+):/;
/** The info line of a connection closed for being too slow. */
const TIMEOUT_LINE =
  / info (?:\[[^\]]*\] )?127\.0\.0\.1:\d+: (?:no HAPROXY-HELLO within|frame still incomplete after) \d+ ms; closing with status 2$/;
/** The info line of a HAPROXY-DISCONNECT, which the agent echoes. */
const PEER_DISCONNECT = / info (?:\[[^\]]*\] )?HAProxy disconnects: status (\d+) /;

/** The two agent shapes of these tests: the default pool of 5 workers, and one thread. */
const SHAPES: { name: string; args: string[] }[] = [
  { name: "-n 5 (default)", args: [] },
  { name: "-n 1", args: ["-n", "1"] },
];

/** mulberry32: a small seeded PRNG, so that every run sends the same junk. */
function prng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return (n) => Math.floor(next() * n);
}

function randomBytes(rand: (n: number) => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = rand(256);
  return out;
}

function u32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value);
  return out;
}

function varint(value: number): Uint8Array {
  const buf = new Uint8Array(10);
  return buf.slice(0, writeVarint(buf, 0, value));
}

/** A frame around `body` (type, flags, ids and payload), with a correct LENGTH. */
function framed(body: Uint8Array): Uint8Array {
  return concat([u32(body.length), body]);
}

/**
 * A first frame that is not a HAPROXY-HELLO: a LENGTH of 0..300 that fits
 * max-frame-size, then that many random bytes whose type byte is not 1.
 */
function garbageFirstFrame(rand: (n: number) => number): Uint8Array {
  const body = randomBytes(rand, rand(301));
  if (body.length > 0 && body[0] === FrameType.HAPROXY_HELLO) body[0] = 0x42;
  return framed(body);
}

/** Small ids mostly, sometimes large, sometimes 0 (what control frames need). */
function randomId(rand: (n: number) => number): Uint8Array {
  const r = rand(10);
  return varint(r < 3 ? 0 : r < 8 ? rand(300) : rand(2 ** 31));
}

/** A frame with a plausible header: a known type (mostly), FIN (mostly), random payload. */
function junkFrame(rand: (n: number) => number): Uint8Array {
  const types = [0, 1, 2, 3, 3, 3, 101, 102, 103];
  const type = rand(10) < 9 ? types[rand(types.length)]! : rand(256);
  const r = rand(10);
  const flags = r < 8 ? Flag.FIN : r < 9 ? Flag.FIN | Flag.ABORT : rand(2 ** 31);
  return framed(
    concat([
      new Uint8Array([type]),
      u32(flags),
      randomId(rand),
      randomId(rand),
      randomBytes(rand, rand(200)),
    ]),
  );
}

/** A NOTIFY whose payload looks like messages: a name, an argument count, typed data. */
function junkNotify(rand: (n: number) => number): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let m = rand(3); m >= 0; m--) {
    const name = randomBytes(rand, rand(20));
    parts.push(varint(name.length), name, new Uint8Array([rand(4)]));
    for (let a = rand(4); a > 0; a--) {
      parts.push(varint(rand(6)), randomBytes(rand, rand(5)), new Uint8Array([rand(16)]));
      parts.push(randomBytes(rand, rand(12)));
    }
  }
  return framed(
    concat([new Uint8Array([FrameType.NOTIFY]), u32(Flag.FIN), varint(rand(1000)), varint(1)]
      .concat(parts)),
  );
}

/**
 * Junk to send after a valid HELLO: random bytes (kind 0), or 40 frames with
 * plausible headers (kind 1) or NOTIFYs with plausible messages (kind 2),
 * among valid NOTIFYs. Each ends in 4 KiB of random bytes, so that every
 * stream ends in a protocol error even if all its frames parse.
 */
function junkAfterHello(kind: number, rand: (n: number) => number): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let i = 0; kind > 0 && i < 40; i++) {
    // Valid NOTIFYs in between, so that junk also lands among good frames.
    if (rand(4) === 0) parts.push(notifyBytes(i + 1, 1));
    parts.push(kind === 1 ? junkFrame(rand) : junkNotify(rand));
  }
  parts.push(randomBytes(rand, 4096));
  return concat(parts);
}

/** A well-behaved connection sending NOTIFYs one after another until stopped. */
interface GoodClient {
  /** ACKs received so far, each checked. */
  readonly acks: number;
  /** Stops the loop; rejects if any answer was wrong. */
  stop(): Promise<number>;
}

async function goodClient(port: number): Promise<GoodClient> {
  const client = await SpopClient.connect(port);
  await client.hello();
  let acks = 0;
  let running = true;
  const loop = (async () => {
    for (let id = 1; running; id++) {
      const frame = await client.notify(id, 1);
      assert.equal(frame.type, FrameType.ACK, `the good client's NOTIFY ${id} is acknowledged`);
      assert.equal(frame.streamId, id);
      assert.equal(frame.frameId, 1);
      assert.equal(frame.actions?.[0]?.name, "ip_score");
      acks++;
      // Yield to the timers of the hostile side between round trips.
      if (id % 10 === 0) await sleep(1);
    }
  })();
  return {
    get acks() {
      return acks;
    },
    async stop() {
      running = false;
      try {
        await loop;
      } finally {
        await client.close();
      }
      return acks;
    },
  };
}

/** Reads the first frame: it must be AGENT-DISCONNECT with `status`, then the close. */
async function assertDisconnectFirst(client: SpopClient, status: number, what: string) {
  const frame = await client.nextFrame();
  assert.equal(frame.type, FrameType.AGENT_DISCONNECT, `${what}: AGENT-DISCONNECT`);
  assert.equal(frame.disconnect?.status, status, `${what}: ${frame.disconnect?.message}`);
  await client.closed();
  assert.equal(client.pending, 0, `${what}: nothing after AGENT-DISCONNECT`);
}

/**
 * Reads frames up to an AGENT-DISCONNECT (ACKs may come first, for junk
 * NOTIFYs that happen to parse), then waits for the close.
 *
 * @returns The DISCONNECT's status.
 */
async function disconnectStatus(client: SpopClient, what: string): Promise<number> {
  let frame: ReceivedFrame;
  for (;;) {
    frame = await client.nextFrame(TIMEOUT_GUARD_MS);
    if (frame.type !== FrameType.ACK) break;
  }
  assert.equal(frame.type, FrameType.AGENT_DISCONNECT, `${what}: frame type ${frame.type}`);
  const status = frame.disconnect!.status;
  await client.closed(TIMEOUT_GUARD_MS);
  assert.equal(client.pending, 0, `${what}: nothing after AGENT-DISCONNECT`);
  return status;
}

/** Warn and error lines of a log. */
function badLines(stderr: string): string[] {
  return stderr.split("\n").filter((line) => WARN_OR_ERROR.test(line));
}

/** Runs `body` with an agent and stops it (and every client it opened) whatever happens. */
async function withAgent(
  args: string[],
  body: (agent: AgentProcess, connect: () => Promise<SpopClient>) => Promise<void>,
  options: StartOptions = {},
): Promise<AgentProcess> {
  const agent = await startAgent(args, options);
  const clients: SpopClient[] = [];
  try {
    await body(agent, async () => {
      const client = await SpopClient.connect(agent.port);
      clients.push(client);
      return client;
    });
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await agent.stop();
  }
  return agent;
}

for (const shape of SHAPES) {
  test(
    `hostile peers (${shape.name}): garbage, huge LENGTHs, resets and junk get the right answer while a good client is served`,
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      /** Statuses of every AGENT-DISCONNECT sent to a hostile connection. */
      const statuses: number[] = [];
      const agent = await withAgent(shape.args, async (agent, connect) => {
        let good: GoodClient | undefined = await goodClient(agent.port);
        try {
          const acksBefore = good.acks;

          // Garbage as the first frame: status 4 (invalid frame), then the close.
          const rand = prng(0x5eed);
          const garbage = [
            new Uint8Array([0, 0, 0, 7, 0x42, 0, 0, 0, 1, 0, 0]),
            new Uint8Array([0, 0, 0, 0]), // LENGTH 0
            ...Array.from({ length: 20 }, () => garbageFirstFrame(rand)),
          ];
          await Promise.all(garbage.map(async (bytes, i) => {
            const client = await connect();
            await client.send(bytes);
            await assertDisconnectFirst(client, Status.INVALID_FRAME, `garbage ${i}`);
            statuses.push(Status.INVALID_FRAME);
          }));

          // Too big at once: LENGTH 0x7fffffff before and after the HELLO, and
          // an HTTP request and a TLS ClientHello knocking on the port (their
          // first four bytes read as huge LENGTHs): status 3 without waiting for
          // a body that never comes (waiting would end in the timeout, status 2).
          const tooBig = [
            { what: "0x7fffffff first", hello: false, bytes: u32(0x7fffffff) },
            { what: "0x7fffffff after HELLO", hello: true, bytes: u32(0x7fffffff) },
            { what: "16381 after HELLO (16380 negotiated)", hello: true, bytes: u32(16381) },
            {
              what: "HTTP request",
              hello: false,
              bytes: new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            },
            {
              what: "TLS ClientHello",
              hello: false,
              bytes: new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03]),
            },
          ];
          await Promise.all(tooBig.map(async ({ what, hello, bytes }) => {
            const client = await connect();
            if (hello) await client.hello();
            await client.send(bytes);
            await assertDisconnectFirst(client, Status.FRAME_TOO_BIG, what);
            statuses.push(Status.FRAME_TOO_BIG);
          }));

          // Half a frame, then a TCP reset: a quiet close (checked in the log below).
          const notify = notifyBytes(1, 1);
          const hello = helloBytes();
          const halves = [
            { hello: false, bytes: hello.subarray(0, hello.length >> 1) },
            { hello: false, bytes: hello.subarray(0, 2) },
            { hello: true, bytes: notify.subarray(0, notify.length >> 1) },
            { hello: true, bytes: notify.subarray(0, 3) },
            { hello: true, bytes: concat([notify, notify.subarray(0, 9)]) },
          ];
          const resets = halves.flatMap((h) => Array.from({ length: 4 }, () => h));
          await Promise.all(resets.map(async ({ hello, bytes }) => {
            const client = await connect();
            if (hello) await client.hello();
            await client.send(bytes);
            // Let the agent read the half frame before the reset.
            await sleep(20);
            client.reset();
            await client.closed();
          }));

          // Random junk after a valid HELLO: an AGENT-DISCONNECT with a known status.
          const junk: { what: string; bytes: Uint8Array }[] = [];
          for (let seed = 1; seed <= 8; seed++) {
            for (const kind of [0, 1, 2]) {
              junk.push({
                what: `junk kind ${kind} seed ${seed}`,
                bytes: junkAfterHello(kind, prng(seed * 7919 + kind)),
              });
            }
          }
          await Promise.all(junk.map(async ({ what, bytes }) => {
            const client = await connect();
            await client.hello();
            await client.send(bytes);
            const status = await disconnectStatus(client, what);
            assert.ok(STATUSES.has(status), `${what}: status ${status} is a SPOP status`);
            statuses.push(status);
          }));

          // The good client was served throughout, and still is.
          assert.ok(good.acks > acksBefore, "the good client got ACKs during the attacks");
          const acks = await good.stop();
          good = undefined;
          assert.ok(acks > 0);
          const after = await connect();
          await after.hello();
          assert.equal((await after.notify(7, 7)).type, FrameType.ACK);
          await after.close();
          await until(() => establishedTo(agent.port) === 0, "no connection left to the agent");
        } finally {
          await good?.stop().catch(() => {});
        }
      });

      // Every hostile connection logged at most its protocol error, at warn
      // level (timeouts log at info, resets not at all); nothing at error level.
      const exit = await agent.exited;
      const bad = badLines(exit.stderr);
      const unexpected = bad.filter((line) => !PROTOCOL_ERROR.test(line));
      assert.deepEqual(unexpected, [], "only protocol errors are logged at warn/error level");
      const logged = bad.map((line) => Number(PROTOCOL_ERROR.exec(line)![1])).sort();
      // HAPROXY-DISCONNECTs among the junk are echoed, logged at info level.
      const echoed = exit.stderr.split("\n").flatMap((line) => {
        const m = PEER_DISCONNECT.exec(line);
        return m ? [Number(m[1])] : [];
      });
      const expected = statuses.filter((s) => s !== Status.TIMEOUT);
      for (const s of echoed) {
        if (s === Status.TIMEOUT) continue;
        const at = expected.indexOf(s);
        assert.ok(at >= 0, `echoed status ${s} was received`);
        expected.splice(at, 1);
      }
      assert.deepEqual(logged, expected.sort(), "one protocol-error line per refused connection");
    },
  );
}

/**
 * Connects and waits for the agent to close the connection unasked, as it
 * does past `--max-connections` (a reset may even beat the connect event).
 *
 * @returns How many bytes the agent sent first.
 */
function refused(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: "127.0.0.1" });
    let received = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error("the agent kept a connection over --max-connections open"));
    }, WAIT_MS);
    socket.on("data", (chunk: Uint8Array) => received += chunk.length);
    socket.on("error", () => {}); // ECONNRESET: "close" follows.
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(received);
    });
  });
}

test(
  "--max-connections 20 (-n 1): the 21st connection is closed at once, the 20 are untouched, a freed slot serves again",
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const LIMIT = 20;
    const agent = await withAgent(
      ["-n", "1", "--max-connections", String(LIMIT)],
      async (agent, connect) => {
        const held: SpopClient[] = [];
        for (let i = 0; i < LIMIT; i++) {
          const client = await connect();
          await client.hello();
          held.push(client);
        }
        // One over: the agent closes it without sending anything.
        assert.equal(await refused(agent.port), 0, "no frame for a refused connection");

        // Free one slot; once the agent has seen the close, a new one is served.
        await held.shift()!.close();
        let fresh: SpopClient | undefined;
        await until(async () => {
          // Refused (reset) before the connect completed: the slot is not free yet.
          const client = await connect().catch(() => undefined);
          if (client === undefined) return false;
          try {
            await client.hello();
            fresh = client;
            return true;
          } catch {
            assert.equal(client.received.length, 0, "a refused connection gets no frame");
            return false;
          }
        }, "a new connection to be served after one closed");
        held.push(fresh!);

        // Full again: the next one is refused too.
        assert.equal(await refused(agent.port), 0, "no frame for a refused connection");

        // The 20 were untouched: each is open and answers a NOTIFY.
        for (const [i, client] of held.entries()) {
          assert.equal(client.isClosed, false, `connection ${i} is open`);
          const ack = await client.notify(i + 1, 1);
          assert.equal(ack.type, FrameType.ACK, `connection ${i} is served`);
          assert.equal(ack.streamId, i + 1);
        }
      },
    );
    const exit = await agent.exited;
    const bad = badLines(exit.stderr).filter((l) => !/refused a connection from/.test(l));
    assert.deepEqual(bad, [], "nothing but refusals is logged at warn/error level");
    assert.match(exit.stderr, /refused a connection from 127\.0\.0\.1:\d+: 20 are open/);
  },
);

/** Opens a TCP connection and resolves once the handshake is done (the kernel's, not the agent's). */
function openSocket(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: "127.0.0.1" });
    socket.once("connect", () => {
      socket.off("error", reject);
      socket.on("error", () => {}); // The reset we send ourselves.
      resolve(socket);
    });
    socket.once("error", reject);
  });
}

/**
 * How many connections wait in the backlog, reset by their peers, in the
 * test below (Deno's backlog holds 511). A pause per such connection in the
 * accept loop (as there was: 50 ms) would hold the next good client for 20 s,
 * or about 4 s with 5 workers sharing them.
 */
const RESET_IN_BACKLOG = 400;
/** Hang guard for the good client's HELLO after them, under those 4 s. */
const AFTER_RESETS_GUARD_MS = 3_000;

for (const shape of SHAPES) {
  test(
    `connections reset before the agent accepts them (${shape.name}) do not hold up the next one`,
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      // HAProxy gives up on agent connections it queued (timeout hello); when
      // the agent comes to accept them, the kernel hands over sockets whose
      // peer is gone, and Deno's accept() fails with ENOTCONN for each.
      const agent = await withAgent(shape.args, async (agent) => {
        // Stopped, the agent accepts nothing: the connections wait in the
        // listen backlog, where their peers reset them.
        process.kill(agent.pid, "SIGSTOP");
        try {
          const sockets: net.Socket[] = [];
          for (let i = 0; i < RESET_IN_BACKLOG; i++) sockets.push(await openSocket(agent.port));
          for (const socket of sockets) socket.resetAndDestroy();
          await sleep(100); // Let the resets land.
        } finally {
          process.kill(agent.pid, "SIGCONT");
        }
        const client = await SpopClient.connect(agent.port);
        try {
          await client.send(helloBytes());
          const hello = await client.nextFrame(AFTER_RESETS_GUARD_MS);
          assert.equal(hello.type, FrameType.AGENT_HELLO, "the next connection is served");
          const ack = await client.notify(1, 1);
          assert.equal(ack.type, FrameType.ACK);
        } finally {
          await client.close();
        }
      });
      const exit = await agent.exited;
      assert.deepEqual(badLines(exit.stderr), [], "nothing at warn/error level");
    },
  );
}

/** Soft and hard RLIMIT_NOFILE of this process. */
function fileLimits(): { soft: number; hard: number } {
  const line = readFileSync("/proc/self/limits", "utf8").split("\n")
    .find((l) => l.startsWith("Max open files"));
  const [soft, hard] = (line ?? "").split(/\s+/).slice(3, 5)
    .map((v) => v === "unlimited" ? Infinity : Number(v));
  return { soft: soft ?? 1024, hard: hard ?? 1024 };
}

for (const shape of SHAPES) {
  test(
    `slow peers (${shape.name}): 1,000 connections trickling a byte a second do not stop a good client, and are all closed`,
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const PEERS = 1000;
      // This process and the agent each hold one descriptor per connection.
      const need = PEERS + 256;
      const limits = fileLimits();
      assert.ok(
        limits.soft >= need,
        `this test needs ${need} open files; ulimit -n is ${limits.soft} (hard ${limits.hard})`,
      );
      const options: StartOptions = limits.soft < 4096 ? { fdLimit: limits.soft } : {};
      await withAgent(shape.args, async (agent, connect) => {
        const hello = helloBytes();
        const notify = notifyBytes(1, 1);
        interface Peer {
          client: SpopClient;
          /** What it trickles: a HELLO, or (after a whole HELLO) a NOTIFY. */
          bytes: Uint8Array;
          sent: number;
        }
        const peers: Peer[] = [];
        // One byte a second to each peer: a tenth of them every 100 ms.
        let tick = 0;
        const trickle = setInterval(() => {
          for (let i = tick++ % 10; i < peers.length; i += 10) {
            const peer = peers[i]!;
            if (peer.client.isClosed || peer.sent >= peer.bytes.length) continue;
            void peer.client.send(peer.bytes.subarray(peer.sent, ++peer.sent)).catch(() => {});
          }
        }, 100);
        try {
          // Open them gradually: 50 every 50 ms. Even peers trickle their
          // HELLO (hello timeout), odd ones send a whole HELLO first and
          // trickle a NOTIFY (frame timeout).
          for (let i = 0; i < PEERS; i += 50) {
            const batch = await Promise.all(Array.from({ length: 50 }, () => connect()));
            for (const [j, client] of batch.entries()) {
              const handshake = (i + j) % 2 === 1;
              if (handshake) void client.send(hello).catch(() => {});
              peers.push({ client, bytes: handshake ? notify : hello, sent: 0 });
            }
            await sleep(50);
          }

          // A good client does HELLO and 100 NOTIFY round trips meanwhile.
          const good = await connect();
          await good.hello();
          for (let id = 1; id <= 100; id++) {
            const ack = await good.notify(id, 1);
            assert.equal(ack.type, FrameType.ACK, `NOTIFY ${id} is acknowledged`);
            assert.equal(ack.streamId, id);
          }
          const open = peers.filter((p) => !p.client.isClosed).length;
          assert.ok(open > 0, "the good client was served while slow peers were connected");
          await good.close();

          // The agent closes every slow peer: status 2 (timeout) or a plain close.
          await waitFor(
            () => peers.every((p) => p.client.isClosed),
            `the agent to close all ${PEERS} slow peers`,
            20_000,
          );
          let timedOut = 0;
          for (const [i, { client, bytes }] of peers.entries()) {
            const frames: ReceivedFrame[] = [];
            while (client.pending > 0) frames.push(await client.nextFrame());
            if (bytes === notify) {
              assert.equal(frames.shift()?.type, FrameType.AGENT_HELLO, `peer ${i}: AGENT-HELLO`);
            }
            assert.ok(frames.length <= 1, `peer ${i}: at most one more frame`);
            const last = frames[0];
            if (last !== undefined) {
              assert.equal(last.type, FrameType.AGENT_DISCONNECT, `peer ${i}`);
              assert.equal(last.disconnect?.status, Status.TIMEOUT, `peer ${i}`);
              timedOut++;
            }
          }
          assert.ok(timedOut > 0, "peers were closed for being too slow (status 2)");
          // Each timeout leaves one info line naming the peer.
          const timeoutLines = () => agent.stderr.split("\n").filter((l) => TIMEOUT_LINE.test(l));
          await until(() => timeoutLines().length >= timedOut, "a log line per timed-out peer");
          assert.ok(timeoutLines().length <= PEERS, "at most one line per peer");
          await until(() => establishedTo(agent.port) === 0, "no connection left to the agent");
        } finally {
          clearInterval(trickle);
        }
      }, options);
    },
  );
}

for (const build of haproxyBuilds()) {
  test(
    `interop [${build.label}]: HAProxy killed with SIGKILL under load: the agent logs nothing, drops every connection, and serves a new HAProxy`,
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      const start = (agentPort: number) =>
        startHaproxy({
          build,
          config: "haproxy-request.cfg",
          spoe: "spoe-iprep-request.conf",
          agentPort,
        });
      const scored = async (h: Haproxy) => {
        const res = await get(urlOf(h));
        return res.status === 403 || scoreOf(res.text) !== undefined;
      };
      let first: Haproxy | undefined;
      let second: Haproxy | undefined;
      const agent = await withAgent([], async (agent) => {
        try {
          const h = first = await start(agent.port);
          await until(() => scored(h), "a first score");

          // Load: 20 clients, each sending requests one after another.
          let running = true;
          let answered = 0;
          const load = Promise.all(Array.from({ length: 20 }, async () => {
            while (running) {
              try {
                if (await scored(h)) answered++;
              } catch {
                // Refused once HAProxy is gone.
                await sleep(10);
              }
            }
          }));
          try {
            await waitFor(() => answered >= 100, "100 answered requests under load", 15_000);
            assert.ok(establishedTo(agent.port) > 0, "HAProxy holds agent connections");
            await h.stop("SIGKILL");
          } finally {
            running = false;
            await load;
          }
          // The kernel closed HAProxy's sockets; the agent must close its ends.
          await until(() => establishedTo(agent.port) === 0, "no connection left to the agent");

          const h2 = second = await start(agent.port);
          await until(() => scored(h2), "a score from a new HAProxy");
        } finally {
          await first?.stop("SIGKILL");
          await second?.stop("SIGTERM");
        }
      });
      const exit = await agent.exited;
      assert.deepEqual(badLines(exit.stderr), [], "the agent logged warnings or errors");
    },
  );
}
