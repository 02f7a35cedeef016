/**
 * The metrics thread of an agent served on one thread: it listens for
 * `/metrics` and `/health` and reads the serving thread's counters from
 * shared memory (see `startMetricsThread` in `metrics.ts`).
 *
 * @module
 */

import { errorText } from "../agent/log.ts";
import type { MetricsSource } from "../metrics/render.ts";
import { agentModuleRoutes } from "./module.ts";
import {
  type FromMetricsThread,
  type MetricsEndpoint,
  startMetricsEndpoint,
  type ToMetricsThread,
} from "./metrics.ts";

interface Scope {
  onmessage: ((event: MessageEvent<ToMetricsThread>) => void) | null;
  postMessage(message: FromMetricsThread): void;
}

const scope = globalThis as unknown as Scope;
let source: MetricsSource | undefined;
/** The agent module's latest shared value, for its routes. */
let shared: unknown;
let endpoint: Promise<MetricsEndpoint | undefined> | undefined;

scope.onmessage = (event) => {
  const message = event.data;
  switch (message.type) {
    case "start": {
      const values = new Float64Array(message.buffer);
      const state = new Int32Array(message.state);
      const own = { layout: message.layout, values };
      source = own;
      const module = message.module;
      shared = module?.shared;
      endpoint =
        (module === undefined ? Promise.resolve({}) : agentModuleRoutes(module.url, module.label))
          .then((routes) =>
            startMetricsEndpoint(
              message.hostname,
              message.port,
              {
                sources: () => [own],
                workersUp: () => 1,
                workers: 0,
                started: () => 0,
                draining: () => Atomics.load(state, 0) === 1,
                connections: () => values[message.openSlot],
                startTime: message.startTime,
                routes,
                shared: () => shared,
              },
              undefined,
              (text) => scope.postMessage({ type: "error", message: text }),
            )
          ).then((server) => {
            scope.postMessage({ type: "listening", hostname: server.hostname, port: server.port });
            return server;
          }, (err) => {
            scope.postMessage({ type: "failed", message: errorText(err) });
            return undefined;
          });
      break;
    }
    case "shared":
      shared = message.value;
      break;
    case "layout":
      if (source !== undefined) source.layout = message.layout;
      break;
    case "stop":
      void (endpoint ?? Promise.resolve(undefined)).then(async (server) => {
        await server?.close();
        scope.postMessage({ type: "stopped" });
      });
      break;
  }
};
