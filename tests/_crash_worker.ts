/**
 * A pool worker for `pool_test.ts` that crashes on purpose: it runs the real
 * worker (`lib/serve/worker.ts`), and the worker started as id 1 throws an uncaught
 * error about 150 ms after each `start`, so that slot crashes after every
 * restart while the other workers stay healthy.
 *
 * @module
 */

import process from "node:process";
import "../lib/serve/worker.ts";
import type { ToWorker } from "../lib/serve/pool_protocol.ts";

/** How long worker 1 lives after each `start`. */
const CRASH_AFTER_MS = 150;

interface Scope {
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
}

const scope = globalThis as unknown as Scope;

const real = scope.onmessage;
if (real === null) throw new Error("lib/serve/worker.ts did not set onmessage");

scope.onmessage = (event) => {
  real.call(globalThis, event);
  const message = event.data;
  if (message.type === "start" && message.id === 1) {
    setTimeout(() => {
      // The real worker logs uncaught errors of agent code and keeps running:
      // without its listeners, this one is fatal.
      process.removeAllListeners("uncaughtException");
      throw new Error("worker 1 crashes on purpose (pool_test.ts)");
    }, CRASH_AFTER_MS);
  }
};
