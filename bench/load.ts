/**
 * SPOP load generator that speaks like HAProxy: `-c` connections, each sends
 * a HAPROXY-HELLO (supported-versions "2.0", max-frame-size 16380,
 * capabilities "pipelining", an engine-id), waits for the AGENT-HELLO, then
 * keeps `-d` NOTIFYs (`check-client-ip` with one unnamed IPv4 argument) in
 * flight, sending one new NOTIFY per ACK received; the ACKs of one read are
 * answered with one write.
 *
 * Every ACK must carry the ids of an outstanding NOTIFY of its connection;
 * a mismatch, a DISCONNECT or a socket error counts as an error. Latency is
 * measured per NOTIFY, from the write of its batch to the read of its ACK.
 *
 * Runs under Bun and Deno (`node:net` sockets):
 *
 * ```sh
 * node_modules/bun/bin/bun.exe bench/load.ts --port 12345 -c 16 -d 16 --seconds 5
 * node_modules/deno/deno run --allow-net bench/load.ts --port 12345
 * ```
 *
 * Prints one JSON line on stdout and a human-readable summary on stderr.
 * Marker lines `# measuring` and `# measured` on stderr frame the measured
 * window (`bench/pool.ts` samples the agent between them). Exits 1 when an
 * error occurred or no ACK arrived.
 *
 * @module
 */

import net from "node:net";
import process from "node:process";
import { parseArgs } from "node:util";
import {
  DataType,
  decodeAgentHello,
  decodeDisconnect,
  FrameScanner,
  FrameType,
  FrameWriter,
  hasCapability,
  writeDisconnect,
  writeHaproxyHello,
} from "../lib/spop.ts";

const USAGE = `Usage: load.ts --port N [--host 127.0.0.1] [-c 16] [-d 16] [--seconds 5]
               [--warmup 1] [--ids 3x|2x]`;

/** Our max-frame-size in HAPROXY-HELLO (HAProxy's default). */
const MAX_FRAME_SIZE = 16380;
/** How long connecting and the handshake may take. */
const HANDSHAKE_TIMEOUT_MS = 5000;
/** How long closing may take after the measured window. */
const CLOSE_TIMEOUT_MS = 1000;

interface Options {
  host: string;
  port: number;
  connections: number;
  depth: number;
  seconds: number;
  warmup: number;
  ids: "3x" | "2x";
}

function usage(message: string): never {
  process.stderr.write(`load: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function parseOptions(argv: string[]): Options {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: "string" },
        host: { type: "string", default: "127.0.0.1" },
        connections: { type: "string", short: "c", default: "16" },
        depth: { type: "string", short: "d", default: "16" },
        seconds: { type: "string", default: "5" },
        warmup: { type: "string", default: "1" },
        ids: { type: "string", default: "3x" },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (err) {
    usage(err instanceof Error ? err.message : String(err));
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const int = (name: string, text: string, min: number, max: number): number => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min || n > max) {
      usage(`--${name} must be an integer in ${min}..${max}, got "${text}"`);
    }
    return n;
  };
  const seconds = (name: string, text: string, min: number): number => {
    const n = Number(text);
    if (!Number.isFinite(n) || n < min) {
      usage(`--${name} must be a number >= ${min}, got "${text}"`);
    }
    return n;
  };
  if (values.port === undefined) usage("--port is required");
  if (values.ids !== "3x" && values.ids !== "2x") usage(`--ids must be 3x or 2x`);
  return {
    host: values.host,
    port: int("port", values.port, 1, 65535),
    connections: int("connections", values.connections, 1, 10000),
    depth: int("depth", values.depth, 1, 100000),
    seconds: seconds("seconds", values.seconds, 0.1),
    warmup: seconds("warmup", values.warmup, 0),
    ids: values.ids,
  };
}

/**
 * Latencies in microseconds, log-linear: exact below 256 µs, then 128
 * sub-buckets per power of two (under 0.8 % error).
 */
class Histogram {
  readonly counts = new Float64Array(64 * 128);
  total = 0;

  record(us: number): void {
    const v = us < 0 ? 0 : us >= 0x7fffffff ? 0x7fffffff : Math.round(us);
    let index = v;
    if (v >= 256) {
      const shift = 31 - Math.clz32(v) - 7;
      index = shift * 128 + (v >>> shift);
    }
    this.counts[index]!++;
    this.total++;
  }

  /** The value below which `q` of the samples lie (bucket midpoint). */
  quantile(q: number): number {
    if (this.total === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.total));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) {
        if (i < 256) return i;
        const shift = (i >>> 7) - 1;
        const sub = i - shift * 128;
        return sub * 2 ** shift + (2 ** shift - 1) / 2;
      }
    }
    return Infinity;
  }

  reset(): void {
    this.counts.fill(0);
    this.total = 0;
  }
}

/**
 * Outstanding NOTIFYs by key (3.x style: the connection's sequence number;
 * 2.x style: the global stream-id): a ring indexed by key, with an overflow
 * map for the rare entry still waiting when its slot comes round again.
 */
class Outstanding {
  readonly #mask: number;
  /** key + 1, or 0 for a free slot. */
  readonly #tags: Float64Array;
  readonly #times: Float64Array;
  readonly #owners: Int32Array;
  readonly #overflow = new Map<number, { time: number; owner: number }>();

  constructor(minSize: number) {
    let size = 1024;
    while (size < minSize) size *= 2;
    this.#mask = size - 1;
    this.#tags = new Float64Array(size);
    this.#times = new Float64Array(size);
    this.#owners = new Int32Array(size);
  }

  add(key: number, owner: number, time: number): void {
    const slot = key & this.#mask;
    const old = this.#tags[slot]!;
    if (old !== 0) {
      this.#overflow.set(old - 1, { time: this.#times[slot]!, owner: this.#owners[slot]! });
    }
    this.#tags[slot] = key + 1;
    this.#times[slot] = time;
    this.#owners[slot] = owner;
  }

  /** Removes the entry; returns its send time, or -1 when it is not outstanding on `owner`. */
  take(key: number, owner: number): number {
    const slot = key & this.#mask;
    if (this.#tags[slot] === key + 1) {
      if (this.#owners[slot] !== owner) return -1;
      this.#tags[slot] = 0;
      return this.#times[slot]!;
    }
    if (this.#overflow.size === 0) return -1;
    const entry = this.#overflow.get(key);
    if (entry === undefined || entry.owner !== owner) return -1;
    this.#overflow.delete(key);
    return entry.time;
  }
}

const opts = parseOptions(process.argv.slice(2));
const runtime = process.versions.bun !== undefined
  ? `bun ${process.versions.bun}`
  : process.versions.deno !== undefined
  ? `deno ${process.versions.deno}`
  : `node ${process.versions.node}`;

const hist = new Histogram();
let acks = 0;
let reads = 0;
let mismatches = 0;
let disconnects = 0;
let socketErrors = 0;
let firstError = "";
let measuring = false;
let stopped = false;
let nextGlobalId = 0; // --ids 2x: one counter for all connections, from 0.
const shared = opts.ids === "2x" ? new Outstanding(4 * opts.connections * opts.depth) : undefined;

function noteError(message: string): void {
  if (firstError === "") firstError = message;
}

/** One HAProxy-like connection. */
class Conn {
  readonly sock: net.Socket;
  readonly index: number;
  readonly scanner = new FrameScanner(MAX_FRAME_SIZE);
  readonly writer = new FrameWriter(64 * 1024);
  /** The NOTIFY payload: one `check-client-ip` message with this connection's address. */
  readonly payload: Uint8Array;
  readonly outstanding: Outstanding;
  nextSeq = 0; // --ids 3x: stream-id 2 * seq + 1.
  ready = false;
  closed = false;
  /** An error already reported the loss of this connection. */
  lost = false;
  #handshake: { resolve: () => void; reject: (err: Error) => void } | undefined;
  readonly handshaken: Promise<void>;

  constructor(index: number) {
    this.index = index;
    this.outstanding = shared ?? new Outstanding(4 * opts.depth);
    const w = new FrameWriter();
    w.begin(FrameType.NOTIFY, 1, 1)
      .message("check-client-ip", 1)
      .arg(
        "",
        DataType.IPV4,
        new Uint8Array([10, 1 + (index >> 16), (index >> 8) & 255, index & 255]),
      )
      .end();
    this.scanner.push(w.bytes());
    const frame = this.scanner.next()!;
    this.payload = frame.buf.slice(frame.payloadStart, frame.end);
    this.scanner.next();
    this.scanner.reset();

    this.handshaken = new Promise<void>((resolve, reject) => {
      this.#handshake = { resolve, reject };
    });
    this.sock = net.connect({ host: opts.host, port: opts.port });
    this.sock.setNoDelay(true);
    this.sock.on("connect", () => {
      const hello = new FrameWriter();
      writeHaproxyHello(hello, {
        maxFrameSize: MAX_FRAME_SIZE,
        capabilities: "pipelining",
        engineId: ENGINE_ID,
      });
      this.sock.write(hello.bytes().slice());
    });
    this.sock.on("data", (chunk: Uint8Array) => this.#onData(chunk));
    this.sock.on("error", (err: Error) => {
      if (stopped || this.lost) return;
      this.lost = true;
      socketErrors++;
      noteError(`connection ${index}: ${err.message}`);
      this.#fail(err);
    });
    this.sock.on("close", () => {
      this.closed = true;
      if (!stopped && this.ready && !this.lost) {
        this.lost = true;
        socketErrors++;
        noteError(`connection ${index}: closed by the agent`);
      }
      this.#fail(new Error(`connection ${index} closed during the handshake`));
      maybeAllClosed();
    });
  }

  #fail(err: Error): void {
    const h = this.#handshake;
    this.#handshake = undefined;
    h?.reject(err);
  }

  /** Sends `count` NOTIFYs in one write; their latency counts from now. */
  send(count: number): void {
    const now = performance.now();
    const w = this.writer;
    w.reset();
    const payload = this.payload;
    if (shared !== undefined) {
      for (let i = 0; i < count; i++) {
        const id = nextGlobalId++;
        w.begin(FrameType.NOTIFY, id, 1).append(payload).end();
        shared.add(id, this.index, now);
      }
    } else {
      const outstanding = this.outstanding;
      for (let i = 0; i < count; i++) {
        const seq = this.nextSeq++;
        w.begin(FrameType.NOTIFY, 2 * seq + 1, 1).append(payload).end();
        outstanding.add(seq, 0, now);
      }
    }
    // node:net may keep the buffer until it is written: hand over a copy.
    this.sock.write(w.bytes().slice());
  }

  #onData(chunk: Uint8Array): void {
    if (stopped) return;
    const now = performance.now();
    const scanner = this.scanner;
    let k = 0;
    try {
      scanner.push(chunk);
      if (!this.ready) {
        const frame = scanner.next();
        if (frame === null) return;
        if (frame.type === FrameType.AGENT_DISCONNECT) {
          const d = decodeDisconnect(frame);
          throw new Error(`AGENT-DISCONNECT during the handshake: ${d.status} ${d.message}`);
        }
        const hello = decodeAgentHello(frame);
        if (hello.version !== "2.0") throw new Error(`agent version is "${hello.version}"`);
        if (!hasCapability(hello.capabilities, "pipelining") && opts.depth > 1) {
          throw new Error(`agent did not announce pipelining ("${hello.capabilities}")`);
        }
        scanner.maxLength = hello.maxFrameSize;
        this.ready = true;
        const h = this.#handshake;
        this.#handshake = undefined;
        h?.resolve();
      }
      const outstanding = this.outstanding;
      const owner = shared === undefined ? 0 : this.index;
      for (let frame = scanner.next(); frame !== null; frame = scanner.next()) {
        if (frame.type !== FrameType.ACK) {
          if (frame.type === FrameType.AGENT_DISCONNECT) {
            disconnects++;
            this.lost = true;
            const d = decodeDisconnect(frame);
            noteError(`connection ${this.index}: AGENT-DISCONNECT ${d.status} ${d.message}`);
          } else {
            mismatches++;
            noteError(`connection ${this.index}: unexpected frame type ${frame.type}`);
          }
          continue;
        }
        const sid = frame.streamId;
        let sent = -1;
        if (typeof sid === "number" && frame.frameId === 1 && frame.fin) {
          if (shared !== undefined) sent = outstanding.take(sid, owner);
          else if ((sid & 1) === 1) sent = outstanding.take((sid - 1) / 2, 0);
        }
        if (sent < 0) {
          mismatches++;
          noteError(
            `connection ${this.index}: ACK ${sid}/${frame.frameId} matches no outstanding NOTIFY`,
          );
          continue;
        }
        k++;
        if (measuring) {
          acks++;
          hist.record((now - sent) * 1000);
        }
      }
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (this.ready) {
        mismatches++;
        noteError(`connection ${this.index}: ${message}`);
      } else {
        noteError(`connection ${this.index}: ${message}`);
      }
      this.#fail(err instanceof Error ? err : new Error(message));
      this.sock.destroy();
      return;
    }
    if (measuring) reads++;
    if (k > 0) this.send(k);
  }

  /** Sends HAPROXY-DISCONNECT (normal) and closes our side. */
  close(): void {
    if (this.closed) return;
    const w = new FrameWriter();
    writeDisconnect(w, FrameType.HAPROXY_DISCONNECT, 0);
    this.sock.end(w.bytes().slice());
  }
}

const ENGINE_ID = crypto.randomUUID();
const conns: Conn[] = [];
let onAllClosed: (() => void) | undefined;

function maybeAllClosed(): void {
  if (onAllClosed !== undefined && conns.every((c) => c.closed)) onAllClosed();
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

for (let i = 0; i < opts.connections; i++) conns.push(new Conn(i));
let timer: ReturnType<typeof setTimeout> | undefined;
try {
  await Promise.race([
    Promise.all(conns.map((c) => c.handshaken)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("handshake timed out")), HANDSHAKE_TIMEOUT_MS);
    }),
  ]);
} catch (err) {
  stopped = true;
  for (const c of conns) c.sock.destroy();
  const message = firstError || (err instanceof Error ? err.message : String(err));
  process.stderr.write(`load: cannot start: ${message}\n`);
  process.exit(1);
}
clearTimeout(timer);

for (const c of conns) c.send(opts.depth);
await sleep(opts.warmup * 1000);

acks = 0;
reads = 0;
hist.reset();
process.stderr.write("# measuring\n");
const cpu0 = process.cpuUsage();
const t0 = performance.now();
measuring = true;
await sleep(opts.seconds * 1000);
measuring = false;
const t1 = performance.now();
const cpu = process.cpuUsage(cpu0);
process.stderr.write("# measured\n");
stopped = true;

const elapsedUs = (t1 - t0) * 1000;
const result = {
  msgsPerSec: Math.round(acks / ((t1 - t0) / 1000)),
  acks,
  errors: mismatches + disconnects + socketErrors,
  p50us: Math.round(hist.quantile(0.5)),
  p99us: Math.round(hist.quantile(0.99)),
  p999us: Math.round(hist.quantile(0.999)),
  loadCpuPct: Math.round(((cpu.user + cpu.system) / elapsedUs) * 1000) / 10,
  connections: opts.connections,
  depth: opts.depth,
  ids: opts.ids,
  runtime,
  seconds: Math.round(t1 - t0) / 1000,
  acksPerRead: reads === 0 ? 0 : Math.round((acks / reads) * 10) / 10,
  mismatches,
  disconnects,
  socketErrors,
  ...(firstError === "" ? {} : { firstError }),
};

await Promise.race([
  new Promise<void>((resolve) => {
    onAllClosed = resolve;
    for (const c of conns) c.close();
    maybeAllClosed();
  }),
  sleep(CLOSE_TIMEOUT_MS),
]);
for (const c of conns) if (!c.closed) c.sock.destroy();

process.stdout.write(`${JSON.stringify(result)}\n`);
const rate = result.msgsPerSec.toLocaleString("en-US");
process.stderr.write(
  `load (${runtime}): ${rate} msgs/s over ${result.seconds} s, ` +
    `${opts.connections} conn x ${opts.depth} deep, ids ${opts.ids}; ` +
    `latency p50 ${result.p50us} us, p99 ${result.p99us} us, p99.9 ${result.p999us} us; ` +
    `load-gen CPU ${result.loadCpuPct} %; errors ${result.errors}` +
    (firstError === "" ? "" : ` (first: ${firstError})`) + "\n",
);
process.exit(result.errors === 0 && acks > 0 ? 0 : 1);
