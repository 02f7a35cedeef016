/**
 * A deterministic, seeded fuzzer for `lib/agent/session.ts`.
 *
 * Each case is a pure function of `(seed, index)`: {@linkcode generateCase}
 * starts from a valid HAProxy byte stream (HELLO variants, health checks, 2.x,
 * 3.x and 64-bit NOTIFY ids, messages with arguments of every type, fragmented
 * NOTIFY+UNSET sequences, aborts, unknown frame types, HAPROXY-DISCONNECT),
 * mutates it (bit flips, byte replacement, truncation, junk, LENGTH lies,
 * reserved data types, huge varints, swapped, duplicated and dropped frames,
 * random bytes) and cuts it into reads of 1 byte up to the whole stream.
 * {@linkcode runCase} feeds it to a {@linkcode Session} on a fake connection,
 * with the IP-reputation agent and handlers that return, throw, or finish
 * later, interleaving microtask turns, timer ticks, backpressure, shutdown,
 * peer close and abort; then it checks the invariants listed in
 * `checkOutcome` against an independent frame-level model of what
 * the session must have read.
 *
 * A failure prints the seed, the index, the options, the reads and the input
 * bytes in hex (and, when a plain replay reproduces it, a shrunk input), so it
 * can be pasted into a regression test.
 *
 * @module
 */

import { Agent } from "../lib/agent/handler.ts";
import type { Message } from "../lib/agent/message.ts";
import type { Reply } from "../lib/agent/reply.ts";
import { ipReputation, seededScore } from "../lib/iprep/mod.ts";
import { createLogger, Level } from "../lib/agent/log.ts";
import { DEFAULT_SESSION_OPTIONS, Session, type SessionConfig } from "../lib/agent/session.ts";
import {
  DataType,
  decodeDisconnect,
  decodeHaproxyHello,
  Frame,
  FrameType,
  FrameWriter,
  hasCapability,
  negotiateMaxFrameSize,
  pickVersion,
  readFrame,
  SpopError,
  Status,
  type Value,
  VarScope,
} from "../lib/spop.ts";
import { toHex } from "./_hex.ts";
import type { Conn, ConnHandler } from "../lib/agent/conn.ts";
import {
  type AgentFrame,
  concat,
  decodeAgentFrames,
  type Deferred,
  deferred,
  ENGINE_ID,
  FakeTimers,
} from "./_session_harness.ts";

// ---------------------------------------------------------------------------
// PRNG: splitmix32 seeds xoshiro128**

/** One step of splitmix32 as a pure 32-bit mixing function. */
export function mix32(x: number): number {
  let z = (x + 0x9e3779b9) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** The seed of case `index` of a run with `seed`. */
export function caseSeed(seed: number, index: number): number {
  return mix32(mix32(seed >>> 0) ^ mix32((index >>> 0) ^ 0x632be5ab) ^ Math.floor(index / 2 ** 32));
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** xoshiro128** seeded through splitmix32: fast, small state, deterministic everywhere. */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  /** @param seed Any 32-bit value. */
  constructor(seed: number) {
    let s = seed >>> 0;
    const next = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.#a = next();
    this.#b = next();
    this.#c = next();
    this.#d = next();
    if ((this.#a | this.#b | this.#c | this.#d) === 0) this.#a = 1;
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    const result = Math.imul(rotl(Math.imul(this.#b, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.#b << 9) >>> 0;
    this.#c = (this.#c ^ this.#a) >>> 0;
    this.#d = (this.#d ^ this.#b) >>> 0;
    this.#b = (this.#b ^ this.#c) >>> 0;
    this.#a = (this.#a ^ this.#d) >>> 0;
    this.#c = (this.#c ^ t) >>> 0;
    this.#d = rotl(this.#d, 11);
    return result;
  }

  /** A uniform float in [0, 1). */
  float(): number {
    return this.u32() / 4294967296;
  }

  /** A uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** A uniform integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** Random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      let x = this.u32();
      for (let k = i; k < i + 4 && k < n; k++, x >>>= 8) out[k] = x & 0xff;
    }
    return out;
  }

  /** A uniform 64-bit unsigned bigint. */
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }

  /** An integer from a "small, medium, large" mix, biased to small values. */
  size(max: number): number {
    const u = this.float();
    if (u < 0.6) return this.int(Math.min(max, 16) + 1);
    if (u < 0.9) return this.int(Math.min(max, 256) + 1);
    return this.int(max + 1);
  }

  /** Shuffles in place. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  }
}

// ---------------------------------------------------------------------------
// Varints, written from the spec (§2.1) independently of lib/spop/_varint.ts

const U64_MAX = 0xffff_ffff_ffff_ffffn;

/** Bytes of the §2.1 varint of `value` (without encoding it). */
export function varintLength(value: number | bigint): number {
  if (typeof value === "bigint") {
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) return encodeVarint(value).length;
    value = Number(value);
  }
  let length = 1;
  let max = 239;
  let scale = 16;
  while (value > max) {
    max += 128 * scale;
    scale *= 128;
    length++;
  }
  return length;
}

/** Bytes of the length prefix of a raw string that takes `total` bytes with it. */
function lengthPrefix(total: number): number {
  for (let n = 1; n < 10; n++) if (varintLength(total - n) === n) return n;
  return 10;
}

/** Encodes any non-negative bigint with the §2.1 scheme (values above 2^64-1 too). */
export function encodeVarint(value: bigint | number): number[] {
  let v = BigInt(value);
  if (v < 240n) return [Number(v)];
  const out = [Number(0xf0n | (v & 0x0fn))];
  v = (v - 240n) >> 4n;
  while (v >= 128n) {
    out.push(Number(0x80n | (v & 0x7fn)));
    v = (v - 128n) >> 7n;
  }
  out.push(Number(v));
  return out;
}

/** Decodes a varint; at most 10 bytes and 2^64-1, as §2.1 recommends. */
export function decodeVarint(
  buf: Uint8Array,
  off: number,
  end: number,
): { value: number | bigint; next: number } | "incomplete" | "invalid" {
  if (off >= end) return "incomplete";
  const b0 = buf[off]!;
  if (b0 < 240) return { value: b0, next: off + 1 };
  let value = BigInt(b0);
  let shift = 4n;
  let pos = off + 1;
  for (;;) {
    if (pos - off >= 10) return "invalid";
    if (pos >= end) return "incomplete";
    const b = buf[pos++]!;
    value += BigInt(b) << shift;
    shift += 7n;
    if (b < 128) break;
  }
  if (value > U64_MAX) return "invalid";
  return {
    value: value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value,
    next: pos,
  };
}

// ---------------------------------------------------------------------------
// Frames with marks: where the typed-data bytes, varints and NB-ARGS are

/** A position of interest inside a frame, for structure-aware mutations. */
type Mark =
  | { kind: "type"; at: number }
  | { kind: "varint"; at: number; end: number; role: "id" | "int" | "len" }
  | { kind: "nbargs"; at: number };

/** One frame of a generated stream. */
interface Piece {
  bytes: Uint8Array;
  kind: "hello" | "notify" | "frag" | "disconnect" | "unknown" | "junk";
  marks: Mark[];
}

/** Builds one frame (or a bare payload) on a FrameWriter, recording marks. */
class Builder {
  readonly w = new FrameWriter(128);
  readonly marks: Mark[] = [];
  #frame = false;

  begin(type: number, streamId: number | bigint, frameId: number | bigint, flags: number): this {
    this.#frame = true;
    this.w.begin(type, streamId, frameId, flags);
    const s = 9 + varintLength(streamId);
    this.marks.push({ kind: "varint", at: 9, end: s, role: "id" });
    this.marks.push({ kind: "varint", at: s, end: this.w.size, role: "id" });
    return this;
  }

  raw(text: string | Uint8Array): this {
    const at = this.w.size;
    this.w.raw(text);
    this.marks.push({ kind: "varint", at, end: at + lengthPrefix(this.w.size - at), role: "len" });
    return this;
  }

  typed(type: DataType, value: Value): this {
    const at = this.w.size;
    this.w.typed(type, value);
    this.marks.push({ kind: "type", at });
    if (type >= DataType.INT32 && type <= DataType.UINT64) {
      this.marks.push({ kind: "varint", at: at + 1, end: this.w.size, role: "int" });
    } else if (type === DataType.STRING || type === DataType.BINARY) {
      const end = at + 1 + lengthPrefix(this.w.size - at - 1);
      this.marks.push({ kind: "varint", at: at + 1, end, role: "len" });
    }
    return this;
  }

  kv(name: string | Uint8Array, type: DataType, value: Value): this {
    return this.raw(name).typed(type, value);
  }

  message(name: string | Uint8Array, args: readonly ArgSpec[]): this {
    this.raw(name);
    this.marks.push({ kind: "nbargs", at: this.w.size });
    this.w.byte(args.length);
    for (const a of args) this.raw(a.name).typed(a.type, a.value);
    return this;
  }

  append(bytes: Uint8Array): this {
    this.w.append(bytes);
    return this;
  }

  /** The frame (or payload) and its marks. */
  piece(kind: Piece["kind"]): Piece {
    if (this.#frame) this.w.end();
    return { bytes: this.w.bytes().slice(), kind, marks: this.marks };
  }
}

/** Replaces `bytes[at, end)` of a piece with `repl`, moving the marks behind it. */
function splice(p: Piece, at: number, end: number, repl: ArrayLike<number>): void {
  const out = new Uint8Array(p.bytes.length - (end - at) + repl.length);
  out.set(p.bytes.subarray(0, at));
  out.set(repl, at);
  out.set(p.bytes.subarray(end), at + repl.length);
  const delta = repl.length - (end - at);
  p.bytes = out;
  p.marks = p.marks.flatMap((m): Mark[] => {
    const mEnd = m.kind === "varint" ? m.end : m.at + 1;
    if (mEnd <= at) return [m];
    if (m.at >= end) {
      return [
        m.kind === "varint" ? { ...m, at: m.at + delta, end: m.end + delta } : {
          ...m,
          at: m.at + delta,
        },
      ];
    }
    if (m.at === at && m.kind === "varint") return [{ ...m, end: at + repl.length }];
    return [];
  });
}

function setLength(p: Piece, length: number): void {
  if (p.bytes.length < 4) return;
  new DataView(p.bytes.buffer, p.bytes.byteOffset).setUint32(0, length >>> 0);
}

function fixLength(p: Piece): void {
  setLength(p, p.bytes.length - 4);
}

// ---------------------------------------------------------------------------
// Case generation

/** One message argument. */
interface ArgSpec {
  name: string | Uint8Array;
  type: DataType;
  value: Value;
}

/** A generated case: everything needed to replay it. */
export interface FuzzCase {
  seed: number;
  index: number;
  /** The seed all of the case's randomness derives from. */
  caseSeed: number;
  options: SessionConfig;
  /** The bytes HAProxy "sends". */
  input: Uint8Array;
  /** Sizes of the reads, in order; they add up to `input.length`. */
  chunks: number[];
  /** 0: a valid stream, unmutated; 1: a few mutations; 2: many, or random bytes. */
  level: number;
  /** What the generator did, for humans. */
  notes: string[];
  /** The seed of the IP-reputation agent. */
  ipSeed: number;
  /** Log level of the session (debug in some cases, to run those paths). */
  logLevel: Level;
  /** Level 0: ip_score values each NOTIFY's ACK must carry, by "stream/frame". */
  scores: Map<string, number[]>;
}

const HANDLED = ["fuzz-a", "fuzz-b", "fuzz-c"] as const;
const IP_MESSAGE = "check-client-ip";

function genOptions(r: Rng): SessionConfig {
  return {
    ...DEFAULT_SESSION_OPTIONS,
    maxFrameSize: r.chance(0.6)
      ? r.pick([256, 257, 300, 512, 1024, 4096, 16380, 16384, 65536])
      : r.range(256, 65536),
    pipelining: r.chance(0.85),
    async: r.chance(0.2),
    fragmentation: r.chance(0.45),
    helloTimeout: r.pick([5000, 5000, 1000, 50, 1]),
    replyDelay: r.chance(0.12) ? r.range(1, 50) : 0,
    closeAfterFrames: r.chance(0.1) ? r.range(1, 8) : 0,
    emptyAcks: r.chance(0.35),
    maxInFlight: r.chance(0.3) ? r.range(1, 4) : r.pick([20, 1024]),
    maxQueuedBytes: r.chance(0.25) ? r.range(0, 512) : 1 << 20,
    maxReassembledSize: r.chance(0.3) ? r.range(256, 4096) : r.pick([65536, 1 << 20]),
    handlerTimeout: r.pick([50, 50, 0, 1, r.range(1, 200)]),
    frameTimeout: r.pick([5000, 1, 100, r.range(1, 10000)]),
    maxLateHandlers: r.chance(0.2) ? r.range(1, 3) : 1024,
  };
}

const ASCII = new TextEncoder().encode(
  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.",
);
const latin1 = new TextDecoder("latin1");

function ascii(r: Rng, n: number): string {
  const codes = new Uint8Array(n);
  for (let i = 0; i < n; i += 4) {
    let x = r.u32();
    for (let k = i; k < i + 4 && k < n; k++, x >>>= 8) codes[k] = ASCII[(x & 0xff) % 65]!;
  }
  return latin1.decode(codes);
}

/** A string of any kind: ASCII, multi-byte UTF-8, or raw bytes (maybe invalid UTF-8). */
function anyText(r: Rng, max: number): string | Uint8Array {
  const n = r.size(max);
  const u = r.float();
  if (u < 0.6) return ascii(r, n);
  if (u < 0.8) return r.pick(["é", "€", "😀", "ß", "a"]).repeat(Math.ceil(n / 3)) + ascii(r, 3);
  return r.bytes(n);
}

function genArgValue(r: Rng, type: DataType): Value {
  switch (type) {
    case DataType.NULL:
      return null;
    case DataType.BOOL:
      return r.chance(0.5);
    case DataType.INT32:
      switch (r.int(6)) {
        case 0:
          return r.pick([0, -1, 1, 2147483647, -2147483648]);
        case 1:
          return r.u32() | 0;
        default:
          return r.range(-300, 300);
      }
    case DataType.UINT32:
      switch (r.int(4)) {
        case 0:
          return r.pick([0, 1, 239, 240, 2287, 2288, 4294967295]);
        case 1:
          return r.u32();
        default:
          return r.int(70000);
      }
    case DataType.INT64:
      switch (r.int(5)) {
        case 0:
          return r.pick<number | bigint>([
            0,
            -1,
            Number.MAX_SAFE_INTEGER,
            -Number.MAX_SAFE_INTEGER,
            0x7fff_ffff_ffff_ffffn,
            -0x8000_0000_0000_0000n,
          ]);
        case 1:
          return BigInt.asIntN(64, r.u64());
        default:
          return r.range(-100000, 100000);
      }
    case DataType.UINT64:
      switch (r.int(4)) {
        case 0:
          return r.pick<number | bigint>([0, U64_MAX, 2n ** 53n, 2n ** 53n - 1n]);
        case 1:
          return r.u64();
        default:
          return r.u32();
      }
    case DataType.IPV4:
      return r.chance(0.3) ? new Uint8Array([192, 168, 1, 10]) : r.bytes(4);
    case DataType.IPV6:
      return r.chance(0.3) ? new Uint8Array(16) : r.bytes(16);
    case DataType.STRING:
    case DataType.BINARY:
      return anyText(r, r.chance(0.02) ? 3000 : 300);
    default:
      return null;
  }
}

function genArgs(r: Rng, count: number): ArgSpec[] {
  const args: ArgSpec[] = [];
  for (let i = 0; i < count; i++) {
    const type = r.int(10) as DataType;
    const name = r.chance(0.4) ? "" : r.chance(0.8) ? ascii(r, r.range(1, 12)) : anyText(r, 20);
    args.push({ name, type, value: genArgValue(r, type) });
  }
  return args;
}

/** One message: the IP check, a handled name, or an unknown one. */
function genMessage(r: Rng): { name: string | Uint8Array; args: ArgSpec[] } {
  const u = r.float();
  if (u < 0.4) {
    const v = r.float();
    let args: ArgSpec[];
    if (v < 0.45) {
      args = [{ name: r.chance(0.5) ? "" : "ip", type: DataType.IPV4, value: r.bytes(4) }];
    } else if (v < 0.8) {
      args = [{ name: r.chance(0.5) ? "" : "ip", type: DataType.IPV6, value: r.bytes(16) }];
    } else args = genArgs(r, r.range(0, 3));
    return { name: IP_MESSAGE, args };
  }
  const count = r.chance(0.03) ? r.range(100, 255) : r.size(8);
  const name = u < 0.8
    ? r.pick(HANDLED)
    : r.chance(0.7)
    ? ascii(r, r.range(0, 30))
    : anyText(r, 40);
  return { name, args: genArgs(r, count) };
}

/** The ip_score values the IP-reputation agent gives a message list. */
function expectedScores(
  messages: readonly { name: string | Uint8Array; args: ArgSpec[] }[],
  ipSeed: number,
): number[] {
  const out: number[] = [];
  for (const m of messages) {
    if (m.name !== IP_MESSAGE || m.args.length !== 1) continue;
    const a = m.args[0]!;
    if (a.type !== DataType.IPV4 && a.type !== DataType.IPV6) continue;
    out.push(seededScore(ipSeed, a.value as Uint8Array));
  }
  return out;
}

/** Key of a (stream-id, frame-id) pair. */
export function idKey(streamId: number | bigint, frameId: number | bigint): string {
  return `${streamId}/${frameId}`;
}

/** Generates a valid stream (level 0) as pieces, and what its ACKs must carry. */
class StreamGen {
  readonly pieces: Piece[] = [];
  readonly scores = new Map<string, number[]>();
  readonly notes: string[] = [];
  negotiated = 0;
  fragmentation = false;
  healthcheck = false;
  readonly #r: Rng;
  readonly #o: SessionConfig;
  readonly #ipSeed: number;
  readonly #keys = new Set<string>();
  #style: "2x" | "3x" | "64" = "3x";
  #stream: bigint = 1n;
  #frame: bigint = 1n;

  constructor(r: Rng, options: SessionConfig, ipSeed: number) {
    this.#r = r;
    this.#o = options;
    this.#ipSeed = ipSeed;
  }

  hello(): void {
    const r = this.#r;
    const healthcheck = r.chance(0.06);
    const maxType = r.pick([
      DataType.UINT32,
      DataType.UINT32,
      DataType.UINT32,
      DataType.INT32,
      DataType.INT64,
      DataType.UINT64,
    ]);
    let max: number = r.pick([
      16380,
      16380,
      256,
      65535,
      1 << 20,
      this.#o.maxFrameSize,
      r.range(256, 70000),
    ]);
    if (maxType === DataType.INT32) max = Math.min(max, 0x7fffffff);
    const caps = healthcheck ? "" : r.pick([
      "pipelining",
      "pipelining",
      "pipelining,async",
      "",
      "async",
      " pipelining , async,fragmentation",
      "fragmentation",
    ]);
    const items: ArgSpec[] = [
      {
        name: "supported-versions",
        type: DataType.STRING,
        value: r.pick(["2.0", "2.0", "2.0", "1.0,2.0", " 2.0 ", "2.1, 3.0", "2.5"]),
      },
      { name: "max-frame-size", type: maxType, value: max },
      { name: "capabilities", type: DataType.STRING, value: caps },
    ];
    if (healthcheck) items.push({ name: "healthcheck", type: DataType.BOOL, value: true });
    else if (r.chance(0.05)) items.push({ name: "healthcheck", type: DataType.BOOL, value: false });
    if (!healthcheck && r.chance(0.85)) {
      items.push({
        name: "engine-id",
        type: DataType.STRING,
        value: r.chance(0.7) ? ENGINE_ID : ascii(r, r.range(0, 40)),
      });
    }
    if (r.chance(0.15)) {
      for (let i = r.range(1, 3); i > 0; i--) {
        const type = r.int(10) as DataType;
        items.push({ name: ascii(r, r.range(1, 16)), type, value: genArgValue(r, type) });
      }
    }
    if (r.chance(0.2)) r.shuffle(items);
    const b = new Builder().begin(
      FrameType.HAPROXY_HELLO,
      0,
      0,
      r.chance(0.9) ? 1 : 1 | (r.u32() & ~3),
    );
    for (const it of items) b.kv(it.name, it.type, it.value);
    this.pieces.push(b.piece("hello"));
    this.healthcheck = healthcheck;
    this.negotiated = Math.min(max, this.#o.maxFrameSize);
    this.fragmentation = this.#o.fragmentation && !healthcheck;
    this.#style = r.pick(["2x", "3x", "64"] as const);
    this.#stream = this.#style === "3x"
      ? 1n
      : this.#style === "2x"
      ? BigInt(r.pick([0, 0, 1, r.u32()]))
      : r.pick([2n ** 53n - 2n, U64_MAX - 5n, r.u64(), 2n ** 63n]);
    this.#frame = 1n;
    this.notes.push(
      `hello${healthcheck ? " healthcheck" : ""} max=${max} caps="${caps}" ids=${this.#style}`,
    );
  }

  #nextIds(): [bigint, bigint] {
    const r = this.#r;
    for (;;) {
      let ids: [bigint, bigint];
      if (this.#style === "3x") {
        ids = [this.#stream, 1n];
        this.#stream += 2n;
      } else if (this.#style === "2x") {
        if (r.chance(0.4)) {
          this.#stream += BigInt(r.range(1, 3));
          this.#frame = 1n;
        }
        ids = [this.#stream, this.#frame++];
      } else {
        const s = r.chance(0.7) ? this.#stream : r.u64();
        ids = [s, r.chance(0.5) ? r.u64() : BigInt(r.range(0, 300))];
      }
      const key = idKey(norm(ids[0]), norm(ids[1]));
      if (!this.#keys.has(key)) {
        this.#keys.add(key);
        return ids;
      }
      this.#stream += 1n;
    }
  }

  /** A NOTIFY, fragmented when it must or by chance; maybe aborted. */
  notify(): void {
    const r = this.#r;
    const [s, f] = this.#nextIds();
    const count = r.chance(0.08) ? 0 : r.chance(0.03) ? r.range(10, 40) : r.range(1, 4);
    let messages = Array.from({ length: count }, () => genMessage(r));
    const header = 5 + encodeVarint(s).length + encodeVarint(f).length;
    const built = new Builder();
    const ends = [0];
    for (const m of messages) ends.push(built.message(m.name, m.args).w.size);
    const payload = built.piece("notify");
    const fits = () => header + payload.bytes.length <= this.negotiated;
    const reassemblable = () =>
      this.fragmentation && payload.bytes.length <= this.#o.maxReassembledSize;
    if (!fits() && !reassemblable()) {
      // Keep the messages that fit.
      let k = messages.length;
      while (k > 0 && header + ends[k]! > this.negotiated) k--;
      messages = messages.slice(0, k);
      const cut = ends[k]!;
      payload.bytes = payload.bytes.subarray(0, cut);
      payload.marks = payload.marks.filter((m) => (m.kind === "varint" ? m.end : m.at + 1) <= cut);
    }
    const flags = r.chance(0.9) ? 1 : 1 | (r.u32() & ~3);
    const key = idKey(norm(s), norm(f));
    if (!fits() || (this.fragmentation && r.chance(0.35))) {
      this.#fragments(s, f, payload.bytes, key, messages);
      return;
    }
    const b = new Builder().begin(FrameType.NOTIFY, s, f, flags);
    const at = b.w.size;
    b.append(payload.bytes);
    for (const m of payload.marks) {
      b.marks.push(
        m.kind === "varint" ? { ...m, at: m.at + at, end: m.end + at } : { ...m, at: m.at + at },
      );
    }
    this.pieces.push(b.piece("notify"));
    this.scores.set(key, expectedScores(messages, this.#ipSeed));
  }

  #fragments(
    s: bigint,
    f: bigint,
    payload: Uint8Array,
    key: string,
    messages: { name: string | Uint8Array; args: ArgSpec[] }[],
  ): void {
    const r = this.#r;
    const room = this.negotiated - 5 - encodeVarint(s).length - encodeVarint(f).length;
    const parts: Uint8Array[] = [];
    let at = 0;
    do {
      const n = Math.min(
        payload.length - at,
        r.chance(0.2) ? r.int(room + 1) : r.range(Math.min(1, room), room),
      );
      parts.push(payload.subarray(at, at + n));
      at += n;
    } while (at < payload.length);
    if (parts.length === 1) parts.push(new Uint8Array(0));
    const abort = r.chance(0.1) ? r.range(1, parts.length) : -1;
    for (let i = 0; i < parts.length; i++) {
      if (i === abort) {
        const b = new Builder().begin(FrameType.UNSET, s, f, r.pick([3, 2, 3 | (r.u32() & ~3)]));
        this.pieces.push(b.piece("frag"));
        this.notes.push(`fragmented ${key} in ${parts.length}, aborted after ${i}`);
        return;
      }
      const last = i === parts.length - 1;
      const type = i === 0 ? FrameType.NOTIFY : FrameType.UNSET;
      const b = new Builder().begin(type, s, f, last ? 1 : r.chance(0.9) ? 0 : r.u32() & ~3);
      b.append(parts[i]!);
      this.pieces.push(b.piece("frag"));
    }
    this.scores.set(key, expectedScores(messages, this.#ipSeed));
    this.notes.push(`fragmented ${key} in ${parts.length}`);
  }

  /** A well-formed NOTIFY (or first fragment) just above the negotiated max-frame-size. */
  oversize(): void {
    const r = this.#r;
    const [s, f] = this.#nextIds();
    const target = r.pick([
      this.negotiated + 1,
      this.negotiated + r.range(1, 100),
      this.#o.maxFrameSize + 1,
      this.negotiated * 2,
    ]);
    const fin = r.chance(0.8);
    // LENGTH = type, flags, ids, then "fuzz-a" (7), NB-ARGS, "" (1), type, varint, bytes.
    const fixed = 5 + varintLength(s) + varintLength(f) + 7 + 1 + 1 + 1;
    let len = Math.max(0, target - fixed - 1);
    while (len > 0 && fixed + varintLength(len) + len > target) len--;
    const b = new Builder().begin(FrameType.NOTIFY, s, f, fin ? 1 : 0);
    b.message("fuzz-a", [{
      name: "",
      type: DataType.STRING,
      value: new Uint8Array(len).fill(0x6f),
    }]);
    const p = b.piece("notify");
    this.pieces.push(p);
    this.notes.push(`oversize NOTIFY ${idKey(norm(s), norm(f))}: LENGTH ${p.bytes.length - 4}`);
  }

  /** A frame of a type the session must skip. */
  unknown(): void {
    const r = this.#r;
    let type = r.range(4, 255);
    if (type >= 101 && type <= 103) type += 3;
    const b = new Builder().begin(type, r.chance(0.5) ? 0 : r.u64(), r.int(10), r.u32());
    b.append(r.bytes(r.size(60)));
    this.pieces.push(b.piece("unknown"));
  }

  /** An UNSET+ABORT with nothing open: ignored. */
  strayAbort(): void {
    const r = this.#r;
    this.pieces.push(new Builder().begin(FrameType.UNSET, r.int(100), r.int(100), 3).piece("frag"));
  }

  /** A HAPROXY-DISCONNECT with a valid status. */
  disconnect(): void {
    const r = this.#r;
    const status = r.pick([0, 0, 1, 2, 3, 4, 9, 10, 11, 12, 13, 99]);
    const b = new Builder().begin(FrameType.HAPROXY_DISCONNECT, 0, 0, 1);
    if (r.chance(0.9)) b.kv("status-code", DataType.UINT32, status);
    if (r.chance(0.8)) b.kv("message", DataType.STRING, r.chance(0.5) ? "normal" : anyText(r, 80));
    this.pieces.push(b.piece("disconnect"));
    this.notes.push(`haproxy-disconnect ${status}`);
  }

  /** A HAPROXY-DISCONNECT with a status of any integer type and value. */
  oddDisconnect(): void {
    const r = this.#r;
    const [type, status] = r.pick<[DataType, Value]>([
      [DataType.UINT32, 200],
      [DataType.UINT32, 4294967295],
      [DataType.INT32, -1],
      [DataType.INT64, -5],
      [DataType.UINT64, U64_MAX],
      [DataType.UINT64, 2n ** 32n],
      [DataType.STRING, "0"],
      [DataType.BOOL, true],
      [DataType.NULL, null],
    ]);
    const b = new Builder().begin(FrameType.HAPROXY_DISCONNECT, 0, 0, 1);
    b.kv("status-code", type, status).kv("message", DataType.STRING, "odd");
    this.pieces.push(b.piece("disconnect"));
    this.notes.push(`haproxy-disconnect type ${type} status ${status}`);
  }

  /** A frame of an agent's type, or a second HELLO: refused after the handshake. */
  wrongDirection(): void {
    const r = this.#r;
    const type = r.pick([
      FrameType.HAPROXY_HELLO,
      FrameType.AGENT_HELLO,
      FrameType.AGENT_DISCONNECT,
      FrameType.ACK,
    ]);
    this.pieces.push(
      new Builder().begin(type, 0, 0, 1).append(r.bytes(r.size(20))).piece("unknown"),
    );
  }
}

function norm(v: bigint): number | bigint {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Structure-aware mutation of one piece; returns a note. */
function mutatePiece(r: Rng, p: Piece, o: SessionConfig, negotiated: number): string {
  const fix = () => {
    if (r.chance(0.8)) fixLength(p);
  };
  const u = r.int(12);
  const n = p.bytes.length;
  switch (u) {
    case 0: {
      const at = r.int(n);
      const bit = r.int(8);
      p.bytes[at]! ^= 1 << bit;
      return `bitflip @${at}.${bit}`;
    }
    case 1: {
      const at = r.int(n);
      const v = r.chance(0.5)
        ? r.pick([0, 0xff, 0x7f, 0x80, 0xf0, 0xef, 10, 15, 0x1a])
        : r.int(256);
      p.bytes[at] = v;
      return `byte @${at}=${v}`;
    }
    case 2: {
      const types = p.marks.filter((m) => m.kind === "type");
      if (types.length === 0) return mutatePiece(r, p, o, negotiated);
      const m = r.pick(types);
      const v = r.chance(0.6) ? r.range(10, 15) | (r.int(16) << 4) : r.int(10) | (r.int(16) << 4);
      p.bytes[m.at] = v;
      return `data type @${m.at}=0x${v.toString(16)}`;
    }
    case 3:
    case 4: {
      const varints = p.marks.filter((m) => m.kind === "varint");
      if (varints.length === 0) return mutatePiece(r, p, o, negotiated);
      const m = r.pick(varints) as Extract<Mark, { kind: "varint" }>;
      const which = r.int(7);
      let repl: number[];
      switch (which) {
        case 0: // 11..14 bytes: longer than any varint
          repl = [0xff, ...Array.from({ length: r.range(10, 13) }, () => 0x80 | r.int(128)), 0x01];
          break;
        case 1:
          repl = encodeVarint(2n ** 64n);
          break;
        case 2:
          repl = encodeVarint(U64_MAX);
          break;
        case 3: // never ends: runs into what follows
          repl = Array.from({ length: r.range(1, 9) }, () => 0xf0 | r.int(16));
          break;
        case 4:
          repl = encodeVarint(r.u64() >> BigInt(r.int(64)));
          break;
        case 5:
          repl = encodeVarint(r.pick([0, 1, 0x7fffffff, 2 ** 32, 2 ** 53, 65536]));
          break;
        default:
          repl = encodeVarint(r.int(300));
      }
      splice(p, m.at, m.end, repl);
      fix();
      return `varint(${m.role}) @${m.at}=${toHex(new Uint8Array(repl))}`;
    }
    case 5: {
      const v = r.pick([
        0,
        1,
        6,
        7,
        n - 5,
        n - 3,
        n + r.int(100),
        0x7fffffff,
        0xffffffff,
        o.maxFrameSize,
        o.maxFrameSize + 1,
        negotiated,
        negotiated + 1,
        r.u32(),
      ]);
      setLength(p, v);
      return `LENGTH=${v >>> 0}`;
    }
    case 6: {
      const at = r.int(n);
      p.bytes = p.bytes.slice(0, at);
      p.marks = [];
      if (r.chance(0.5)) fixLength(p);
      return `truncate to ${at}`;
    }
    case 7: {
      const junk = r.bytes(r.range(1, 40));
      splice(p, n, n, junk);
      fix();
      return `extend +${junk.length}`;
    }
    case 8: {
      if (n < 9) return mutatePiece(r, p, o, negotiated);
      const v = r.pick([0, 2, 3, 0x80000001, 0xfffffffe, 0xffffffff, r.u32()]);
      new DataView(p.bytes.buffer, p.bytes.byteOffset).setUint32(5, v >>> 0);
      return `flags=0x${(v >>> 0).toString(16)}`;
    }
    case 9: {
      const ids = p.marks.filter((m) => m.kind === "varint" && m.role === "id");
      if (ids.length === 0) return mutatePiece(r, p, o, negotiated);
      const m = r.pick(ids) as Extract<Mark, { kind: "varint" }>;
      const repl = encodeVarint(r.pick([0n, 1n, r.u64(), U64_MAX, BigInt(r.int(1000))]));
      splice(p, m.at, m.end, repl);
      fix();
      return `id @${m.at}=${toHex(new Uint8Array(repl))}`;
    }
    case 10: {
      const nb = p.marks.filter((m) => m.kind === "nbargs");
      if (nb.length === 0) return mutatePiece(r, p, o, negotiated);
      const m = r.pick(nb);
      const v = r.chance(0.5) ? (p.bytes[m.at]! + r.pick([1, -1, 2])) & 0xff : r.int(256);
      p.bytes[m.at] = v;
      return `nb-args @${m.at}=${v}`;
    }
    default: {
      if (n < 5) return mutatePiece(r, p, o, negotiated);
      const v = r.pick([0, 1, 2, 3, 101, 102, 103, r.int(256)]);
      p.bytes[4] = v;
      return `frame type=${v}`;
    }
  }
}

/** Mutation of the list of pieces; returns a note. */
function mutateList(r: Rng, pieces: Piece[]): string {
  const n = pieces.length;
  const u = r.int(6);
  if (n === 0 || u === 0) {
    const junk: Piece = { bytes: r.bytes(r.range(1, 64)), kind: "junk", marks: [] };
    const at = r.int(n + 1);
    pieces.splice(at, 0, junk);
    return `insert ${junk.bytes.length} random bytes at piece ${at}`;
  }
  const i = r.int(n);
  const j = r.int(n);
  switch (u) {
    case 1:
      [pieces[i], pieces[j]] = [pieces[j]!, pieces[i]!];
      return `swap pieces ${i} and ${j}`;
    case 2: {
      const copy = { ...pieces[i]!, bytes: pieces[i]!.bytes.slice() };
      pieces.splice(j, 0, copy);
      return `duplicate piece ${i} at ${j}`;
    }
    case 3:
      pieces.splice(i, 1);
      return `drop piece ${i}`;
    case 4: {
      // A well-framed frame with a random body.
      const body = r.bytes(r.range(3, 60));
      const b = new Uint8Array(4 + body.length);
      b.set(body, 4);
      const p: Piece = { bytes: b, kind: "junk", marks: [] };
      fixLength(p);
      pieces.splice(j, 0, p);
      return `insert random frame (type ${body[0]}) at piece ${j}`;
    }
    default: {
      const moved = pieces.splice(i, 1)[0]!;
      pieces.push(moved);
      return `move piece ${i} to the end`;
    }
  }
}

/** Mutation of the whole byte stream; returns the new bytes and a note. */
function mutateStream(r: Rng, bytes: Uint8Array): [Uint8Array, string] {
  const n = bytes.length;
  const u = r.int(5);
  if (n === 0 || u === 0) {
    const junk = r.bytes(r.range(1, 100));
    const out = new Uint8Array(n + junk.length);
    out.set(bytes);
    out.set(junk, n);
    return [out, `append ${junk.length} junk bytes`];
  }
  switch (u) {
    case 1: {
      const out = bytes.slice();
      const k = r.range(1, 8);
      for (let i = 0; i < k; i++) out[r.int(n)]! ^= 1 << r.int(8);
      return [out, `flip ${k} bits`];
    }
    case 2: {
      const out = bytes.slice();
      const at = r.int(n);
      out[at] = r.int(256);
      return [out, `replace byte ${at}`];
    }
    case 3: {
      const at = r.int(n);
      return [bytes.slice(0, at), `cut stream at ${at}`];
    }
    default: {
      const at = r.int(n);
      const junk = r.bytes(r.range(1, 16));
      const out = new Uint8Array(n + junk.length);
      out.set(bytes.subarray(0, at));
      out.set(junk, at);
      out.set(bytes.subarray(at), at + junk.length);
      return [out, `insert ${junk.length} bytes at ${at}`];
    }
  }
}

/** Read sizes for a stream: whole, byte by byte, fixed, random, at frame edges. */
function genChunks(r: Rng, length: number, edges: number[]): number[] {
  if (length === 0) return [];
  const cuts = new Set<number>();
  const u = r.float();
  if (u < 0.15) {
    // whole
  } else if (u < 0.25) {
    const step = length <= 1500 ? 1 : r.range(1, 8);
    for (let at = step; at < length; at += step) cuts.add(at);
  } else if (u < 0.4) {
    const step = r.range(1, 40);
    for (let at = step; at < length; at += step) cuts.add(at);
  } else if (u < 0.6) {
    for (let at = r.range(1, 64); at < length; at += r.range(1, 64)) cuts.add(at);
  } else if (u < 0.72) {
    for (let k = r.range(1, 4); k > 0; k--) cuts.add(r.range(1, length - 1));
  } else if (u < 0.86) {
    for (const e of edges) cuts.add(e);
  } else {
    for (const e of edges) cuts.add(e + r.pick([-1, 1, -4, 4, 5, 9]));
  }
  const sorted = [...cuts].filter((c) => c > 0 && c < length).sort((a, b) => a - b);
  const chunks: number[] = [];
  let prev = 0;
  for (const c of sorted) {
    chunks.push(c - prev);
    prev = c;
  }
  chunks.push(length - prev);
  return chunks;
}

/**
 * Generates case `index` of the run with `seed`: a pure function of both.
 *
 * @param seed The run's seed.
 * @param index The case number.
 * @returns The case.
 */
export function generateCase(seed: number, index: number): FuzzCase {
  const cs = caseSeed(seed, index);
  const r = new Rng(cs);
  const options = genOptions(r);
  const ipSeed = r.u32();
  const logLevel = r.chance(0.1) ? Level.DEBUG : r.chance(0.5) ? Level.ERROR : Level.WARN;
  const notes: string[] = [];
  let level: number;
  let input: Uint8Array;
  let edges: number[] = [];
  let scores = new Map<string, number[]>();
  const u = r.float();
  if (u < 0.03) {
    level = 2;
    input = r.bytes(r.size(400));
    notes.push("random bytes");
  } else {
    const g = new StreamGen(r, options, ipSeed);
    g.hello();
    const valid = u < 0.4;
    level = valid ? 0 : r.chance(0.6) ? 1 : 2;
    if (!g.healthcheck || r.chance(0.3)) {
      const events = r.chance(0.06) ? r.range(15, 50) : r.range(0, 10);
      for (let i = 0; i < events; i++) {
        const v = r.float();
        if (v < 0.75) g.notify();
        else if (v < 0.83) g.unknown();
        else if (v < 0.9 && g.pieces.length > 1) {
          // HAProxy repeating a NOTIFY (or an unknown frame) verbatim.
          const p = r.pick(g.pieces.slice(1));
          if (p.kind === "notify" || p.kind === "unknown") {
            g.pieces.push({ ...p, bytes: p.bytes.slice() });
          }
        } else if (v < 0.93 && g.fragmentation) g.strayAbort();
        else if (v < 0.95 && !valid) g.wrongDirection();
        else if (v < 0.97 && !valid) g.oversize();
        else g.notify();
      }
      if (r.chance(0.15)) {
        if (!valid && r.chance(0.4)) g.oddDisconnect();
        else g.disconnect();
        if (r.chance(0.5)) g.notify();
      }
    }
    notes.push(...g.notes);
    const pieces = g.pieces;
    if (level > 0) {
      const count = level === 1 ? r.range(1, 2) : r.range(3, 10);
      for (let i = 0; i < count; i++) {
        const v = r.float();
        if (v < 0.55 && pieces.length > 0) {
          const at = r.int(pieces.length);
          notes.push(
            `piece ${at} (${pieces[at]!.kind}): ${
              mutatePiece(r, pieces[at]!, options, g.negotiated)
            }`,
          );
        } else if (v < 0.8) notes.push(mutateList(r, pieces));
        else notes.push("deferred stream mutation");
      }
    } else scores = g.scores;
    let at = 0;
    for (const p of pieces) edges.push(at += p.bytes.length);
    input = new Uint8Array(at);
    at = 0;
    for (const p of pieces) {
      input.set(p.bytes, at);
      at += p.bytes.length;
    }
    for (let i = 0; i < notes.length; i++) {
      if (notes[i] !== "deferred stream mutation") continue;
      const [bytes, note] = mutateStream(r, input);
      input = bytes;
      notes[i] = note;
      edges = edges.filter((e) => e < input.length);
    }
  }
  const chunks = genChunks(r, input.length, edges);
  return {
    seed,
    index,
    caseSeed: cs,
    options,
    input,
    chunks,
    level,
    notes,
    ipSeed,
    logLevel,
    scores,
  };
}

// ---------------------------------------------------------------------------
// The oracle: framing and a frame-level model of the session

/** One frame of the input as the oracle frames it (LENGTH-based, like any reader). */
interface OFrame {
  start: number;
  /** LENGTH. */
  length: number;
  /** start + 4 + LENGTH (may lie beyond the input). */
  end: number;
  /** "ok", LENGTH below 7, ids that run past the frame, or cut by the end of input. */
  status: "ok" | "short" | "ids" | "partial";
  type: number;
  flags: number;
  streamId: number | bigint;
  frameId: number | bigint;
  payloadStart: number;
}

/** Frames the input, stopping at the first frame that cannot be framed. */
export function oracleFrames(bytes: Uint8Array): OFrame[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: OFrame[] = [];
  let pos = 0;
  while (pos + 4 <= bytes.length) {
    const length = view.getUint32(pos);
    const end = pos + 4 + length;
    const f: OFrame = {
      start: pos,
      length,
      end,
      status: "ok",
      type: -1,
      flags: 0,
      streamId: 0,
      frameId: 0,
      payloadStart: end,
    };
    out.push(f);
    if (length < 7) {
      f.status = "short";
      break;
    }
    if (end > bytes.length) {
      f.status = "partial";
      break;
    }
    f.type = bytes[pos + 4]!;
    f.flags = view.getUint32(pos + 5);
    const s = decodeVarint(bytes, pos + 9, end);
    const fr = typeof s === "string" ? s : decodeVarint(bytes, s.next, end);
    if (typeof s === "string" || typeof fr === "string") {
      f.status = "ids";
      break;
    }
    f.streamId = s.value;
    f.frameId = fr.value;
    f.payloadStart = fr.next;
    pos = end;
  }
  return out;
}

/** Something the driver did that changes what the session reads. */
interface StopEvent {
  /** "clock": time passed helloTimeout; "frame-timeout": `expire()` closed the connection. */
  kind: "shutdown" | "peer-close" | "abort" | "clock" | "frame-timeout" | "cut-off";
  /** Input bytes delivered when it happened. */
  fed: number;
  /** Whether the connection was already closed by the session then. */
  ended: boolean;
}

/** How the model says the session must end. */
type EndReason =
  | { kind: "error"; status: number; at: number; what: string }
  | { kind: "peer"; status: number; at: number }
  | { kind: "healthcheck"; at: number }
  | { kind: "drain"; by: "shutdown" | "close-after"; fed: number }
  | { kind: "timeout"; fed: number }
  | { kind: "frame-timeout"; fed: number }
  | { kind: "peer-close" | "abort" | "cut-off"; fed: number };

/** What the session must have read and done, frame by frame. */
export interface Model {
  end: EndReason;
  /** The draining session was closed by the peer or aborted before it finished. */
  interrupted: boolean;
  helloDone: boolean;
  negotiated: number;
  capabilities: string[];
  /** Keys of the NOTIFYs the session completed (each must get one ACK), in order. */
  completes: string[];
  /** `expire()` closed the connection although no frame was buffered in part. */
  expiredWhole: boolean;
}

const FRAME_LIMIT = 0x7fffffff;

/** Runs the frame-level model over the input with the driver's stop events. */
export function model(c: FuzzCase, frames: readonly OFrame[], stops: readonly StopEvent[]): Model {
  const o = c.options;
  const input = c.input;
  const view = new DataView(input.buffer, input.byteOffset, input.byteLength);
  const m: Model = {
    end: { kind: "drain", by: "shutdown", fed: input.length },
    interrupted: false,
    helloDone: false,
    negotiated: 0,
    capabilities: [],
    completes: [],
    expiredWhole: false,
  };
  let limit = o.maxFrameSize;
  let fragmentation = false;
  let open: string | undefined;
  let openSize = 0;
  let i = 0;
  /** Input bytes of the frames read so far. */
  let consumed = 0;
  let ended: EndReason | undefined;

  const complete = (key: string, at: number): void => {
    m.completes.push(key);
    if (o.closeAfterFrames > 0 && m.completes.length >= o.closeAfterFrames) {
      ended = { kind: "drain", by: "close-after", fed: at };
    }
  };
  const error = (status: number, at: number, what: string): void => {
    ended = { kind: "error", status, at, what };
  };

  /** Processes every frame available once `fed` bytes are in. */
  const advance = (fed: number): void => {
    while (ended === undefined && i < frames.length) {
      const f = frames[i]!;
      if (f.start + 4 > fed) return;
      if (f.length > limit) {
        return error(Status.FRAME_TOO_BIG, f.start + 4, `LENGTH ${f.length} > ${limit}`);
      }
      if (f.status === "short") {
        return error(Status.INVALID_FRAME, f.start + 4, `LENGTH ${f.length} < 7`);
      }
      if (f.status === "partial" || f.end > fed) return;
      i++;
      consumed = f.end;
      if (f.status === "ids") return error(Status.INVALID_FRAME, f.end, "ids run past the frame");
      if (!m.helloDone) {
        hello(f);
        continue;
      }
      frame(f);
    }
  };

  const hello = (f: OFrame): void => {
    if (f.type !== FrameType.HAPROXY_HELLO) {
      return error(Status.INVALID_FRAME, f.end, `first frame type ${f.type}`);
    }
    const frame = new Frame();
    readFrame(input, view, f.start, f.end, FRAME_LIMIT, frame);
    try {
      const h = decodeHaproxyHello(frame);
      if (pickVersion(h.supportedVersions) === undefined) {
        return error(Status.BAD_VERSION, f.end, `versions "${h.supportedVersions}"`);
      }
      m.negotiated = negotiateMaxFrameSize(h.maxFrameSize, o.maxFrameSize);
      if (o.pipelining && hasCapability(h.capabilities, "pipelining")) {
        m.capabilities.push("pipelining");
      }
      if (o.async && hasCapability(h.capabilities, "async")) m.capabilities.push("async");
      fragmentation = o.fragmentation && !h.healthcheck;
      if (fragmentation) m.capabilities.push("fragmentation");
      m.helloDone = true;
      limit = m.negotiated;
      if (h.healthcheck) ended = { kind: "healthcheck", at: f.end };
    } catch (err) {
      if (!(err instanceof SpopError)) throw err;
      error(err.status, f.end, `HELLO: ${err.message}`);
    }
  };

  const frame = (f: OFrame): void => {
    const key = idKey(f.streamId, f.frameId);
    const fin = (f.flags & 1) !== 0;
    const abort = (f.flags & 2) !== 0;
    const size = f.end - f.payloadStart;
    switch (f.type) {
      case FrameType.NOTIFY:
      case FrameType.UNSET: {
        if (f.type === FrameType.NOTIFY && fin && open === undefined) return complete(key, f.end);
        if (!fragmentation) {
          return error(Status.FRAGMENTATION_NOT_SUPPORTED, f.end, "fragment without fragmentation");
        }
        if (f.type === FrameType.NOTIFY) {
          if (open !== undefined) {
            return error(Status.INTERLACED_FRAMES, f.end, "NOTIFY while reassembling");
          }
          open = key;
          openSize = 0;
        } else if (open === undefined) {
          if (abort) return;
          return error(Status.INVALID_FRAME, f.end, "UNSET with nothing open");
        } else if (open !== key) {
          return error(Status.INTERLACED_FRAMES, f.end, "UNSET of another frame");
        }
        if (abort) {
          open = undefined;
          return;
        }
        openSize += size;
        if (openSize > o.maxReassembledSize) {
          return error(
            Status.FRAME_TOO_BIG,
            f.end,
            `reassembled ${openSize} > ${o.maxReassembledSize}`,
          );
        }
        if (fin) {
          const done = open;
          open = undefined;
          complete(done, f.end);
        }
        return;
      }
      case FrameType.HAPROXY_DISCONNECT: {
        const frame = new Frame();
        readFrame(input, view, f.start, f.end, FRAME_LIMIT, frame);
        let status: number;
        try {
          status = decodeDisconnect(frame).status;
        } catch (err) {
          if (!(err instanceof SpopError)) throw err;
          return error(err.status, f.end, `HAPROXY-DISCONNECT: ${err.message}`);
        }
        // Echoed; a value no status can have is answered as 99 (unknown).
        const valid = Number.isInteger(status) && status >= 0 && status <= 0xffffffff;
        ended = { kind: "peer", status: valid ? status : Status.UNKNOWN, at: f.end };
        return;
      }
      case FrameType.HAPROXY_HELLO:
      case FrameType.AGENT_HELLO:
      case FrameType.AGENT_DISCONNECT:
      case FrameType.ACK:
        return error(Status.INVALID_FRAME, f.end, `frame type ${f.type} after the handshake`);
      default:
        return;
    }
  };

  for (const s of stops) {
    advance(s.fed);
    if (ended !== undefined) {
      // A peer close or abort while draining drops the ACKs still to come.
      const closes = s.kind === "peer-close" || s.kind === "abort" || s.kind === "cut-off";
      if (ended.kind === "drain" && !s.ended && closes) {
        m.interrupted = true;
      }
      continue;
    }
    if (s.kind === "clock") {
      if (!m.helloDone) ended = { kind: "timeout", fed: s.fed };
    } else if (s.kind === "frame-timeout") {
      ended = { kind: "frame-timeout", fed: s.fed };
      // The bytes after the last frame read are a frame in part.
      if (consumed >= s.fed) m.expiredWhole = true;
    } else if (s.kind === "shutdown") ended = { kind: "drain", by: "shutdown", fed: s.fed };
    else ended = { kind: s.kind, fed: s.fed };
  }
  advance(input.length);
  if (ended !== undefined) m.end = ended;
  return m;
}

// ---------------------------------------------------------------------------
// The agent: IP reputation plus handlers that misbehave on purpose

/** A violation of an invariant. */
export interface Violation {
  /** A short, stable name of the invariant. */
  code: string;
  detail: string;
}

/** Shared state of one run: the driver's randomness, pending promises, findings. */
class Control {
  readonly r: Rng;
  readonly plain: boolean;
  readonly deferreds: Deferred<void>[] = [];
  readonly violations: Violation[] = [];
  readonly stops: StopEvent[] = [];
  readonly known: string[] = [];
  fed = 0;
  handlerCalls = 0;
  session!: Session;
  conn!: FuzzConn;
  trace: ((line: string) => void) | undefined;

  constructor(r: Rng, plain: boolean) {
    this.r = r;
    this.plain = plain;
  }

  knownIssue(name: string): void {
    if (!this.known.includes(name)) this.known.push(name);
  }

  fail(code: string, detail: string): void {
    if (this.violations.length < 20) this.violations.push({ code, detail });
  }

  /** Calls into the session; an exception that escapes is a violation. */
  call(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.fail(
        "escape",
        `${what} threw: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
      );
    }
  }

  stop(kind: StopEvent["kind"]): void {
    this.trace?.(`driver: ${kind} at fed ${this.fed}`);
    this.stops.push({ kind, fed: this.fed, ended: this.conn.ended || this.conn.peerClosed });
    if (kind === "shutdown") {
      this.call("shutdown()", () => void this.session.shutdown());
    } else if (kind === "abort") this.call("abort()", () => this.session.abort());
    else if (kind === "peer-close") {
      this.conn.writesAtPeerClose ??= this.conn.writes.length;
      this.conn.peerClosed = true;
      this.call("onClose()", () => this.conn.deliverClose());
    }
  }

  /** Settles some (or all) pending handler promises, resolving or rejecting. */
  settleSome(all: boolean): void {
    const list = this.deferreds;
    for (let i = list.length - 1; i >= 0; i--) {
      if (!all && this.r.chance(0.5)) continue;
      const d = list[i]!;
      list.splice(i, 1);
      if (this.r.chance(0.75)) d.resolve();
      else d.reject(this.r.chance(0.5) ? new Error("deferred failure") : "rejected with a string");
    }
  }
}

/** A stable description of a message: name and every argument. */
function snapshot(message: Message): string {
  const parts: string[] = [message.name, String(message.size)];
  for (let i = 0; i < message.size; i++) {
    const a = message.arg(i)!;
    const v = a.value();
    parts.push(
      `${a.name}:${a.type}:${
        v instanceof Uint8Array ? toHex(v) : typeof v === "bigint" ? `${v}n` : String(v)
      }:${a.text()}`,
    );
  }
  return parts.join("|");
}

/** Every read-only getter of the handler API, which must never throw. */
function readAll(message: Message): void {
  for (let i = -1; i <= message.size; i++) {
    message.ip(i);
    message.int(i);
    message.bigint(i);
    message.string(i);
    message.binary(i);
    message.boolean(i);
    message.isNull(i);
    message.arg(i)?.bytes();
  }
  for (const name of ["", "ip", "a"]) {
    message.arg(name);
    message.ip(name);
  }
}

const SCOPES = ["proc", "sess", "txn", "req", "res"] as const;

/** Adds actions a handler might add (never sess.ip_score, which is checked). */
function addVars(r: Rng, reply: Reply, count: number, big: boolean): void {
  for (let i = 0; i < count; i++) {
    const scope = r.pick(SCOPES);
    const name = big ? `v${r.int(1000)}_${"n".repeat(r.range(20, 40))}` : `v${r.int(1000)}`;
    const u = r.int(6);
    if (u === 0) reply.unsetVar(scope, name);
    else if (u === 1) reply.setVar(scope, name, r.int(1000));
    else if (u === 2) reply.setVar(scope, name, big ? "x".repeat(r.range(50, 100)) : "x");
    else if (u === 3) reply.setVar(scope, name, r.chance(0.5));
    else if (u === 4) reply.setVar(scope, name, null);
    else reply.setVar(scope, name, new Uint8Array([1, 2, 3]), DataType.BINARY);
  }
}

/** What a late use of a handle throws. */
const LATE_USE = /its NOTIFY was already acknowledged/;

/**
 * The body of every fuzz handler. `plain` is true for the plain-function
 * handlers, whose message and reply are sealed when they return: their
 * promise-returning branches are refused by the session, and every use of
 * the handles after an `await` must throw. An `async` handler's handles stay
 * valid until its NOTIFY is acknowledged (or its deadline passed), and must
 * read the same message throughout.
 */
function fuzzBody(
  ctl: Control,
  message: Message,
  reply: Reply,
  plain: boolean,
): void | PromiseLike<void> {
  {
    ctl.handlerCalls++;
    const r = ctl.r;
    const u = ctl.plain ? 1 : r.float();
    const waits = u >= 0.45 && u < 0.7;
    let before = "";
    if (waits || ctl.plain || r.chance(0.25)) {
      try {
        readAll(message);
        before = snapshot(message);
      } catch (err) {
        ctl.fail("message-api", `a getter of Message threw: ${String(err)}`);
      }
    }
    if (ctl.plain) return;
    if (u < 0.3) return void addVars(r, reply, r.int(4), false);
    if (u < 0.35) return void addVars(r, reply, r.range(20, 200), true);
    if (u < 0.45) {
      if (r.chance(0.7)) throw new Error("handler failure");
      throw r.chance(0.5) ? "thrown string" : undefined;
    }
    if (u < 0.7) {
      const d = deferred();
      ctl.deferreds.push(d);
      return (async () => {
        await d.promise;
        let sealed = false;
        try {
          const after = snapshot(message);
          if (after !== before) {
            ctl.fail(
              "message-detach",
              `message changed while its handler waited:\n  before ${before}\n  after  ${after}`,
            );
          }
        } catch (err) {
          sealed = err instanceof Error && LATE_USE.test(err.message);
          if (!sealed) ctl.fail("message-api", `Message read after await threw: ${String(err)}`);
        }
        if (plain && !sealed) {
          ctl.fail("lifetime", "a plain handler's message was readable after it returned");
        }
        const count = r.int(3);
        try {
          addVars(r, reply, count, false);
          if (sealed && count > 0) ctl.fail("lifetime", "a sealed reply took an action");
        } catch (err) {
          if (!(err instanceof Error && LATE_USE.test(err.message))) throw err;
          if (!sealed) ctl.fail("lifetime", "a reply was sealed while its message was not");
        }
        if (r.chance(0.1)) throw new Error("late failure");
      })();
    }
    if (u < 0.78) return r.chance(0.7) ? Promise.resolve() : Promise.reject(new Error("rejected"));
    if (u < 0.83) {
      const w = r.int(3);
      const thenable = {
        then(res: () => void, rej: (e: unknown) => void): void {
          if (w === 0) {
            res();
            res();
            rej(new Error("after resolve"));
          } else if (w === 1) throw new Error("then() threw");
          else queueMicrotask(res);
        },
      };
      return thenable as unknown as PromiseLike<void>;
    }
    if (u < 0.86) return r.pick([null, 42, { then: 5 }, "str"]) as unknown as void;
    if (u < 0.89) {
      reply.setVar("txn", "bad name!", 1); // throws TypeError
      return;
    }
    if (u < 0.9) return void queueMicrotask(() => ctl.stop("shutdown"));
    if (u < 0.903) return void queueMicrotask(() => ctl.stop("abort"));
  }
}

function plainHandler(ctl: Control): (message: Message, reply: Reply) => void | PromiseLike<void> {
  return (message, reply) => fuzzBody(ctl, message, reply, true);
}

function asyncHandler(ctl: Control): (message: Message, reply: Reply) => Promise<void> {
  return async (message, reply) => await fuzzBody(ctl, message, reply, false);
}

function buildAgent(c: FuzzCase, ctl: Control): Agent {
  const agent = ipReputation({ seed: c.ipSeed });
  agent.on(HANDLED[0], plainHandler(ctl));
  agent.on(HANDLED[1], plainHandler(ctl));
  agent.on(HANDLED[2], asyncHandler(ctl));
  return agent;
}

// ---------------------------------------------------------------------------
// The connection and the driver

/**
 * A {@linkcode Conn} that records like the harness's `FakeConn`, with a read
 * buffer sized to the case and scribbled only where the read was (the
 * harness's allocates and fills 64 KiB, which dominates a fuzz case).
 */
class FuzzConn implements Conn {
  readonly remote = "192.0.2.7:40000";
  queued = 0;
  readonly writes: Uint8Array[] = [];
  readonly events: string[] = [];
  writesAfterClose = 0;
  handler: ConnHandler | undefined;
  ended = false;
  peerClosed = false;
  writesAtPeerClose: number | undefined;
  /**
   * Whether `onClose()` waits for the driver ({@linkcode deliverPendingClose})
   * instead of the next microtask: a real socket reports its close later.
   */
  readonly lateClose: boolean;
  readonly #buf: Uint8Array;
  #closeDelivered = false;
  #closePending = false;

  /** The session's `maxQueuedBytes`, to mirror when it sees its output as full. */
  readonly maxQueuedBytes: number;
  /** Whether the session saw `queued` above its limit since the last `onDrain()`. */
  outputFull = false;

  constructor(size: number, lateClose: boolean, maxQueuedBytes: number) {
    this.#buf = new Uint8Array(size);
    this.lateClose = lateClose;
    this.maxQueuedBytes = maxQueuedBytes;
  }

  /** Reports a close the session asked for, if not reported yet. */
  deliverPendingClose(): void {
    if (!this.#closePending) return;
    this.#closePending = false;
    this.deliverClose();
  }

  write(bytes: Uint8Array, length: number): void {
    if (this.ended) this.writesAfterClose++;
    if (this.queued > this.maxQueuedBytes) this.outputFull = true;
    this.writes.push(bytes.slice(0, length));
    this.events.push("write");
  }

  pause(): void {
    this.events.push("pause");
  }

  resume(): void {
    this.events.push("resume");
  }

  close(): void {
    this.events.push("close");
    this.#end();
  }

  destroy(): void {
    this.events.push("destroy");
    this.#end();
  }

  count(event: string): number {
    let n = 0;
    for (const e of this.events) if (e === event) n++;
    return n;
  }

  /** Reports the end of the connection to the handler, once (as adapters do). */
  deliverClose(): void {
    if (this.#closeDelivered) return;
    this.#closeDelivered = true;
    this.handler?.onClose();
  }

  /** Delivers one read through the reused buffer, then scribbles over it. */
  feed(bytes: Uint8Array): void {
    this.#buf.set(bytes);
    this.handler!.onData(this.#buf, bytes.length);
    this.#buf.fill(0xee, 0, bytes.length);
  }

  /** Everything written, concatenated. */
  output(): Uint8Array {
    return concat(...this.writes);
  }

  /** Whether reading is paused (the last of pause/resume was pause). */
  get paused(): boolean {
    for (let i = this.events.length - 1; i >= 0; i--) {
      const e = this.events[i];
      if (e === "pause") return true;
      if (e === "resume") return false;
    }
    return false;
  }

  #end(): void {
    this.ended = true;
    if (this.lateClose) this.#closePending = true;
    else queueMicrotask(() => this.deliverClose());
  }
}

/** What a run observed, for the checks. */
interface Observed {
  /** Input bytes delivered when the session first closed the connection. */
  endedFed: number | undefined;
  /** Read boundaries (cumulative). */
  chunkEnds: number[];
  closedResolved: boolean;
  lines: string[];
}

/** The run in progress, which an exception thrown by a microtask belongs to. */
let running: Control | undefined;
let microtasksWrapped = false;

/**
 * Wraps `queueMicrotask` once so that an exception thrown by a callback the
 * session queued (its deferred flush) is a violation of the case that runs,
 * not an uncaught error that ends the process (as it would in a server).
 */
function wrapMicrotasks(): void {
  if (microtasksWrapped) return;
  microtasksWrapped = true;
  const original = globalThis.queueMicrotask.bind(globalThis);
  globalThis.queueMicrotask = (fn: () => void) =>
    original(() => {
      try {
        fn();
      } catch (err) {
        if (running === undefined) throw err;
        running.fail(
          "uncaught",
          `a queueMicrotask callback threw (this ends a Deno process): ${
            err instanceof Error ? (err.stack ?? err.message) : String(err)
          }`,
        );
      }
    });
}

/** Lets microtasks run. */
async function ticks(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await Promise.resolve();
}

const EPOCH = new Date(0);

/**
 * Runs a case. `plain` replays only the reads (a microtask turn after each,
 * handlers that return at once, no timers, backpressure or early stops),
 * which is what a regression test can do with the bytes alone.
 */
export async function execute(
  c: FuzzCase,
  plain = false,
  trace?: (line: string) => void,
): Promise<Outcome> {
  wrapMicrotasks();
  const r = new Rng(c.caseSeed ^ 0x5bd1e995);
  const ctl = new Control(r, plain);
  running = ctl;
  const maxChunk = c.chunks.reduce((a, b) => Math.max(a, b), 0);
  const conn = new FuzzConn(
    maxChunk + (plain ? 0 : r.int(17)),
    !plain && r.chance(0.5),
    c.options.maxQueuedBytes,
  );
  const timers = new FakeTimers();
  const lines: string[] = [];
  const log = createLogger({
    level: c.logLevel,
    sink: (line) => {
      lines.push(line);
      trace?.(line);
    },
    now: () => EPOCH,
  });
  const agent = buildAgent(c, ctl);
  const session = new Session(conn, agent, { ...c.options }, log, timers);
  conn.handler = session;
  ctl.session = session;
  ctl.conn = conn;
  ctl.trace = trace;
  const obs: Observed = { endedFed: undefined, chunkEnds: [], closedResolved: false, lines };
  session.closed.then(() => obs.closedResolved = true);
  const o = c.options;

  const noteEnded = () => {
    if (obs.endedFed === undefined && (conn.ended || conn.peerClosed)) obs.endedFed = ctl.fed;
  };
  let clockPassed = false;
  const advance = (ms: number) => {
    ctl.call("a timer", () => timers.advance(ms));
    if (!clockPassed && timers.now >= o.helloTimeout) {
      clockPassed = true;
      ctl.stops.push({ kind: "clock", fed: ctl.fed, ended: conn.ended || conn.peerClosed });
    }
    noteEnded();
  };
  const drainOutput = () => {
    conn.queued = 0;
    conn.outputFull = false;
    ctl.call("onDrain()", () => session.onDrain());
  };
  /** Lets everything pending finish: handlers, timers, flushes, output. */
  const quiesce = async (clock: boolean) => {
    for (let round = 0; round < 8; round++) {
      await ticks(12);
      ctl.settleSome(true);
      await ticks(12);
      if (clock) advance(Math.max(o.replyDelay, o.helloTimeout) + 1);
      else if (o.replyDelay > 0) advance(o.replyDelay);
      drainOutput();
      noteEnded();
      if (round > 0) ctl.call("onClose()", () => conn.deliverPendingClose());
      if (ctl.deferreds.length === 0 && timers.pending === 0 && round > 0) break;
    }
    await ticks(12);
  };

  // One-off events at planned reads.
  const n = c.chunks.length;
  const at = (p: number) => (!plain && r.chance(p) ? r.int(n + 1) : -1);
  const shutdownAt = at(0.08);
  const peerCloseAt = at(0.03);
  const abortAt = at(0.02);
  const clockEvery = !plain && r.chance(0.3);

  let fed = 0;
  for (let i = 0; i < n; i++) {
    if (i === shutdownAt) ctl.stop("shutdown");
    if (i === peerCloseAt) ctl.stop("peer-close");
    if (i === abortAt) ctl.stop("abort");
    noteEnded();
    if (conn.ended || conn.peerClosed) {
      // An adapter may still hand over a read it had; the session must ignore it.
      if (plain || !r.chance(0.05)) break;
    } else if (conn.paused && (plain || !r.chance(0.05))) {
      // A paused adapter delivers nothing: let the session make progress.
      for (let k = 0; k < 4 && conn.paused && !conn.ended && !conn.peerClosed; k++) {
        await quiesce(false);
      }
      noteEnded();
      if (conn.paused && !conn.ended && !conn.peerClosed) {
        ctl.fail(
          "stuck-paused",
          `reading stays paused after every handler settled (in flight ${session.inFlight}, queued ${conn.queued})`,
        );
        break;
      }
      if (conn.ended || conn.peerClosed) break;
    }
    const size = c.chunks[i]!;
    const chunk = c.input.subarray(fed, fed + size);
    ctl.call(`onData() of read ${i}`, () => conn.feed(chunk));
    fed += size;
    ctl.fed = fed;
    obs.chunkEnds.push(fed);
    noteEnded();
    if (plain) {
      await ticks(3);
      continue;
    }
    const u = r.float();
    if (u < 0.5) await ticks(r.pick([1, 2, 3, 6]));
    if (r.chance(0.15)) ctl.settleSome(false);
    if (clockEvery && r.chance(0.3)) advance(r.pick([1, 5, 20, 100, 1000, 6000]));
    if (clockEvery && r.chance(0.3)) {
      // What the server does about once a second.
      const before = conn.ended || conn.peerClosed;
      const destroys = conn.count("destroy");
      const full = conn.outputFull;
      ctl.call("expire()", () => session.expire(timers.now));
      if (conn.count("destroy") > destroys) {
        // A peer that stopped reading our output is cut off (without DISCONNECT).
        ctl.stops.push({ kind: "cut-off", fed, ended: before });
        if (!full) ctl.fail("cut-off", "expire() cut off a peer that had read all our output");
      } else if (!before && conn.ended) {
        ctl.stops.push({ kind: "frame-timeout", fed, ended: false });
      }
    }
    if (r.chance(0.15)) conn.queued = r.int(2 * o.maxQueuedBytes + 2);
    if (r.chance(0.12)) drainOutput();
    if (r.chance(0.01)) {
      conn.outputFull = false;
      ctl.call("onDrain()", () => session.onDrain());
    }
    if (r.chance(0.2)) ctl.call("onClose()", () => conn.deliverPendingClose());
    noteEnded();
  }
  if (shutdownAt === n) ctl.stop("shutdown");
  if (peerCloseAt === n) ctl.stop("peer-close");
  if (abortAt === n) ctl.stop("abort");

  // Let everything settle, then stop the session as a server shutdown would.
  await quiesce(true);
  ctl.stop("shutdown");
  await quiesce(true);
  ctl.call("shutdown() again", () => void session.shutdown());
  ctl.call("onClose()", () => conn.deliverPendingClose());
  await ticks(6);
  noteEnded();
  running = undefined;
  return checkOutcome(c, ctl, obs, timers, plain);
}

// ---------------------------------------------------------------------------
// The checks

/** The result of a case. */
export interface Outcome {
  case: FuzzCase;
  violations: Violation[];
  /** Known lib bugs this case hit (not counted as failures); see KNOWN_ISSUES. */
  known: string[];
  /** How the model says the session ended. */
  end: EndReason["kind"];
  /** Frames the agent wrote. */
  frames: number;
  acks: number;
  /** Status of the agent's DISCONNECT, if any. */
  status: number | undefined;
  handlerCalls: number;
  plain: boolean;
}

/** Status codes of §8. */
const VALID_STATUS = new Set([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 99]);

/** The first read boundary at or after `offset`. */
function chunkEndCovering(chunkEnds: readonly number[], offset: number): number {
  for (const e of chunkEnds) if (e >= offset) return e;
  return Infinity;
}

/**
 * Checks every invariant of a finished run:
 *
 * - no exception escaped `onData`/`onClose`/`onDrain`/`shutdown`/`abort` or a
 *   timer, and no "internal error" was logged;
 * - each `write()` holds whole frames; every frame has flags exactly FIN,
 *   a type of 101–103, ids 0/0 on HELLO and DISCONNECT, a LENGTH within the
 *   negotiated max-frame-size, and decodes;
 * - AGENT-HELLO comes first and only when the model says the HELLO was read,
 *   with version 2.0, min(HAProxy's, ours) and exactly the capabilities both
 *   sides use; no ACK on a health check; no ACK without HELLO;
 * - every ACK answers a NOTIFY of the input, never more often than that
 *   NOTIFY was sent; ACKs are padded unless `emptyAcks`, and never padded
 *   with `emptyAcks`; level 0: each ACK carries the IP scores of its NOTIFY;
 * - at most one AGENT-DISCONNECT, last, with a §8 code (or HAProxy's echoed),
 *   a short ASCII message, then `close()`; nothing written after `close()`,
 *   `destroy()` or a peer close; `destroy()` only through `abort()`;
 * - the model's verdict: a frame-level error closes the connection in the
 *   very read that completes its bytes (an oversized LENGTH from its prefix
 *   alone, so nothing past max-frame-size+4 is ever buffered), with its
 *   status; HAPROXY-DISCONNECT is echoed; a health check gets HELLO and a
 *   close; a hello timeout gets status 2; a graceful end (shutdown or
 *   closeAfterFrames, status 0) acknowledged exactly the NOTIFYs the session
 *   read, each once;
 * - at the end: the connection is closed, `closed` resolved, no timer
 *   pending, nothing in flight, pause/resume alternate, reading not stuck.
 */
function checkOutcome(
  c: FuzzCase,
  ctl: Control,
  obs: Observed,
  timers: FakeTimers,
  plain: boolean,
): Outcome {
  const conn = ctl.conn;
  const session = ctl.session;
  const o = c.options;
  const fail = (code: string, detail: string) => ctl.fail(code, detail);
  let m: Model;
  try {
    m = model(c, oracleFrames(c.input), ctl.stops);
  } catch (err) {
    fail("model", `the model failed (lib and oracle disagree?): ${String(err)}`);
    m = {
      end: { kind: "peer-close", fed: 0 },
      interrupted: true,
      helloDone: false,
      negotiated: 0,
      capabilities: [],
      completes: [],
      expiredWhole: false,
    };
  }

  for (const line of obs.lines) {
    if (line.includes("internal error")) fail("internal-error", line);
  }

  // Each write holds whole frames with exact flags and zero ids where due.
  for (const [i, w] of conn.writes.entries()) {
    const frames = oracleFrames(w);
    const last = frames.at(-1);
    if (w.length === 0) fail("write", `write ${i} is empty`);
    else if (last === undefined || last.status !== "ok" || last.end !== w.length) {
      fail("write", `write ${i} does not hold whole frames: ${toHex(w.subarray(0, 64))}`);
    }
    for (const f of frames) {
      if (f.status !== "ok") continue;
      if (f.flags !== 1) {
        fail("flags", `frame at ${f.start} of write ${i}: flags 0x${f.flags.toString(16)}`);
      }
      if (f.type !== 101 && f.type !== 102 && f.type !== 103) {
        fail("type", `agent wrote frame type ${f.type}`);
      }
      if (f.type !== 103 && (f.streamId !== 0 || f.frameId !== 0)) {
        fail("ids", `HELLO/DISCONNECT with ids ${f.streamId}/${f.frameId}`);
      }
      const max = Math.max(m.negotiated, 256);
      if (f.length > max) {
        fail("frame-size", `frame of type ${f.type} with LENGTH ${f.length} > ${max}`);
      }
    }
  }
  let frames: AgentFrame[] = [];
  try {
    frames = decodeAgentFrames(conn.output());
  } catch (err) {
    fail("decode", `the agent's output does not decode: ${String(err)}`);
  }

  // Order: HELLO first (once), ACKs, DISCONNECT last (once).
  const helloAt = frames.findIndex((f) => f.type === FrameType.AGENT_HELLO);
  const disconnects = frames.filter((f) => f.type === FrameType.AGENT_DISCONNECT);
  const acks = frames.filter((f) => f.type === FrameType.ACK);
  if (frames.filter((f) => f.type === FrameType.AGENT_HELLO).length > 1) {
    fail("hello", "two AGENT-HELLOs");
  }
  if (helloAt > 0) fail("hello", `AGENT-HELLO is frame ${helloAt}`);
  if (acks.length > 0 && helloAt !== 0) fail("hello", "ACK without AGENT-HELLO first");
  if (disconnects.length > 1) fail("disconnect", `${disconnects.length} AGENT-DISCONNECTs`);
  if (disconnects.length > 0 && frames.at(-1)!.type !== FrameType.AGENT_DISCONNECT) {
    fail("disconnect", "AGENT-DISCONNECT is not the last frame");
  }
  const disconnect = disconnects[0]?.disconnect;
  const status = disconnect?.status;

  // The HELLO answer.
  const hello = frames[helloAt]?.hello;
  if (hello !== undefined) {
    if (!m.helloDone) fail("hello", "AGENT-HELLO although the model read no valid HAPROXY-HELLO");
    if (hello.version !== "2.0") fail("hello", `version "${hello.version}"`);
    if (m.helloDone && hello.maxFrameSize !== m.negotiated) {
      fail("hello", `max-frame-size ${hello.maxFrameSize}, expected ${m.negotiated}`);
    }
    const caps = hello.capabilities === "" ? [] : hello.capabilities.split(",");
    if (m.helloDone && caps.join(",") !== m.capabilities.join(",")) {
      fail("hello", `capabilities "${hello.capabilities}", expected "${m.capabilities.join(",")}"`);
    }
  } else if (m.helloDone && m.end.kind !== "peer-close" && m.end.kind !== "abort") {
    // The answer is written in the read that completes the HELLO.
    fail("hello", "no AGENT-HELLO although the model read a valid HAPROXY-HELLO");
  }

  // ACKs answer NOTIFYs of the input, never more often than sent.
  const sent = new Map<string, number>();
  for (const f of oracleFrames(c.input)) {
    if (f.status === "ok" && f.type === FrameType.NOTIFY) {
      const k = idKey(f.streamId, f.frameId);
      sent.set(k, (sent.get(k) ?? 0) + 1);
    }
  }
  const acked = new Map<string, number>();
  for (const a of acks) {
    const k = idKey(a.streamId, a.frameId);
    const count = (acked.get(k) ?? 0) + 1;
    acked.set(k, count);
    if (count > (sent.get(k) ?? 0)) {
      fail(
        "ack-ids",
        `ACK ${k} #${count}, but the input has ${sent.get(k) ?? 0} NOTIFY with those ids`,
      );
    }
    const actions = a.actions ?? [];
    const padOnly = actions.length === 1 && actions[0]!.action === "unset-var" &&
      actions[0]!.scope === VarScope.TXN && actions[0]!.name === "_";
    if (!o.emptyAcks && actions.length === 0) fail("ack-pad", `empty ACK ${k} without emptyAcks`);
    if (o.emptyAcks && padOnly) fail("ack-pad", `padded ACK ${k} with emptyAcks`);
    const expected = c.scores.get(k);
    if (c.level === 0 && expected !== undefined && !(padOnly || actions.length === 0)) {
      const got = actions.filter((x) =>
        x.action === "set-var" && x.scope === VarScope.SESS && x.name === "ip_score"
      );
      const values = got.map((x) => `${x.type}:${x.value}`).join(",");
      const want = expected.map((v) => `${DataType.UINT32}:${v}`).join(",");
      if (values !== want) {
        fail("ack-content", `ACK ${k}: ip_score ${values || "none"}, expected ${want || "none"}`);
      }
    }
  }

  // The DISCONNECT.
  const peerStatus = m.end.kind === "peer" ? m.end.status : undefined;
  if (disconnect !== undefined) {
    if (!VALID_STATUS.has(disconnect.status) && disconnect.status !== peerStatus) {
      fail("status", `AGENT-DISCONNECT status ${disconnect.status} is no §8 code`);
    }
    if (disconnect.status === Status.UNKNOWN && peerStatus !== Status.UNKNOWN) {
      fail("status", `AGENT-DISCONNECT 99 (internal error?): "${disconnect.message}"`);
    }
    if (disconnect.message.length > 200 || !/^[\x20-\x7e]*$/.test(disconnect.message)) {
      fail("status", `DISCONNECT message not short ASCII: ${JSON.stringify(disconnect.message)}`);
    }
    if (conn.count("close") === 0 && conn.count("destroy") === 0 && !conn.peerClosed) {
      fail("close", "AGENT-DISCONNECT written but the connection was never closed");
    }
  }
  if (conn.writesAfterClose > 0) {
    fail("close", `${conn.writesAfterClose} writes after close()/destroy()`);
  }
  if (conn.writesAtPeerClose !== undefined && conn.writes.length > conn.writesAtPeerClose) {
    fail("close", `${conn.writes.length - conn.writesAtPeerClose} writes after the peer closed`);
  }
  const aborted = ctl.stops.some((s) => s.kind === "abort" || s.kind === "cut-off");
  if (conn.count("destroy") > 0 && !aborted) {
    fail("close", "destroy() without abort() or a cut-off by expire()");
  }

  // Pause and resume alternate, starting with pause.
  let paused = false;
  for (const e of conn.events) {
    if (e !== "pause" && e !== "resume") continue;
    if ((e === "pause") === paused) fail("pause", `${e}() twice in a row`);
    paused = e === "pause";
  }

  // The model's verdict.
  const end = m.end;
  const blind = c.level > 0; // mutated NOTIFY payloads fail where the model does not look (status 4)
  const allowed = (want: number) => status === want || (blind && status === Status.INVALID_FRAME);
  switch (end.kind) {
    case "error": {
      const by = chunkEndCovering(obs.chunkEnds, end.at);
      if (obs.endedFed === undefined || obs.endedFed > by) {
        fail(
          "late-error",
          `${end.what} (status ${end.status}, complete at byte ${end.at}) did not close the connection in the read ending at ${by} (closed at ${
            obs.endedFed ?? "never"
          })`,
        );
      }
      if (!allowed(end.status)) {
        fail("error-status", `${end.what}: status ${status ?? "none"}, expected ${end.status}`);
      }
      break;
    }
    case "peer": {
      if (!allowed(end.status)) {
        fail("echo", `HAPROXY-DISCONNECT ${end.status} answered with ${status ?? "nothing"}`);
      }
      const by = chunkEndCovering(obs.chunkEnds, end.at);
      if (obs.endedFed === undefined || obs.endedFed > by) {
        fail("late-close", "HAPROXY-DISCONNECT did not close at once");
      }
      break;
    }
    case "healthcheck": {
      const kinds = frames.map((f) => f.type).join(",");
      if (kinds !== String(FrameType.AGENT_HELLO)) {
        fail("healthcheck", `health check answered with types ${kinds}`);
      }
      if (conn.count("close") === 0) fail("healthcheck", "health check not closed");
      break;
    }
    case "frame-timeout":
      if (m.expiredWhole) {
        fail("frame-timeout", "expire() closed the connection with no frame buffered in part");
      }
      if (!allowed(Status.TIMEOUT)) fail("frame-timeout", `expire(): status ${status ?? "none"}`);
      break;
    case "timeout":
      if (!allowed(Status.TIMEOUT)) fail("timeout", `hello timeout: status ${status ?? "none"}`);
      if (helloAt >= 0) fail("timeout", "AGENT-HELLO before a hello timeout");
      break;
    case "drain": {
      if (m.interrupted) break;
      if (!allowed(Status.NORMAL)) {
        fail(
          "drain",
          `graceful end (${end.by}) with status ${
            status ?? "none"
          }, ${m.completes.length} NOTIFY read`,
        );
        break;
      }
      if (status !== Status.NORMAL) break;
      const want = new Map<string, number>();
      for (const k of m.completes) want.set(k, (want.get(k) ?? 0) + 1);
      const missing: string[] = [];
      const extra: string[] = [];
      for (const [k, count] of want) if ((acked.get(k) ?? 0) < count) missing.push(k);
      for (const [k, count] of acked) if (count > (want.get(k) ?? 0)) extra.push(k);
      if (missing.length > 0 || extra.length > 0) {
        fail(
          "liveness",
          `graceful end (${end.by}): NOTIFY without ACK: [${
            missing.slice(0, 8).join(" ")
          }]; ACK not expected: [${
            extra.slice(0, 8).join(" ")
          }] (${m.completes.length} read, ${acks.length} ACKs)`,
        );
      }
      break;
    }
    default:
      break;
  }

  // Final state.
  if (!conn.ended && !conn.peerClosed) {
    fail("end", "the connection is still open after shutdown() and settling");
  }
  if (!obs.closedResolved) fail("end", "`closed` did not resolve");
  if (timers.pending !== 0) fail("end", `${timers.pending} timers still pending`);
  if (session.inFlight !== 0) fail("end", `${session.inFlight} NOTIFY still in flight`);
  if (ctl.deferreds.length !== 0) fail("end", "the driver left handler promises unsettled");

  return {
    case: c,
    violations: ctl.violations,
    known: ctl.known,
    end: end.kind,
    frames: frames.length,
    acks: acks.length,
    status,
    handlerCalls: ctl.handlerCalls,
    plain,
  };
}

// ---------------------------------------------------------------------------
// Running and reporting

/** Known lib bugs, by the name the model gives them; see the report. */
export const KNOWN_ISSUES: Record<string, string> = {};

/** Set to true to count known issues as failures. */
export const STRICT = { knownIssuesFail: false };

/**
 * Runs case `index` of the run with `seed`.
 *
 * @returns The outcome; `violations` is empty when every invariant held.
 */
export function runCase(seed: number, index: number): Promise<Outcome> {
  return execute(generateCase(seed, index));
}

/** Whether an outcome is a failure (a violation not explained by a known issue). */
export function failed(outcome: Outcome): boolean {
  return outcome.violations.length > 0 || (STRICT.knownIssuesFail && outcome.known.length > 0);
}

/** What {@linkcode reproduce} found. */
export interface Reproduction {
  case: FuzzCase;
  outcome: Outcome;
}

function firstCode(o: Outcome): string {
  return o.violations[0]?.code ?? o.known[0] ?? "";
}

/**
 * Replays a case with only its bytes (its reads, then in one read), and
 * shrinks the input while the plain replay still fails the same way.
 *
 * @param c The failed case.
 * @param budget How many replays shrinking may use.
 * @returns The smallest failing plain case, or `undefined` when the bytes
 * alone do not reproduce the failure.
 */
export async function reproduce(c: FuzzCase, budget = 600): Promise<Reproduction | undefined> {
  const attempt = async (cc: FuzzCase): Promise<Reproduction | undefined> => {
    const outcome = await execute(cc, true);
    return failed(outcome) ? { case: cc, outcome } : undefined;
  };
  const whole = (input: Uint8Array): FuzzCase => ({
    ...c,
    input,
    chunks: input.length > 0 ? [input.length] : [],
  });
  let best = await attempt(whole(c.input));
  if (best === undefined) return await attempt(c);
  const code = firstCode(best.outcome);
  const tryInput = async (input: Uint8Array): Promise<boolean> => {
    budget--;
    const next = await attempt(whole(input));
    if (next === undefined || firstCode(next.outcome) !== code) return false;
    best = next;
    return true;
  };
  const without = (input: Uint8Array, at: number, end: number): Uint8Array => {
    const out = new Uint8Array(input.length - (end - at));
    out.set(input.subarray(0, at));
    out.set(input.subarray(end), at);
    return out;
  };
  // Whole frames first, last to first, then ranges of bytes, halving the range.
  const frames = oracleFrames(best.case.input);
  for (let i = frames.length - 1; i >= 0 && budget > 0; i--) {
    const f = frames[i]!;
    const input = best.case.input;
    if (f.end <= input.length) await tryInput(without(input, f.start, f.end));
  }
  let span = Math.max(1, best.case.input.length >> 1);
  while (span >= 1 && budget > 0) {
    let changed = false;
    for (let at = 0; at + span <= best.case.input.length && budget > 0;) {
      if (await tryInput(without(best.case.input, at, at + span))) changed = true;
      else at += span;
    }
    if (!changed) span >>= 1;
  }
  return best;
}

function optionsText(o: SessionConfig): string {
  return JSON.stringify(o);
}

/**
 * A report of a failed case, with everything needed to reproduce it.
 *
 * @param outcome The failed outcome.
 * @param shrunk What {@linkcode reproduce} found, if anything.
 * @returns Multi-line text.
 */
export function describe(outcome: Outcome, shrunk?: Reproduction | undefined): string {
  const c = outcome.case;
  const lines = [
    `FUZZ FAILURE seed=${c.seed} index=${c.index} (case seed ${c.caseSeed}, level ${c.level})`,
    `reproduce: deno run -A tools/fuzz.ts --seed ${c.seed} --index ${c.index}`,
    "violations:",
    ...outcome.violations.map((v) => `  - [${v.code}] ${v.detail}`),
    `options: ${optionsText(c.options)}`,
    `ipSeed: ${c.ipSeed}, log level: ${c.logLevel}`,
    `mutations: ${c.notes.join("; ") || "none"}`,
    `reads (${c.chunks.length}): ${
      c.chunks.length > 64 ? `${c.chunks.slice(0, 64).join(",")},…` : c.chunks.join(",")
    }`,
    `input (${c.input.length} bytes):`,
    toHex(c.input),
  ];
  for (const k of outcome.known) lines.push(`known issue: ${k}: ${KNOWN_ISSUES[k]}`);
  if (shrunk !== undefined) {
    const s = shrunk.case;
    lines.push(
      `plain replay (reads ${
        s.chunks.length === 1 ? "whole" : "as above"
      }, sync handlers) reproduces it; shrunk input (${s.input.length} bytes):`,
      toHex(s.input),
      "shrunk violations:",
      ...shrunk.outcome.violations.map((v) => `  - [${v.code}] ${v.detail}`),
      "regression test sketch (tests/_session_harness.ts):",
      `  const h = startSession(ipReputation({ seed: ${s.ipSeed} }), ${optionsText(s.options)});`,
      `  h.conn.feed(hex("${toHex(s.input)}"));`,
      "  await settle(); await h.session.shutdown(); // then assert on h.conn.frames()",
    );
  } else {lines.push(
      "a plain replay of the bytes does not reproduce it: it needs the driver's events (use the seed and index)",
    );}
  return lines.join("\n");
}

/** Totals over many cases. */
export interface Tally {
  cases: number;
  failures: number;
  known: Record<string, number>;
  ends: Record<string, number>;
  levels: number[];
  acks: number;
  frames: number;
  handlerCalls: number;
  inputBytes: number;
  statuses: Record<string, number>;
}

/** An empty tally. */
export function newTally(): Tally {
  return {
    cases: 0,
    failures: 0,
    known: {},
    ends: {},
    levels: [0, 0, 0],
    acks: 0,
    frames: 0,
    handlerCalls: 0,
    inputBytes: 0,
    statuses: {},
  };
}

/** Adds an outcome to a tally. */
export function count(t: Tally, o: Outcome): void {
  t.cases++;
  if (failed(o)) t.failures++;
  for (const k of o.known) t.known[k] = (t.known[k] ?? 0) + 1;
  t.ends[o.end] = (t.ends[o.end] ?? 0) + 1;
  t.levels[o.case.level]!++;
  t.acks += o.acks;
  t.frames += o.frames;
  t.handlerCalls += o.handlerCalls;
  t.inputBytes += o.case.input.length;
  const s = o.status === undefined ? "none" : String(o.status);
  t.statuses[s] = (t.statuses[s] ?? 0) + 1;
}
