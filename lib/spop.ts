/**
 * The SPOP codec: pure bytes, no I/O, no runtime globals.
 *
 * It follows `../shared/docs/spop.md` (distilled from HAProxy 2.6 through
 * 3.5): frames (§1), varints and typed data (§2), frame types (§3), HELLO
 * (§4, §5), NOTIFY and ACK (§7), DISCONNECT and status codes (§8). Decoding is
 * zero-copy: readers hold offsets into the frame's own bytes, match names as
 * bytes and only build strings when asked. Encoding appends frames to one
 * reused buffer ({@linkcode FrameWriter}).
 *
 * Chunks from a socket become frames with {@linkcode FrameScanner}.
 *
 * @example Answer a HAPROXY-HELLO
 * ```ts
 * import {
 *   decodeHaproxyHello,
 *   Frame,
 *   FrameWriter,
 *   hasCapability,
 *   negotiateMaxFrameSize,
 *   readFrame,
 *   writeAgentHello,
 *   writeHaproxyHello,
 * } from "./spop.ts";
 *
 * const w = new FrameWriter();
 * writeHaproxyHello(w, { maxFrameSize: 16380, capabilities: "pipelining" });
 * const bytes = w.bytes();
 * const frame = new Frame();
 * readFrame(bytes, new DataView(bytes.buffer, bytes.byteOffset), 0, bytes.length, 16380, frame);
 * const hello = decodeHaproxyHello(frame);
 * const reply = new FrameWriter();
 * writeAgentHello(reply, {
 *   maxFrameSize: negotiateMaxFrameSize(hello.maxFrameSize, 16380),
 *   capabilities: hasCapability(hello.capabilities, "pipelining") ? "pipelining" : "",
 * });
 * ```
 *
 * @module
 */

import { SpopError, Status, statusMessage } from "./spop/errors.ts";
import { DataType, FrameType, Key, MIN_MAX_FRAME_SIZE, SPOP_VERSION } from "./spop/_constants.ts";
import { encodeName, type TypedData } from "./spop/_data.ts";
import { type Frame } from "./spop/_frame.ts";
import { KVReader } from "./spop/_lists.ts";
import { type FrameWriter } from "./spop/_writer.ts";

export * from "./spop/_constants.ts";
export { SpopError, Status, statusMessage } from "./spop/errors.ts";
export { INCOMPLETE, MAX_VARINT_BYTES, readVarint, writeVarint } from "./spop/_varint.ts";
export type { VarintOut } from "./spop/_varint.ts";
export { bytesEqual, decodeText, encodeName, readTypedData, TypedData } from "./spop/_data.ts";
export type { Value } from "./spop/_data.ts";
export { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from "./spop/_ip.ts";
export { checkLength, Frame, readFrame } from "./spop/_frame.ts";
export { ActionReader, Arg, KVReader, MAX_ARGS, MessageReader } from "./spop/_lists.ts";
export { FrameWriter } from "./spop/_writer.ts";
export { FrameScanner } from "./spop/framer.ts";
export type { Text } from "./spop/_writer.ts";

const SUPPORTED_VERSIONS = encodeName(Key.SUPPORTED_VERSIONS);
const VERSION = encodeName(Key.VERSION);
const MAX_FRAME_SIZE = encodeName(Key.MAX_FRAME_SIZE);
const CAPABILITIES = encodeName(Key.CAPABILITIES);
const HEALTHCHECK = encodeName(Key.HEALTHCHECK);
const ENGINE_ID = encodeName(Key.ENGINE_ID);
const STATUS_CODE = encodeName(Key.STATUS_CODE);
const MESSAGE = encodeName(Key.MESSAGE);

/** The content of a HAPROXY-HELLO frame (§4.1). */
export interface HaproxyHello {
  /** Comma-separated "Major.Minor" list; HAProxy always sends "2.0". */
  supportedVersions: string;
  /** The largest frame HAProxy accepts (LENGTH). */
  maxFrameSize: number;
  /** Comma-separated capabilities; possibly empty. */
  capabilities: string;
  /** True on `option spop-check` health checks. */
  healthcheck: boolean;
  /** The engine's id, absent on health checks. */
  engineId?: string;
}

/** The content of an AGENT-HELLO frame (§4.2). */
export interface AgentHello {
  /** Always "2.0" for HAProxy. */
  version: string;
  /** The negotiated max-frame-size: at least 256, at most HAProxy's. */
  maxFrameSize: number;
  /** Comma-separated capabilities the agent uses; possibly empty. */
  capabilities: string;
}

/** The content of a DISCONNECT frame (§8). */
export interface Disconnect {
  /** A status code (see `Status`). */
  status: number;
  /** A human-readable reason. */
  message: string;
}

/**
 * Decodes a HAPROXY-HELLO frame.
 *
 * @param frame A frame read by `readFrame` or `FrameScanner`.
 * @returns The HELLO's items.
 * @throws {SpopError} INVALID_FRAME for another frame type, non-zero ids, an
 * item of the wrong type or malformed data; FRAGMENTATION_NOT_SUPPORTED
 * without FIN; NO_VERSION, NO_FRAME_SIZE or NO_CAPABILITIES when an item is
 * missing.
 */
export function decodeHaproxyHello(frame: Frame): HaproxyHello {
  checkControlFrame(frame, FrameType.HAPROXY_HELLO, "HAPROXY-HELLO");
  let versions: string | undefined;
  let maxFrameSize: number | undefined;
  let capabilities: string | undefined;
  let healthcheck = false;
  let engineId: string | undefined;
  const kv = new KVReader().reset(frame.buf, frame.payloadStart, frame.end);
  while (kv.next()) {
    const v = kv.value;
    if (kv.nameIs(SUPPORTED_VERSIONS)) versions = stringItem(kv, v);
    else if (kv.nameIs(MAX_FRAME_SIZE)) maxFrameSize = intItem(kv, v);
    else if (kv.nameIs(CAPABILITIES)) capabilities = stringItem(kv, v);
    else if (kv.nameIs(HEALTHCHECK)) healthcheck = boolItem(kv, v);
    else if (kv.nameIs(ENGINE_ID)) engineId = stringItem(kv, v);
  }
  if (versions === undefined) throw missing(Status.NO_VERSION, Key.SUPPORTED_VERSIONS);
  if (maxFrameSize === undefined) throw missing(Status.NO_FRAME_SIZE, Key.MAX_FRAME_SIZE);
  if (capabilities === undefined) throw missing(Status.NO_CAPABILITIES, Key.CAPABILITIES);
  const hello: HaproxyHello = {
    supportedVersions: versions,
    maxFrameSize,
    capabilities,
    healthcheck,
  };
  if (engineId !== undefined) hello.engineId = engineId;
  return hello;
}

/**
 * Decodes an AGENT-HELLO frame (what a test client or load generator reads).
 *
 * @param frame A frame read by `readFrame` or `FrameScanner`.
 * @returns The HELLO's items.
 * @throws {SpopError} As {@linkcode decodeHaproxyHello}, with `version` in
 * place of `supported-versions`.
 */
export function decodeAgentHello(frame: Frame): AgentHello {
  checkControlFrame(frame, FrameType.AGENT_HELLO, "AGENT-HELLO");
  let version: string | undefined;
  let maxFrameSize: number | undefined;
  let capabilities: string | undefined;
  const kv = new KVReader().reset(frame.buf, frame.payloadStart, frame.end);
  while (kv.next()) {
    const v = kv.value;
    if (kv.nameIs(VERSION)) version = stringItem(kv, v);
    else if (kv.nameIs(MAX_FRAME_SIZE)) maxFrameSize = intItem(kv, v);
    else if (kv.nameIs(CAPABILITIES)) capabilities = stringItem(kv, v);
  }
  if (version === undefined) throw missing(Status.NO_VERSION, Key.VERSION);
  if (maxFrameSize === undefined) throw missing(Status.NO_FRAME_SIZE, Key.MAX_FRAME_SIZE);
  if (capabilities === undefined) throw missing(Status.NO_CAPABILITIES, Key.CAPABILITIES);
  return { version, maxFrameSize, capabilities };
}

/**
 * Decodes a HAPROXY-DISCONNECT or AGENT-DISCONNECT frame. A missing
 * `status-code` reads as UNKNOWN (99), a missing `message` as HAProxy's text
 * for the code.
 *
 * @param frame A frame read by `readFrame` or `FrameScanner`.
 * @returns The status and message.
 * @throws {SpopError} INVALID_FRAME for another frame type, non-zero ids, an
 * item of the wrong type or malformed data; FRAGMENTATION_NOT_SUPPORTED
 * without FIN.
 */
export function decodeDisconnect(frame: Frame): Disconnect {
  const expected = frame.type === FrameType.AGENT_DISCONNECT
    ? FrameType.AGENT_DISCONNECT
    : FrameType.HAPROXY_DISCONNECT;
  checkControlFrame(frame, expected, "DISCONNECT");
  let status: number = Status.UNKNOWN;
  let message: string | undefined;
  const kv = new KVReader().reset(frame.buf, frame.payloadStart, frame.end);
  while (kv.next()) {
    if (kv.nameIs(STATUS_CODE)) status = intItem(kv, kv.value);
    else if (kv.nameIs(MESSAGE)) message = stringItem(kv, kv.value);
  }
  return { status, message: message ?? statusMessage(status) };
}

/**
 * Writes an AGENT-HELLO frame (§4.2) with all three items, exact names, FIN
 * and ids 0/0.
 *
 * @param w The writer.
 * @param hello `maxFrameSize` and `capabilities`; `version` defaults to "2.0".
 * @returns The frame's LENGTH.
 */
export function writeAgentHello(
  w: FrameWriter,
  hello: { maxFrameSize: number; capabilities: string; version?: string },
): number {
  w.begin(FrameType.AGENT_HELLO)
    .kv(VERSION, DataType.STRING, hello.version ?? SPOP_VERSION)
    .kv(MAX_FRAME_SIZE, DataType.UINT32, hello.maxFrameSize)
    .kv(CAPABILITIES, DataType.STRING, hello.capabilities);
  return w.end();
}

/**
 * Writes a HAPROXY-HELLO frame, as HAProxy does (for test clients and load
 * generators): items in HAProxy's order, `healthcheck` only when true.
 *
 * @param w The writer.
 * @param hello The items; `supportedVersions` defaults to "2.0".
 * @returns The frame's LENGTH.
 */
export function writeHaproxyHello(
  w: FrameWriter,
  hello: {
    maxFrameSize: number;
    capabilities: string;
    supportedVersions?: string;
    healthcheck?: boolean;
    engineId?: string;
  },
): number {
  w.begin(FrameType.HAPROXY_HELLO)
    .kv(SUPPORTED_VERSIONS, DataType.STRING, hello.supportedVersions ?? SPOP_VERSION)
    .kv(MAX_FRAME_SIZE, DataType.UINT32, hello.maxFrameSize)
    .kv(CAPABILITIES, DataType.STRING, hello.capabilities);
  if (hello.healthcheck) w.kv(HEALTHCHECK, DataType.BOOL, true);
  if (hello.engineId !== undefined) w.kv(ENGINE_ID, DataType.STRING, hello.engineId);
  return w.end();
}

/**
 * Writes a DISCONNECT frame (§8).
 *
 * @param w The writer.
 * @param type `FrameType.AGENT_DISCONNECT` (or HAPROXY_DISCONNECT for tools).
 * @param status The status code.
 * @param message The reason; HAProxy's text for the code by default.
 * @returns The frame's LENGTH.
 */
export function writeDisconnect(
  w: FrameWriter,
  type: typeof FrameType.AGENT_DISCONNECT | typeof FrameType.HAPROXY_DISCONNECT,
  status: number,
  message: string = statusMessage(status),
): number {
  w.begin(type)
    .kv(STATUS_CODE, DataType.UINT32, status)
    .kv(MESSAGE, DataType.STRING, message);
  return w.end();
}

/**
 * Picks the protocol version to answer with from HAProxy's
 * `supported-versions`: "2.0" when the list holds any 2.x version.
 *
 * @param supportedVersions For example `"2.0"` or `"1.0, 2.0"`.
 * @returns `"2.0"`, or `undefined` when no 2.x version is offered.
 *
 * @example Usage
 * ```ts
 * import { pickVersion } from "./spop.ts";
 *
 * pickVersion("2.0"); // "2.0"
 * pickVersion("1.0,3.1"); // undefined
 * ```
 */
export function pickVersion(supportedVersions: string): string | undefined {
  for (const item of supportedVersions.split(",")) {
    const match = /^\s*(\d+)\.(\d+)\s*$/.exec(item);
    if (match && Number(match[1]) === 2) return SPOP_VERSION;
  }
  return undefined;
}

/**
 * Whether a comma-separated capability list holds `name` as a whole token
 * (spaces around tokens are ignored).
 *
 * @param list For example `"pipelining,async"`.
 * @param name For example `"pipelining"`.
 * @returns Whether it is there.
 */
export function hasCapability(list: string, name: string): boolean {
  return list.split(",").some((item) => item.trim() === name);
}

/**
 * The max-frame-size to answer with: the smaller of HAProxy's and ours.
 *
 * @param haproxy The value from HAPROXY-HELLO.
 * @param agent Our own limit (at least 256).
 * @returns `min(haproxy, agent)`.
 * @throws {SpopError} BAD_FRAME_SIZE when HAProxy's value is below 256.
 */
export function negotiateMaxFrameSize(haproxy: number, agent: number): number {
  if (haproxy < MIN_MAX_FRAME_SIZE) {
    throw new SpopError(
      Status.BAD_FRAME_SIZE,
      `Cannot accept max-frame-size ${haproxy}: below the minimum of ${MIN_MAX_FRAME_SIZE}`,
    );
  }
  return Math.min(haproxy, agent);
}

function checkControlFrame(frame: Frame, type: number, name: string): void {
  if (frame.type !== type) {
    throw new SpopError(
      Status.INVALID_FRAME,
      `Cannot read ${name}: frame type is ${frame.type}, expected ${type}`,
    );
  }
  if (!frame.fin) {
    throw new SpopError(
      Status.FRAGMENTATION_NOT_SUPPORTED,
      `Cannot read ${name}: FIN is not set`,
    );
  }
  if (frame.streamId !== 0 || frame.frameId !== 0) {
    throw new SpopError(
      Status.INVALID_FRAME,
      `Cannot read ${name}: stream-id/frame-id are ${frame.streamId}/${frame.frameId}, expected 0/0`,
    );
  }
}

function stringItem(kv: KVReader, v: TypedData): string {
  if (v.type !== DataType.STRING) throw wrongType(kv, "a string");
  return v.text();
}

function intItem(kv: KVReader, v: TypedData): number {
  if (v.type < DataType.INT32 || v.type > DataType.UINT64) throw wrongType(kv, "an integer");
  return Number(v.int);
}

function boolItem(kv: KVReader, v: TypedData): boolean {
  if (v.type !== DataType.BOOL) throw wrongType(kv, "a boolean");
  return v.bool;
}

function wrongType(kv: KVReader, expected: string): SpopError {
  return new SpopError(
    Status.INVALID_FRAME,
    `Cannot read item "${kv.name()}": type ${kv.value.type} is not ${expected}`,
  );
}

function missing(status: Status, key: string): SpopError {
  return new SpopError(status, `Cannot use HELLO: item "${key}" is missing`);
}
