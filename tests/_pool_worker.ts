/**
 * What the test workers of `pool_test.ts` share: they run the real worker
 * (`lib/serve/worker.ts`) and wrap its message handler and its
 * `postMessage`, to crash or hold back on purpose.
 *
 * @module
 */

import "../lib/serve/worker.ts";
import type { FromWorker, ToWorker } from "../lib/serve/pool_protocol.ts";

/** The worker's global scope, as the wrappers use it. */
export interface WorkerScope {
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
  postMessage(message: FromWorker, transfer?: Transferable[]): void;
}

/** The scope, and the real worker's handler and `postMessage` (to call through). */
export function realWorker(): {
  scope: WorkerScope;
  real: (event: MessageEvent<ToWorker>) => void;
  realPost: (message: FromWorker, transfer?: Transferable[]) => void;
} {
  const scope = globalThis as unknown as WorkerScope;
  const handler = scope.onmessage;
  if (handler === null) throw new Error("lib/serve/worker.ts did not set onmessage");
  const post = scope.postMessage;
  return {
    scope,
    real: (event) => handler.call(globalThis, event),
    realPost: (message, transfer = []) => post.call(globalThis, message, transfer),
  };
}
