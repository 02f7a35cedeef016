/**
 * A pool worker for `pool_test.ts` that crashes on purpose: it runs the real
 * worker (`lib/serve/worker.ts`), and the worker started as id 1 throws an
 * uncaught error about 150 ms after each time it reports that it serves
 * (`ready` with `reuseport`, `loaded` with `streams`), so that slot crashes
 * after every restart while the other workers stay healthy.
 *
 * It waits for that report rather than for `start`: a worker that dies
 * before it serves fails the pool's start (`startPool` rejects), and how long
 * a worker takes to load varies with the machine's load.
 *
 * @module
 */

import process from "node:process";
import type { Dispatch } from "../lib/serve/pool_protocol.ts";
import { realWorker } from "./_pool_worker.ts";

/** How long worker 1 lives after it reports that it serves. */
const CRASH_AFTER_MS = 150;

const { scope, real, realPost } = realWorker();

/** This worker's dispatch, when it is worker 1 (the one that crashes). */
let crashing: Dispatch | undefined;

scope.onmessage = (event) => {
  const message = event.data;
  if (message.type === "start" && message.id === 1) crashing = message.dispatch;
  real(event);
};

scope.postMessage = (message, transfer = []) => {
  realPost(message, transfer);
  const serves = message.type === "ready" ||
    (message.type === "loaded" && crashing === "streams");
  if (crashing === undefined || !serves) return;
  setTimeout(() => {
    // The real worker logs uncaught errors of agent code and keeps running:
    // without its listeners, this one is fatal.
    process.removeAllListeners("uncaughtException");
    throw new Error("worker 1 crashes on purpose (pool_test.ts)");
  }, CRASH_AFTER_MS);
};
