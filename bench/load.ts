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
 * `--echo`: the peer is an echo server (`bench/echo.ts`), not an agent. The
 * handshake ends when the HAPROXY-HELLO comes back, and a response is the
 * echoed NOTIFY itself (type 3, same ids) instead of an ACK; it is checked
 * against the outstanding NOTIFYs and measured the same way. The agent's
 * msgs/s divided by the echo server's under the same load is the agent's
 * efficiency relative to its runtime's limit.
 *
 * `--tls`: connect with TLS, for an agent run with `--tls-cert`/`--tls-key`
 * (the certificate is not checked: loopback only).
 *
 * `--rate N`: paced. Instead of one new NOTIFY per ACK, a timer (1 ms; the
 * runtimes fire it every ~1.1 ms) sends the NOTIFYs fallen due since its last
 * tick, so that the total rate is N msgs/s, spread evenly over the
 * connections (one write each), never more than `-d` in flight per
 * connection. What does not fit a connection's free depth (a tick's burst is
 * N x 1.1 ms) is the backlog, sent as responses free room; beyond `-c` x `-d`
 * messages behind, the excess is dropped and counted (`behindPct`): the peer
 * is slower than N. `perWrite` is the mean NOTIFYs per write.
 *
 * Runs under Bun and Deno. Under Bun it uses Bun's own sockets (`Bun.connect`),
 * which cost the load generator less CPU than `node:net` (`--transport node`
 * picks `node:net`, the only choice under Deno):
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
import tls from "node:tls";
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

const USAGE = `Usage: load.ts --port N [--host 127.0.0.1] [-c 16] [-d 16] [--seconds 5] [--spread N]
               [--warmup 1] [--ids 3x|2x] [--echo] [--rate N] [--transport bun|node] [--tls]`;

/** Our max-frame-size in HAPROXY-HELLO (HAProxy's default). */
const MAX_FRAME_SIZE = 16380;
/** How long connecting and the handshake may take. */
const HANDSHAKE_TIMEOUT_MS = 5000;
/** How long closing may take after the measured window. */
const CLOSE_TIMEOUT_MS = 1000;
/** The pacing timer's period with `--rate`. */
const TIMER_MS = 1;

/** What a connection needs from its socket. */
interface Transport {
  /** Sends bytes; they may be reused as soon as this returns. */
  write(bytes: Uint8Array): void;
  /** Sends bytes, then FIN. */
  end(bytes: Uint8Array): void;
  /** Closes at once. */
  destroy(): void;
}

/** Socket events, for a transport to report. */
interface TransportEvents {
  onConnect(): void;
  onData(chunk: Uint8Array): void;
  onError(err: Error): void;
  /** Once, whatever closed the socket. */
  onClose(): void;
}

/** `node:net` (Deno, Node, or Bun with `--transport node`). */
function nodeTransport(
  host: string,
  port: number,
  ev: TransportEvents,
  useTls: boolean,
): Transport {
  // TLS: the agent's certificate is not checked (a benchmark on loopback).
  const sock = useTls
    ? tls.connect({ host, port, rejectUnauthorized: false })
    : net.connect({ host, port });
  sock.setNoDelay(true);
  sock.on(useTls ? "secureConnect" : "connect", () => ev.onConnect());
  sock.on("data", (chunk: Uint8Array) => ev.onData(chunk));
  sock.on("error", (err: Error) => ev.onError(err));
  sock.on("close", () => ev.onClose());
  return {
    // node:net may keep the buffer until it is written: hand over a copy.
    write: (bytes) => void sock.write(bytes.slice()),
    end: (bytes) => void sock.end(bytes.slice()),
    destroy: () => void sock.destroy(),
  };
}

interface BunSocket {
  data: BunTransport;
  write(data: Uint8Array): number;
  end(): void;
  terminate(): void;
  setNoDelay?(enabled: boolean): void;
}

interface BunApi {
  connect(options: {
    hostname: string;
    port: number;
    tls?: { rejectUnauthorized: boolean };
    data: BunTransport;
    socket: {
      open(socket: BunSocket): void;
      data(socket: BunSocket, data: Uint8Array): void;
      drain(socket: BunSocket): void;
      end(socket: BunSocket): void;
      close(socket: BunSocket): void;
      error(socket: BunSocket, error: Error): void;
      connectError(socket: BunSocket, error: Error): void;
    };
  }): Promise<BunSocket>;
}

const BUN = (globalThis as unknown as { Bun?: BunApi }).Bun;

/**
 * Bun's sockets: `write` takes what the kernel accepts and keeps nothing,
 * so the rest is queued here (copied) and sent on `drain`.
 */
class BunTransport implements Transport {
  readonly ev: TransportEvents;
  sock: BunSocket | undefined;
  #out = new Uint8Array(0);
  #outLen = 0;
  #ending = false;
  #closed = false;

  constructor(ev: TransportEvents) {
    this.ev = ev;
  }

  write(bytes: Uint8Array): void {
    const sock = this.sock;
    if (sock === undefined || this.#closed || this.#ending) return;
    if (this.#outLen === 0) {
      const n = sock.write(bytes);
      if (n >= bytes.length) return;
      this.#queue(n > 0 ? bytes.subarray(n) : bytes);
    } else {
      this.#queue(bytes);
    }
  }

  end(bytes: Uint8Array): void {
    this.write(bytes);
    this.#ending = true;
    if (this.#outLen === 0) this.sock?.end();
  }

  destroy(): void {
    this.#outLen = 0;
    this.sock?.terminate();
  }

  drain(): void {
    const sock = this.sock;
    if (sock === undefined || this.#outLen === 0) return;
    const n = sock.write(this.#out.subarray(0, this.#outLen));
    if (n > 0) {
      this.#out.copyWithin(0, n, this.#outLen);
      this.#outLen -= n;
    }
    if (this.#outLen === 0 && this.#ending) sock.end();
  }

  closed(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.ev.onClose();
  }

  #queue(bytes: Uint8Array): void {
    const need = this.#outLen + bytes.length;
    if (need > this.#out.length) {
      const grown = new Uint8Array(Math.max(need, this.#out.length * 2, 16 * 1024));
      grown.set(this.#out.subarray(0, this.#outLen));
      this.#out = grown;
    }
    this.#out.set(bytes, this.#outLen);
    this.#outLen = need;
  }
}

/** One set of handlers for every Bun socket (the transport rides in `socket.data`). */
const BUN_HANDLERS = {
  open(socket: BunSocket) {
    socket.setNoDelay?.(true);
    socket.data.sock = socket;
    socket.data.ev.onConnect();
  },
  data(socket: BunSocket, data: Uint8Array) {
    socket.data.ev.onData(data);
  },
  drain(socket: BunSocket) {
    socket.data.drain();
  },
  end(socket: BunSocket) {
    socket.end();
  },
  close(socket: BunSocket) {
    socket.data.closed();
  },
  error(socket: BunSocket, error: Error) {
    socket.data.ev.onError(error);
  },
  connectError(socket: BunSocket, error: Error) {
    socket.data.ev.onError(error);
    socket.data.closed();
  },
};

function bunTransport(
  bun: BunApi,
  host: string,
  port: number,
  ev: TransportEvents,
  useTls: boolean,
): Transport {
  const t = new BunTransport(ev);
  bun.connect({
    hostname: host,
    port,
    ...(useTls ? { tls: { rejectUnauthorized: false } } : {}),
    data: t,
    socket: BUN_HANDLERS,
  }).catch((err: unknown) => {
    ev.onError(err instanceof Error ? err : new Error(String(err)));
    t.closed();
  });
  return t;
}

interface Options {
  host: string;
  port: number;
  connections: number;
  depth: number;
  seconds: number;
  warmup: number;
  ids: "3x" | "2x";
  /** The peer echoes (`bench/echo.ts`): responses are the NOTIFYs themselves. */
  echo: boolean;
  /** Speak TLS (the agent runs with --tls-cert/--tls-key; its certificate is not checked). */
  tls: boolean;
  /** Total msgs/s to send on a timer; 0 for closed loop (one NOTIFY per response). */
  rate: number;
  /** Sockets: Bun's own (`Bun.connect`) or `node:net`. */
  transport: "bun" | "node";
  /** 0: each connection sends its own address; N: NOTIFYs cycle through N random addresses. */
  spread: number;
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
        echo: { type: "boolean", default: false },
        tls: { type: "boolean", default: false },
        rate: { type: "string", default: "0" },
        transport: { type: "string" },
        spread: { type: "string", default: "0" },
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
  const transport = values.transport ?? (BUN === undefined ? "node" : "bun");
  if (transport !== "node" && transport !== "bun") usage(`--transport must be bun or node`);
  if (transport === "bun" && BUN === undefined) usage(`--transport bun needs Bun`);
  return {
    host: values.host,
    port: int("port", values.port, 1, 65535),
    connections: int("connections", values.connections, 1, 10000),
    depth: int("depth", values.depth, 1, 100000),
    seconds: seconds("seconds", values.seconds, 0.1),
    warmup: seconds("warmup", values.warmup, 0),
    ids: values.ids,
    echo: values.echo,
    tls: values.tls,
    rate: seconds("rate", values.rate, 0),
    transport,
    spread: int("spread", values.spread, 0, 1 << 24),
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
/** --rate: NOTIFYs due while measuring, and those dropped for lack of room. */
let due = 0;
let dropped = 0;
let writes = 0;
let notifies = 0;
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

/**
 * `--spread N`: N addresses at random (a fixed seed), as 4 bytes each, that
 * NOTIFYs cycle through (the last 4 bytes of the payload), so that an agent
 * with lists looks up addresses all over its table rather than 16 hot ones.
 */
const SPREAD = (() => {
  const out = new Uint8Array(opts.spread * 4);
  let s = 12345;
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
})();
let spreadAt = 0;

/** One HAProxy-like connection. */
class Conn {
  readonly sock: Transport;
  readonly index: number;
  readonly scanner = new FrameScanner(MAX_FRAME_SIZE);
  readonly writer = new FrameWriter(64 * 1024);
  /** The NOTIFY payload: one `check-client-ip` message with this connection's address. */
  readonly payload: Uint8Array;
  readonly outstanding: Outstanding;
  nextSeq = 0; // --ids 3x: stream-id 2 * seq + 1.
  /** NOTIFYs sent and not yet answered. */
  inFlight = 0;
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
    const events: TransportEvents = {
      onConnect: () => {
        const hello = new FrameWriter();
        writeHaproxyHello(hello, {
          maxFrameSize: MAX_FRAME_SIZE,
          capabilities: "pipelining",
          engineId: ENGINE_ID,
        });
        this.sock.write(hello.bytes());
      },
      onData: (chunk) => this.#onData(chunk),
      onError: (err) => {
        if (stopped || this.lost) return;
        this.lost = true;
        socketErrors++;
        noteError(`connection ${index}: ${err.message}`);
        this.#fail(err);
      },
      onClose: () => {
        this.closed = true;
        if (!stopped && this.ready && !this.lost) {
          this.lost = true;
          socketErrors++;
          noteError(`connection ${index}: closed by the agent`);
        }
        this.#fail(new Error(`connection ${index} closed during the handshake`));
        maybeAllClosed();
      },
    };
    this.sock = opts.transport === "bun"
      ? bunTransport(BUN!, opts.host, opts.port, events, opts.tls)
      : nodeTransport(opts.host, opts.port, events, opts.tls);
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
    const spread = SPREAD.length > 0;
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
        if (spread) {
          payload.set(SPREAD.subarray(spreadAt, spreadAt + 4), payload.length - 4);
          spreadAt = spreadAt + 4 === SPREAD.length ? 0 : spreadAt + 4;
        }
        w.begin(FrameType.NOTIFY, 2 * seq + 1, 1).append(payload).end();
        outstanding.add(seq, 0, now);
      }
    }
    this.inFlight += count;
    if (measuring) {
      writes++;
      notifies += count;
    }
    this.sock.write(w.bytes());
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
        if (opts.echo) {
          if (frame.type !== FrameType.HAPROXY_HELLO) {
            throw new Error(`echo: frame type ${frame.type} instead of our HAPROXY-HELLO`);
          }
        } else {
          const hello = decodeAgentHello(frame);
          if (hello.version !== "2.0") throw new Error(`agent version is "${hello.version}"`);
          if (!hasCapability(hello.capabilities, "pipelining") && opts.depth > 1) {
            throw new Error(`agent did not announce pipelining ("${hello.capabilities}")`);
          }
          scanner.maxLength = hello.maxFrameSize;
        }
        this.ready = true;
        const h = this.#handshake;
        this.#handshake = undefined;
        h?.resolve();
      }
      const outstanding = this.outstanding;
      const owner = shared === undefined ? 0 : this.index;
      for (let frame = scanner.next(); frame !== null; frame = scanner.next()) {
        if (frame.type !== RESPONSE) {
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
            `connection ${this.index}: ${RESPONSE_NAME} ${sid}/${frame.frameId} ` +
              `matches no outstanding NOTIFY`,
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
    this.inFlight -= k;
    if (k > 0) {
      if (opts.rate === 0) this.send(k);
      else if (pacing.backlog > 0) refill(this);
    }
  }

  /** Sends HAPROXY-DISCONNECT (normal) and closes our side. */
  close(): void {
    if (this.closed) return;
    const w = new FrameWriter();
    writeDisconnect(w, FrameType.HAPROXY_DISCONNECT, 0);
    this.sock.end(w.bytes());
  }
}

const ENGINE_ID = crypto.randomUUID();
/** The frame type that answers a NOTIFY. */
const RESPONSE = opts.echo ? FrameType.NOTIFY : FrameType.ACK;
const RESPONSE_NAME = opts.echo ? "echoed NOTIFY" : "ACK";
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

/** --rate: the pacing state. */
const pacing = { start: 0, sent: 0, lastTarget: 0, first: 0, backlog: 0 };
let pacer: ReturnType<typeof setInterval> | undefined;

/** --rate: NOTIFYs due now and not sent yet. */
function owed(now: number): number {
  const target = Math.floor(((now - pacing.start) / 1000) * opts.rate);
  if (target > pacing.lastTarget) {
    if (measuring) due += target - pacing.lastTarget;
    pacing.lastTarget = target;
  }
  return target - pacing.sent;
}

/**
 * --rate: the timer's tick. Sends what fell due since the last tick, spread
 * evenly over the connections (one write each, starting with a different one
 * each tick), within each one's free depth; what does not fit is the backlog.
 */
function tick(): void {
  if (stopped) return;
  let n = owed(performance.now());
  const count = conns.length;
  for (let j = 0; j < count && n > 0; j++) {
    const c = conns[(pacing.first + j) % count]!;
    const k = Math.min(Math.ceil(n / (count - j)), opts.depth - c.inFlight);
    if (k <= 0 || c.closed) continue;
    c.send(k);
    pacing.sent += k;
    n -= k;
  }
  // More than a full window behind: the peer is slower than the rate.
  const cap = opts.connections * opts.depth;
  if (n > cap) {
    if (measuring) dropped += n - cap;
    pacing.sent += n - cap;
    n = cap;
  }
  pacing.backlog = n;
  pacing.first = (pacing.first + 1) % count;
}

/** --rate: after responses on `c`, sends it what of the backlog fits its free depth. */
function refill(c: Conn): void {
  const k = Math.min(pacing.backlog, opts.depth - c.inFlight);
  if (k <= 0) return;
  c.send(k);
  pacing.sent += k;
  pacing.backlog -= k;
}

function startPacer(): void {
  pacing.start = performance.now();
  pacer = setInterval(tick, TIMER_MS);
}

if (opts.rate > 0) startPacer();
else for (const c of conns) c.send(opts.depth);
await sleep(opts.warmup * 1000);

acks = 0;
reads = 0;
due = 0;
dropped = 0;
writes = 0;
notifies = 0;
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
clearInterval(pacer);

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
  mode: opts.echo ? "echo" : "ack",
  ...(opts.rate > 0
    ? {
      rate: opts.rate,
      behindPct: due === 0 ? 0 : Math.round((dropped / due) * 1000) / 10,
    }
    : {}),
  runtime,
  transport: opts.transport,
  seconds: Math.round(t1 - t0) / 1000,
  acksPerRead: reads === 0 ? 0 : Math.round((acks / reads) * 10) / 10,
  perWrite: writes === 0 ? 0 : Math.round((notifies / writes) * 10) / 10,
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
    `${opts.connections} conn x ${opts.depth} deep, ids ${opts.ids}` +
    (opts.echo ? ", echo" : "") +
    (opts.rate > 0 ? `, paced at ${opts.rate} msgs/s (behind ${result.behindPct} %)` : "") +
    "; " +
    `latency p50 ${result.p50us} us, p99 ${result.p99us} us, p99.9 ${result.p999us} us; ` +
    `load-gen CPU ${result.loadCpuPct} %; errors ${result.errors}` +
    (firstError === "" ? "" : ` (first: ${firstError})`) + "\n",
);
process.exit(result.errors === 0 && acks > 0 ? 0 : 1);
