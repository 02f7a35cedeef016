/**
 * The SPOP handshake's answer (`../shared/docs/spop.md` §4): what an agent
 * with these options says to a HAPROXY-HELLO, or why it refuses it.
 *
 * @module
 */

import {
  decodeHaproxyHello,
  type Frame,
  FrameType,
  type HaproxyHello,
  hasCapability,
  negotiateMaxFrameSize,
  pickVersion,
  SpopError,
  Status,
} from "../spop.ts";
import type { SessionOptions } from "./session_options.ts";

/** What the agent answers: HAProxy's HELLO, the frame size and the capabilities both use. */
export interface Handshake {
  hello: HaproxyHello;
  /** min(HAProxy's max-frame-size, ours). */
  size: number;
  /** The capabilities announced, e.g. `["pipelining"]`. */
  caps: string[];
}

/**
 * Reads the first frame of a connection and decides the answer.
 *
 * @param frame The first frame.
 * @param opts What the agent offers.
 * @returns The handshake.
 * @throws {SpopError} With status 2 (invalid frame) when it is not a
 * HAPROXY-HELLO, 4 (bad version) when it offers no 2.x version, or the
 * decoder's status for a malformed one.
 */
export function negotiate(
  frame: Frame,
  opts: Pick<SessionOptions, "maxFrameSize" | "pipelining" | "async" | "fragmentation">,
): Handshake {
  if (frame.type !== FrameType.HAPROXY_HELLO) {
    throw new SpopError(
      Status.INVALID_FRAME,
      `Cannot start session: first frame is ${
        FRAME_NAMES[frame.type] ?? `type ${frame.type}`
      }, expected HAPROXY-HELLO`,
    );
  }
  const hello = decodeHaproxyHello(frame);
  if (pickVersion(hello.supportedVersions) === undefined) {
    throw new SpopError(
      Status.BAD_VERSION,
      `Cannot start session: no 2.x version in "${hello.supportedVersions}"`,
    );
  }
  const size = negotiateMaxFrameSize(hello.maxFrameSize, opts.maxFrameSize);
  const caps: string[] = [];
  if (opts.pipelining && hasCapability(hello.capabilities, "pipelining")) caps.push("pipelining");
  if (opts.async && hasCapability(hello.capabilities, "async")) caps.push("async");
  // Announced to every HELLO but health checks (HAProxy 2.x fragments only if we announce it).
  if (opts.fragmentation && !hello.healthcheck) caps.push("fragmentation");
  return { hello, size, caps };
}

/** Frame types by name, for logs and errors. */
export const FRAME_NAMES: Readonly<Record<number, string>> = {
  [FrameType.UNSET]: "UNSET",
  [FrameType.HAPROXY_HELLO]: "HAPROXY-HELLO",
  [FrameType.HAPROXY_DISCONNECT]: "HAPROXY-DISCONNECT",
  [FrameType.NOTIFY]: "NOTIFY",
  [FrameType.AGENT_HELLO]: "AGENT-HELLO",
  [FrameType.AGENT_DISCONNECT]: "AGENT-DISCONNECT",
  [FrameType.ACK]: "ACK",
};
