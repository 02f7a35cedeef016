/**
 * The socket file of a Unix listener: a stale file (nobody listening) is
 * replaced, a live one is refused, the mode is set after binding, and the
 * file is removed when the listener closes.
 *
 * @module
 */

import { chmodSync, lstatSync, unlinkSync } from "node:fs";
import net from "node:net";

const PROBE_MS = 1000;

/**
 * Makes way for a listener on `path`: nothing there is fine; a socket that
 * nobody listens on is removed; anything else is refused.
 *
 * @param path The socket file.
 * @throws {Error} When the path is a live socket or not a socket at all.
 */
export async function prepareSocketPath(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // Nothing there (or nothing we can see: binding will say).
  }
  if (!isSocket) {
    throw new Error(`Cannot listen on unix:${path}: the file exists and is not a socket`);
  }
  if (await isLive(path)) {
    throw new Error(`Cannot listen on unix:${path}: another process is listening on it`);
  }
  unlinkSync(path); // Stale: left by a process that did not remove it.
}

/** Whether something accepts connections on the socket file. */
function isLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ path });
    const done = (live: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(live);
    };
    const timer = setTimeout(() => done(true), PROBE_MS); // Busy, but there.
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/**
 * Sets the socket file's mode once bound (HAProxy connects with its own user
 * and group, without supplementary groups). When that fails, the listener is
 * closed and its file removed before the error is thrown.
 *
 * @param path The socket file.
 * @param mode For example `0o660`; `undefined` keeps the umask's.
 * @param close Closes the listener.
 * @throws {Error} When the mode cannot be set.
 */
export function setSocketMode(path: string, mode: number | undefined, close: () => void): void {
  if (mode === undefined) return;
  try {
    chmodSync(path, mode);
  } catch (err) {
    close();
    removeSocketPath(path);
    throw err;
  }
}

/**
 * Removes the socket file (when the listener closes).
 *
 * @param path The socket file.
 */
export function removeSocketPath(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone.
  }
}
