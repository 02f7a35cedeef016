/**
 * The public surface of `lib/mod.ts` is what agent authors should touch: no
 * internal plumbing, no writable fields, and every type its signatures name
 * is exported (checked by `deno doc --lint lib/mod.ts` in the static checks).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as spoa from "../lib/mod.ts";

/** The own property names of a class's prototype, minus the constructor. */
function members(cls: { prototype: object }): string[] {
  return Object.getOwnPropertyNames(cls.prototype).filter((n) => n !== "constructor").sort();
}

test("lib/mod.ts exports the handler API, serve() and the codec's names, nothing internal", () => {
  assert.deepEqual(Object.keys(spoa).sort(), [
    "Agent",
    "AgentModuleError",
    "Arg",
    "Context",
    "DEFAULT_SESSION_OPTIONS",
    "DataType",
    "Level",
    "Message",
    "Reply",
    "SpopError",
    "Status",
    "VarScope",
    "createLogger",
    "serve",
    "statusMessage",
  ]);
});

test("the handler classes expose only what handlers use", () => {
  assert.deepEqual(members(spoa.Agent), ["handler", "messages", "on"]);
  assert.deepEqual(members(spoa.Message), [
    "arg",
    "bigint",
    "binary",
    "boolean",
    "int",
    "ip",
    "ipBytes",
    "isNull",
    "name",
    "size",
    "string",
  ]);
  assert.deepEqual(members(spoa.Arg), [
    "byteLength",
    "bytes",
    "copyTo",
    "name",
    "text",
    "type",
    "value",
  ]);
  assert.deepEqual(members(spoa.Reply), ["setVar", "size", "unsetVar"]);
  assert.deepEqual(members(spoa.Context), [
    "capabilities",
    "engineId",
    "frameId",
    "log",
    "remote",
    "signal",
    "streamId",
  ]);
});

test("an argument's fields cannot be written", () => {
  for (const field of ["type", "name", "byteLength"]) {
    const descriptor = Object.getOwnPropertyDescriptor(spoa.Arg.prototype, field);
    assert.equal(typeof descriptor?.get, "function", field);
    assert.equal(descriptor?.set, undefined, `${field} has no setter`);
  }
  assert.equal(Object.isFrozen(spoa.DEFAULT_SESSION_OPTIONS), true);
});
