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
import { realWorker } from "./_pool_worker.ts";

/** How long worker 2 waits before it loads the agent. */
const SLOW_START_MS = 500;

const { scope, real, realPost } = realWorker();
let id = 0;

scope.onmessage = (event) => {
  const message = event.data;
  if (message.type !== "start") return real(event);
  id = message.id;
  if (id === 2) setTimeout(() => real(event), SLOW_START_MS);
  else real(event);
};

scope.postMessage = (message, transfer = []) => {
  realPost(message, transfer);
  if (id !== 1 || message.type !== "loaded") return;
  setTimeout(() => {
    process.removeAllListeners("uncaughtException");
    throw new Error("worker 1 dies after loading on purpose (pool_test.ts)");
  });
};
