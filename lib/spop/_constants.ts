/**
 * SPOP wire constants (`../shared/docs/spop.md` §1–§8). Each group is an
 * `as const` object with a union type of its values.
 *
 * @module
 */

/** Frame types (§3). */
export const FrameType = {
  /** A continuation fragment of a NOTIFY (HAProxy 2.x fragmentation). */
  UNSET: 0,
  HAPROXY_HELLO: 1,
  HAPROXY_DISCONNECT: 2,
  NOTIFY: 3,
  AGENT_HELLO: 101,
  AGENT_DISCONNECT: 102,
  ACK: 103,
} as const;
/** One of the {@linkcode FrameType} values. */
export type FrameType = typeof FrameType[keyof typeof FrameType];

/** Frame flag bits (§6); bits 2 to 31 are reserved. */
export const Flag = {
  /** The last (or only) fragment of a frame. Every frame an agent sends has it. */
  FIN: 1,
  /** Cancels a fragmented frame. */
  ABORT: 2,
} as const;
/** One of the {@linkcode Flag} bits. */
export type Flag = typeof Flag[keyof typeof Flag];

/** Typed-data types (§2.2): the low nibble of the type byte. 10–15 are reserved. */
export const DataType = {
  NULL: 0,
  /** The value is flag bit 0x10 of the type byte. */
  BOOL: 1,
  INT32: 2,
  UINT32: 3,
  INT64: 4,
  UINT64: 5,
  /** 4 bytes, network order. */
  IPV4: 6,
  /** 16 bytes, network order. */
  IPV6: 7,
  /** Varint length, then UTF-8 bytes. */
  STRING: 8,
  /** Varint length, then bytes. */
  BINARY: 9,
} as const;
/** One of the {@linkcode DataType} values. */
export type DataType = typeof DataType[keyof typeof DataType];

/** Action types in an ACK (§7.3). */
export const ActionType = {
  /** Arguments: scope byte, raw name, typed value. */
  SET_VAR: 1,
  /** Arguments: scope byte, raw name. */
  UNSET_VAR: 2,
} as const;
/** One of the {@linkcode ActionType} values. */
export type ActionType = typeof ActionType[keyof typeof ActionType];

/** Variable scopes (§7.3): HAProxy sees `<scope>.<var-prefix>.<name>`. */
export const VarScope = {
  PROC: 0,
  SESS: 1,
  TXN: 2,
  REQ: 3,
  RES: 4,
} as const;
/** One of the {@linkcode VarScope} values. */
export type VarScope = typeof VarScope[keyof typeof VarScope];

/** Item names of HELLO and DISCONNECT frames (§4, §8). Matched exactly. */
export const Key = {
  SUPPORTED_VERSIONS: "supported-versions",
  VERSION: "version",
  MAX_FRAME_SIZE: "max-frame-size",
  CAPABILITIES: "capabilities",
  HEALTHCHECK: "healthcheck",
  ENGINE_ID: "engine-id",
  STATUS_CODE: "status-code",
  MESSAGE: "message",
} as const;

/** Bytes of the LENGTH prefix. */
export const LENGTH_SIZE = 4;
/** The smallest LENGTH: type, flags and two one-byte ids. */
export const MIN_FRAME_LENGTH = 7;
/** The smallest max-frame-size either peer may announce. */
export const MIN_MAX_FRAME_SIZE = 256;
/** HAProxy's default max-frame-size (tune.bufsize 16384 − 4). */
export const DEFAULT_MAX_FRAME_SIZE = 16380;
/** The only protocol version HAProxy speaks. */
export const SPOP_VERSION = "2.0";

/** The largest max-frame-size the agent accepts (`-m`): 16 MiB. */
export const MAX_FRAME_SIZE_LIMIT = 16 * 1024 * 1024;
