/**
 * The thread that reads the lists and builds the table (see `reload.ts`),
 * so that a reload of a million entries never holds up SPOP. It answers one
 * request and is then ended.
 *
 * @module
 */

import { type IpDatabase, type ListSpec, loadDatabase } from "./lists.ts";

/** A load request. */
export interface LoadRequest {
  specs: ListSpec[];
  generation: number;
  previous: [string, number][];
  maxShrink: number;
}

/** Its answer. */
export type LoadAnswer = { ok: true; db: IpDatabase } | { ok: false; message: string };

interface Scope {
  onmessage: ((event: MessageEvent<LoadRequest>) => void) | null;
  postMessage(message: LoadAnswer): void;
}

const scope = globalThis as unknown as Scope;

scope.onmessage = (event) => {
  const { specs, generation, previous, maxShrink } = event.data;
  let answer: LoadAnswer;
  try {
    answer = {
      ok: true,
      db: loadDatabase(specs, { generation, previous: new Map(previous), maxShrink }),
    };
  } catch (err) {
    answer = { ok: false, message: err instanceof Error ? err.message : String(err) };
  }
  scope.postMessage(answer);
};
