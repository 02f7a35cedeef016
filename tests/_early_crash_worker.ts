/**
 * A pool worker for `pool_test.ts` whose worker 1 dies twice while the pool
 * is still starting: it runs the real worker (`lib/serve/worker.ts`), steered
 * by the pool's shared value (`startPool`'s `shared`), a `SharedArrayBuffer`
 * of `Int32` cells that it takes out of the `start` message before the real
 * worker sees it:
 *
 * - cell 1 (2): how many threads worker 1 (2) started;
 * - worker 1's first thread throws an uncaught error right after it reports
 *   that it serves (`ready` with `reuseport`, `loaded` with `streams`);
 * - its second thread, the replacement, sets cell 3 and throws as soon as it
 *   is asked to start, before it loads anything; its third runs normally;
 * - worker 2 holds back its report that it serves until the test sets cell 0,
 *   so that the pool is not up while worker 1 dies twice.
 *
 * @module
 */

import process from "node:process";
import type { Dispatch, ToWorker } from "../lib/serve/pool_protocol.ts";
import { realWorker } from "./_pool_worker.ts";

/** The cells (same numbers in `pool_test.ts`). */
const GO = 0;
const REPLACEMENT_DIED = 3;

const { scope, real, realPost } = realWorker();

let id = 0;
/** Which of its worker's threads this is, from 1. */
let thread = 0;
let dispatch: Dispatch = "reuseport";
let cells: Int32Array | undefined;

function die(why: string): void {
  setTimeout(() => {
    // The real worker logs uncaught errors of agent code and keeps running:
    // without its listeners, this one is fatal.
    process.removeAllListeners("uncaughtException");
    throw new Error(`worker ${id} (thread ${thread}) ${why} on purpose (pool_test.ts)`);
  });
}

scope.onmessage = (event) => {
  const message = event.data;
  if (message.type !== "start") return real(event);
  id = message.id;
  dispatch = message.dispatch;
  cells = new Int32Array(message.shared as SharedArrayBuffer);
  thread = Atomics.add(cells, id, 1) + 1;
  if (id === 1 && thread === 2) {
    Atomics.store(cells, REPLACEMENT_DIED, 1);
    return die("dies before it loads");
  }
  real({ data: { ...message, shared: undefined } } as MessageEvent<ToWorker>);
};

scope.postMessage = (message, transfer = []) => {
  const serves = message.type === (dispatch === "streams" ? "loaded" : "ready");
  if (id === 2 && serves) {
    const held = () => {
      if (Atomics.load(cells!, GO) === 1) realPost(message, transfer);
      else setTimeout(held, 10);
    };
    return held();
  }
  realPost(message, transfer);
  if (id === 1 && thread === 1 && serves) die("dies after it serves");
};
