import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";

/**
 * The layer of every source file, lowest first. A file may import files of a
 * lower layer; it may import a file of its own layer only when that file is
 * in SAME_LAYER_TARGETS. A pattern's `*` matches within one path segment.
 * Add new files here.
 */
const LAYERS: readonly (readonly [pattern: string, layer: number])[] = [
  // L0: no imports of ours (but errors.ts)
  ["lib/spop/errors.ts", 0],
  ["lib/spop/_constants.ts", 0],
  ["lib/agent/log.ts", 0],
  ["lib/agent/conn.ts", 0],
  ["lib/version.ts", 1],
  // Data: lib/version.ts reads the version from it.
  ["package.json", 0],
  // L1: the codec, pure bytes (lib/spop/, behind lib/spop.ts)
  ["lib/spop/_*.ts", 1],
  ["lib/spop/framer.ts", 1],
  ["lib/spop.ts", 1],
  // Metrics in shared memory and their text format (lib/metrics/): pure, like the codec
  ["lib/metrics/registry.ts", 1],
  ["lib/metrics/render.ts", 2],
  ["lib/metrics/agent.ts", 2],
  // L2–L5, lib/agent/: what handlers touch (message, reply, context handles), the
  // handler API, the per-connection state machine with its NOTIFYs in flight, option checks
  ["lib/agent/session_options.ts", 2],
  ["lib/agent/message.ts", 2],
  ["lib/agent/reply.ts", 2],
  ["lib/agent/context.ts", 2],
  ["lib/agent/handler.ts", 3],
  ["lib/agent/_inflight.ts", 4],
  ["lib/agent/_handshake.ts", 4],
  ["lib/agent/session.ts", 4],
  ["lib/agent/options.ts", 5],
  // L6–L7: runtime adapters (the only place for Deno.* / Bun.*)
  ["lib/runtime/_unix.ts", 6],
  ["lib/runtime/_buffers.ts", 6],
  ["lib/runtime/deno.ts", 6],
  ["lib/runtime/bun.ts", 6],
  ["lib/runtime/node.ts", 6],
  ["lib/runtime/_http.ts", 6],
  ["lib/runtime/files.ts", 6],
  ["lib/runtime/http_node.ts", 6],
  ["lib/runtime/http_deno.ts", 6],
  ["lib/runtime/http.ts", 7],
  ["lib/runtime/mod.ts", 7],
  // L8–L9, lib/serve/: the server, agent modules, the worker pool and its workers
  ["lib/serve/server.ts", 8],
  ["lib/serve/module.ts", 8],
  ["lib/serve/pool_protocol.ts", 8],
  ["lib/serve/metrics.ts", 8],
  ["lib/serve/setup.ts", 8],
  ["lib/serve/pool.ts", 9],
  ["lib/serve/worker.ts", 9],
  ["lib/serve/metrics_worker.ts", 9],
  ["lib/serve/mod.ts", 10],
  // L11: the public API
  ["lib/mod.ts", 11],
  // L12–L18: services built on the public API (lib/iprep/: list formats, the lookup
  // table, loading and reloading lists, "why this score?", the service and its module)
  ["lib/iprep/_addr.ts", 12],
  ["lib/iprep/entries.ts", 12],
  ["lib/iprep/formats.ts", 13],
  ["lib/iprep/build.ts", 13],
  ["lib/iprep/table.ts", 14],
  ["lib/iprep/lists.ts", 15],
  ["lib/iprep/explain.ts", 16],
  ["lib/iprep/load_worker.ts", 16],
  ["lib/iprep/reload.ts", 17],
  ["lib/iprep/mod.ts", 17],
  ["lib/iprep/agent.ts", 18],
  // L19–L20: the command line (its usage text, flags, and `spoa lookup`)
  ["lib/cli_usage.ts", 0],
  ["lib/cli.ts", 19],
  ["lib/cli_lookup.ts", 20],
  // L21: the entry point, the only place that exits
  ["main.ts", 21],
];

/** Files that any file of the same layer may import. */
const SAME_LAYER_TARGETS: readonly string[] = ["lib/*/_*.ts", "lib/spop/errors.ts"];

/**
 * Same-layer imports allowed one by one, as "importer -> imported".
 * `lib/spop.ts` is the codec's facade and re-exports `FrameScanner`.
 */
const ALLOWED_EDGES: readonly string[] = [
  "lib/spop.ts -> lib/spop/framer.ts",
  // What agent modules may export beside their default: the loader and the endpoint read it.
  "lib/serve/module.ts -> lib/serve/setup.ts",
  "lib/serve/metrics.ts -> lib/serve/setup.ts",
];

/** Files that import a computed specifier on purpose: the agent-module loader. */
const DYNAMIC_IMPORTERS: readonly string[] = ["lib/serve/module.ts"];

/** Files in these layers must not touch runtime globals. */
const MAX_PORTABLE_LAYER = 5;

// ---------------------------------------------------------------------------

const ROOT = new URL("../", import.meta.url);
const SOURCE = /\.[cm]?[jt]sx?$/;
const COMPUTED = "computed:";

function globToRegExp(pattern: string): RegExp {
  const body = pattern.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replaceAll("*", "[^/]*");
  return new RegExp(`^${body}$`);
}

const LAYER_RULES = LAYERS.map(([pattern, layer]) => [globToRegExp(pattern), layer] as const);
const SAME_LAYER_RULES = SAME_LAYER_TARGETS.map(globToRegExp);

function layerOf(path: string): number | undefined {
  return LAYER_RULES.find(([re]) => re.test(path))?.[1];
}

/**
 * Blanks comments (keeping line breaks). With `blankStrings`, also blanks the
 * contents of string and template literals. Regex literals are recognised
 * well enough that quotes in them do not start strings.
 */
function stripComments(src: string, blankStrings = false): string {
  let out = "";
  let i = 0;
  // Brace depth inside each open `${ ... }` of a template literal.
  const templates: number[] = [];
  let prev = ""; // the last significant code character
  let word = ""; // the identifier ending at `prev`, if any
  const blank = (s: string) => s.replace(/[^\n]/g, " ");
  /** Blanks a literal's text between its first char and its `tail` closing chars. */
  const literal = (text: string, tail: number) =>
    blankStrings
      ? text[0] + blank(text.slice(1, text.length - tail)) + text.slice(text.length - tail)
      : text;

  const template = (from: number): number => {
    // Scans template text from `from` up to its closing backtick or `${`.
    let j = from;
    while (j < src.length) {
      if (src[j] === "\\") j += 2;
      else if (src[j] === "`") return j + 1;
      else if (src[j] === "$" && src[j + 1] === "{") {
        templates.push(0);
        return j + 2;
      } else j++;
    }
    return j;
  };

  while (i < src.length) {
    const c = src[i]!;
    const n = src[i + 1];
    let j: number;
    if (c === "/" && n === "/") {
      j = src.indexOf("\n", i);
      if (j < 0) j = src.length;
      out += blank(src.slice(i, j));
    } else if (c === "/" && n === "*") {
      j = src.indexOf("*/", i + 2);
      j = j < 0 ? src.length : j + 2;
      out += blank(src.slice(i, j));
    } else if (c === '"' || c === "'") {
      j = i + 1;
      while (j < src.length && src[j] !== c && src[j] !== "\n") j += src[j] === "\\" ? 2 : 1;
      const closed = j < src.length && src[j] === c;
      j = Math.min(j + 1, src.length);
      out += literal(src.slice(i, j), closed ? 1 : 0);
      prev = c;
    } else if (c === "`" || (c === "}" && templates.at(-1) === 0)) {
      if (c === "}") templates.pop();
      j = template(i + 1);
      const text = src.slice(i, j);
      const open = text.length > 2 && text.endsWith("${");
      out += literal(text, open ? 2 : text.length > 1 && text.endsWith("`") ? 1 : 0);
      prev = open ? "{" : "`";
    } else if (
      c === "/" && (prev === "" || "(,=:[!&|?{};+-*%<>~^".includes(prev) ||
        ["return", "typeof", "case", "do", "else", "in", "of", "void", "yield", "await"]
          .includes(word))
    ) {
      // A regex literal: up to the closing slash outside a character class.
      j = i + 1;
      let inClass = false;
      while (j < src.length && src[j] !== "\n" && (inClass || src[j] !== "/")) {
        if (src[j] === "\\") j++;
        else if (src[j] === "[") inClass = true;
        else if (src[j] === "]") inClass = false;
        j++;
      }
      j = Math.min(j + 1, src.length);
      out += src.slice(i, j);
      prev = "/";
    } else {
      j = i + 1;
      if (templates.length > 0 && c === "{") templates[templates.length - 1]!++;
      if (templates.length > 0 && c === "}") templates[templates.length - 1]!--;
      out += c;
      if (!/\s/.test(c)) {
        word = /[\w$]/.test(c) ? (/[\w$]/.test(prev) ? word + c : c) : "";
        prev = c;
      }
    }
    i = j;
  }
  return out;
}

/** The module specifiers a source file imports or re-exports. */
function importsOf(src: string): string[] {
  const code = stripComments(src);
  const specifiers: string[] = [];
  const patterns = [
    /\b(?:import|export)\s+(?:type\s+)?[\w$*{},\s]*?\bfrom\s*(["'])([^"'\n]*)\1/g,
    /\bimport\s*(["'])([^"'\n]*)\1/g,
    /\bimport\s*\(\s*(["'])([^"'\n]*)\1/g,
    /\brequire\s*\(\s*(["'])([^"'\n]*)\1/g,
  ];
  for (const re of patterns) for (const m of code.matchAll(re)) specifiers.push(m[2]!);
  // A computed dynamic import cannot be checked, so it is refused.
  for (const m of code.matchAll(/\bimport\s*\(\s*(?!["'\s])([^)\n]*)/g)) {
    specifiers.push(`${COMPUTED}${m[1]}`);
  }
  return specifiers;
}

/** `spec` resolved against the directory of `from`, both relative to the root. */
function resolve(from: string, spec: string): string {
  const parts = from.split("/").slice(0, -1);
  for (const part of spec.split("/")) {
    if (part === "..") parts.pop();
    else if (part !== "." && part !== "") parts.push(part);
  }
  return parts.join("/");
}

interface Report {
  unlisted: string[];
  imports: string[];
  bare: string[];
  runtime: string[];
}

/** Checks a set of files (path relative to the root, source text). */
function checkLayering(files: ReadonlyMap<string, string>): Report {
  const report: Report = { unlisted: [], imports: [], bare: [], runtime: [] };
  for (const [path, src] of files) {
    const layer = layerOf(path);
    if (layer === undefined) {
      report.unlisted.push(`${path}: add it to the layer table`);
      continue;
    }
    for (const spec of importsOf(src)) {
      if (spec.startsWith("node:")) continue;
      if (spec.startsWith(COMPUTED)) {
        if (DYNAMIC_IMPORTERS.includes(path)) continue;
        report.imports.push(`${path}: import(${spec.slice(COMPUTED.length)}) is not a literal`);
        continue;
      }
      if (!spec.startsWith("./") && !spec.startsWith("../")) {
        report.bare.push(`${path}: bare specifier "${spec}"`);
        continue;
      }
      const target = resolve(path, spec);
      const targetLayer = layerOf(target);
      if (targetLayer === undefined) {
        report.imports.push(`${path} -> ${target}: not in the layer table`);
      } else if (!files.has(target)) {
        report.imports.push(`${path} -> ${target}: no such file`);
      } else if (targetLayer > layer) {
        report.imports.push(`${path} (L${layer}) -> ${target} (L${targetLayer}): upward import`);
      } else if (
        targetLayer === layer && !SAME_LAYER_RULES.some((re) => re.test(target)) &&
        !ALLOWED_EDGES.includes(`${path} -> ${target}`)
      ) {
        report.imports.push(`${path} -> ${target}: same-layer import of a non-helper (L${layer})`);
      }
    }
    if (layer <= MAX_PORTABLE_LAYER) {
      const lines = stripComments(src, true).split("\n");
      lines.forEach((line, i) => {
        if (/\b(?:Deno|Bun)\s*(?:\?\.|\.|\[)/.test(line)) {
          report.runtime.push(`${path}:${i + 1}: ${line.trim()}`);
        }
      });
    }
  }
  return report;
}

function readSources(): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(new URL(dir, ROOT), { withFileTypes: true })) {
      const path = `${dir}${entry.name}`;
      if (entry.isDirectory()) walk(`${path}/`);
      else if (SOURCE.test(entry.name)) files.set(path, readFileSync(new URL(path, ROOT), "utf8"));
    }
  };
  walk("lib/");
  // package.json is data; it imports nothing.
  for (const path of ["main.ts", "package.json"]) {
    if (existsSync(new URL(path, ROOT))) files.set(path, readFileSync(new URL(path, ROOT), "utf8"));
  }
  return files;
}

const sources = readSources();
const real = checkLayering(sources);

test("layering reads the codec's files", () => {
  for (
    const path of ["lib/spop.ts", "lib/spop/errors.ts", "lib/spop/_writer.ts", "lib/spop/framer.ts"]
  ) {
    assert.ok(sources.has(path), path);
  }
  assert.ok(importsOf(sources.get("lib/spop.ts")!).includes("./spop/framer.ts"));
});

test("layering lists every file under lib/ and main.ts in the layer table", () => {
  assert.deepEqual(real.unlisted, []);
});

test("layering allows imports only downward or of same-layer helpers", () => {
  assert.deepEqual(real.imports, []);
});

test("layering allows only relative and node: import specifiers", () => {
  assert.deepEqual(real.bare, []);
});

test("layering keeps Deno. and Bun. out of layers 0 to 5", () => {
  assert.deepEqual(real.runtime, []);
});

test("layering has no stale same-layer exceptions", () => {
  for (const edge of ALLOWED_EDGES) {
    const [from, to] = edge.split(" -> ") as [string, string];
    const src = sources.get(from);
    const used = src !== undefined && importsOf(src).some((spec) => resolve(from, spec) === to);
    assert.ok(used, `${edge} is no longer imported; remove it from ALLOWED_EDGES`);
  }
});

test("checkLayering() reports each kind of violation", () => {
  const files = new Map<string, string>([
    ["lib/spop/errors.ts", `import { x } from "./_varint.ts";\n`],
    ["lib/spop/_varint.ts", `import { SpopError } from "./errors.ts";\nimport "./_ip.ts";\n`],
    ["lib/spop/_ip.ts", `export const a = 1;\n`],
    ["lib/spop/framer.ts", `import type { A } from "../spop.ts";\n`],
    ["lib/spop.ts", `export { B } from "./spop/framer.ts";\nexport * from "./spop/_ip.ts";\n`],
    [
      "lib/agent/session.ts",
      [
        `import { c } from "../serve/server.ts";`,
        `import { d } from "../spop.ts";`,
        `import { e } from "jsr:@std/bytes";`,
        `import { f } from "lodash";`,
        `import { g } from "node:net";`,
        `const m = await import("./_nope.ts");`,
        `const l = await import('./log.ts');`,
        `const n = await import(name);`,
        `const s = Deno.args;`,
        `const t = globalThis.Bun?.version;`,
        "",
      ].join("\n"),
    ],
    [
      "lib/serve/server.ts",
      `import {\n  h,\n  type I,\n} from "../agent/session.ts";\nconst p = Deno.pid;\n`,
    ],
    ["lib/other.ts", `export {};\n`],
    ["lib/session/x/deep.ts", `export {};\n`],
  ]);
  assert.deepEqual(checkLayering(files), {
    unlisted: [
      "lib/other.ts: add it to the layer table",
      "lib/session/x/deep.ts: add it to the layer table",
    ],
    imports: [
      "lib/spop/errors.ts (L0) -> lib/spop/_varint.ts (L1): upward import",
      "lib/spop/framer.ts -> lib/spop.ts: same-layer import of a non-helper (L1)",
      "lib/agent/session.ts (L4) -> lib/serve/server.ts (L8): upward import",
      "lib/agent/session.ts -> lib/agent/_nope.ts: not in the layer table",
      "lib/agent/session.ts -> lib/agent/log.ts: no such file",
      "lib/agent/session.ts: import(name) is not a literal",
    ],
    bare: [
      'lib/agent/session.ts: bare specifier "jsr:@std/bytes"',
      'lib/agent/session.ts: bare specifier "lodash"',
    ],
    runtime: [
      "lib/agent/session.ts:9: const s = Deno.args;",
      "lib/agent/session.ts:10: const t = globalThis.Bun?.version;",
    ],
  });
});

test("stripComments() blanks comments but not code, strings or regex literals", () => {
  const src = [
    `// Deno.exit() in a line comment`,
    `/** import { a } from "./up.ts"; */ const u = "http://x"; // tail`,
    "const t = `a ${`b ${1}`} // not a comment`;",
    `const r = /["'/]/g; const d = 4 / 2 / 1; // Bun.x`,
    `const s = "/* not a comment */";`,
  ].join("\n");
  const code = stripComments(src);
  assert.equal(code.split("\n").length, 5);
  assert.ok(!code.includes("Deno") && !code.includes("Bun") && !code.includes("./up.ts"));
  assert.ok(code.includes(`const u = "http://x";`));
  assert.ok(code.includes("`a ${`b ${1}`} // not a comment`"));
  assert.ok(code.includes(`const r = /["'/]/g; const d = 4 / 2 / 1;`));
  assert.ok(code.includes(`"/* not a comment */"`));
  assert.deepEqual(importsOf(src), []);
  assert.equal(
    stripComments(`x("Deno.a", 'Bun.b', \`Deno.\${Bun.c}\`)`, true),
    `x("      ", '     ', \`     \${Bun.c}\`)`,
  );
});
