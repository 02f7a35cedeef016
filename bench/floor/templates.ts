/**
 * The frames of the floor agents (`bench/floor/floor.ts`, `bench/floor/floor.c`),
 * made by spoa's own codec so that their bytes are right: the AGENT-HELLO,
 * the AGENT-DISCONNECT, and the actions part of every ACK (one `set-var` of
 * `sess.iprep.ip_score`, as spoa's service answers; the floor always says 50).
 *
 * @module
 */

import {
  DataType,
  FrameType,
  FrameWriter,
  VarScope,
  writeAgentHello,
  writeDisconnect,
} from "../../lib/spop.ts";

/** What a floor agent sends. */
export interface FloorFrames {
  /** A whole AGENT-HELLO frame (max-frame-size 16380, pipelining), length included. */
  agentHello: Uint8Array;
  /** A whole AGENT-DISCONNECT frame (status 0), length included. */
  agentDisconnect: Uint8Array;
  /** The ACK's payload after its ids: the list of actions. */
  ackActions: Uint8Array;
}

/** Bytes of a frame's LENGTH, type and flags: what precedes its ids. */
const HEAD = 4 + 1 + 4;

/** The floor agents' frames. */
export function floorFrames(): FloorFrames {
  const w = new FrameWriter(256);
  writeAgentHello(w, { maxFrameSize: 16380, capabilities: "pipelining" });
  const agentHello = w.bytes().slice();
  w.reset();
  writeDisconnect(w, FrameType.AGENT_DISCONNECT, 0);
  const agentDisconnect = w.bytes().slice();
  w.reset();
  // Ids 0 and 0 take one byte each.
  w.begin(FrameType.ACK, 0, 0).setVar(VarScope.SESS, "ip_score", DataType.INT32, 50).end();
  const ackActions = w.bytes().slice(HEAD + 2);
  return { agentHello, agentDisconnect, ackActions };
}

/**
 * The three frames in one file for the C floor agent: each as a 4-byte
 * big-endian length, then its bytes.
 */
export function floorFile(): Uint8Array {
  const { agentHello, agentDisconnect, ackActions } = floorFrames();
  const parts = [agentHello, agentDisconnect, ackActions];
  const out = new Uint8Array(parts.reduce((n, p) => n + 4 + p.length, 0));
  const view = new DataView(out.buffer);
  let at = 0;
  for (const p of parts) {
    view.setUint32(at, p.length);
    out.set(p, at + 4);
    at += 4 + p.length;
  }
  return out;
}
