/**
 * A pool worker for `pool_test.ts` that dies between two start phases: it
 * runs the real worker (`lib/serve/worker.ts`); worker 1 throws an uncaught
 * error as soon as it reports that it loaded the agent, and worker 2 starts
 * loading only 500 ms after it is asked to, so that with `reuseport` the pool
 * asks worker 1 to listen after its death.
 *
 * @module
 */

import process from "node:process";
import "../lib/serve/worker.ts";
import type { FromWorker, ToWorker } from "../lib/serve/pool_protocol.ts";

/** How long worker 2 waits before it loads the agent. */
const SLOW_START_MS = 500;

interface Scope {
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
  postMessage(message: FromWorker, transfer?: Transferable[]): void;
}

const scope = globalThis as unknown as Scope;

const real = scope.onmessage;
if (real === null) throw new Error("lib/serve/worker.ts did not set onmessage");
const realPost = scope.postMessage;
let id = 0;

scope.onmessage = (event) => {
  const message = event.data;
  if (message.type !== "start") return real.call(globalThis, event);
  id = message.id;
  if (id === 2) setTimeout(() => real.call(globalThis, event), SLOW_START_MS);
  else real.call(globalThis, event);
};

scope.postMessage = (message, transfer = []) => {
  realPost.call(globalThis, message, transfer);
  if (id !== 1 || message.type !== "loaded") return;
  setTimeout(() => {
    process.removeAllListeners("uncaughtException");
    throw new Error("worker 1 dies after loading on purpose (pool_test.ts)");
  });
};
