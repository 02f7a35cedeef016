/**
 * Lists as the IP-reputation service loads them: list flags, loading and its
 * errors, "why this score?", and reloads that keep the last good lists.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createLogger, Level } from "../lib/mod.ts";
import { explain } from "../lib/iprep/explain.ts";
import { type IpDatabase, loadDatabase, parseListSpec } from "../lib/iprep/lists.ts";
import { ListWatcher } from "../lib/iprep/reload.ts";
import { MetricsRegistry } from "../lib/metrics/registry.ts";
import { renderPrometheus } from "../lib/metrics/render.ts";
import { IpTable } from "../lib/iprep/table.ts";
import { waitFor } from "./_spop_client.ts";

/** A hang guard for a load on its thread (`deno test` type-checks each new Worker's module). */
const LOAD_MS = 30_000;
const DIR = mkdtempSync(path.join(tmpdir(), "spoa-lists-"));
after(() => rmSync(DIR, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const where = path.join(DIR, name);
  writeFileSync(where, text);
  return where;
}

test("parseListSpec() reads FILE and FILE=SCORE, with each kind's default score", () => {
  assert.deepEqual(parseListSpec("block", "drop.txt"), {
    kind: "block",
    file: "drop.txt",
    score: 0,
  });
  assert.deepEqual(parseListSpec("allow", "ok.txt"), { kind: "allow", file: "ok.txt", score: 100 });
  assert.deepEqual(parseListSpec("block", "tor.txt=20"), {
    kind: "block",
    file: "tor.txt",
    score: 20,
  });
  assert.deepEqual(parseListSpec("block", "a=b.txt"), { kind: "block", file: "a=b.txt", score: 0 });
  assert.throws(() => parseListSpec("block", "x.txt=101"), {
    message: 'Cannot use --block "x.txt=101": the score must be from 0 to 100',
  });
  assert.throws(() => parseListSpec("allow", "=5"), {
    message: 'Cannot use --allow "=5": no file',
  });
});

test("loadDatabase() names the file of a list that is missing, empty or a directory", () => {
  const missing = path.join(DIR, "missing.txt");
  assert.throws(
    () => loadDatabase([{ kind: "block", file: missing, score: 0 }], { generation: 1 }),
    {
      message: `${missing}: cannot read it: no such file`,
    },
  );
  const empty = file("empty.txt", "# nothing yet\n");
  assert.throws(() => loadDatabase([{ kind: "block", file: empty, score: 0 }], { generation: 1 }), {
    message: `${empty}: it holds no address (an empty list is refused)`,
  });
  const dir = path.join(DIR, "dir.txt");
  mkdirSync(dir);
  assert.throws(() => loadDatabase([{ kind: "allow", file: dir, score: 0 }], { generation: 1 }), {
    message: `${dir}: cannot read it: it is a directory`,
  });
});

test("loadDatabase() refuses a list that shrank by more than the bound", () => {
  const list = file("shrink.txt", "10.0.0.1\n10.0.0.2\n10.0.0.3\n");
  const spec = [{ kind: "block" as const, file: list, score: 0 }];
  const previous = new Map([[list, 10]]);
  assert.throws(() => loadDatabase(spec, { generation: 2, previous, maxShrink: 0.5 }), {
    message: `${list}: it shrank from 10 to 3 entries, more than the 50 % allowed (--max-shrink)`,
  });
  assert.equal(loadDatabase(spec, { generation: 2, previous, maxShrink: 0.7 }).lists[0]!.count, 3);
});

test("explain() lists every matching entry, marks the deciding ones and gives the score", () => {
  const block = file("why-block.txt", "# drop\n10.0.0.0/8\n10.1.0.0/16 ; SBL1\n");
  const tor = file("why-tor.txt", "10.1.2.3\n2001:db8::/32\n");
  const allow = file("why-allow.txt", "10.9.0.0/16\n");
  const db = loadDatabase([
    { kind: "block", file: block, score: 0 },
    { kind: "block", file: tor, score: 20 },
    { kind: "allow", file: allow, score: 90 },
  ], { generation: 3 });
  assert.deepEqual(explain(db, "10.1.2.3", 50), {
    ip: "10.1.2.3",
    score: 0,
    decided_by: "block",
    default_score: 50,
    generation: 3,
    matches: [
      { list: block, kind: "block", entry: "10.0.0.0/8", line: 2, score: 0, decides: false },
      { list: block, kind: "block", entry: "10.1.0.0/16", line: 3, score: 0, decides: true },
      { list: tor, kind: "block", entry: "10.1.2.3/32", line: 1, score: 20, decides: true },
    ],
    stale: [],
    errors: [],
  });
  const allowed = explain(db, "::ffff:10.9.8.7", 50)!;
  assert.equal(allowed.ip, "10.9.8.7");
  assert.equal(allowed.score, 90);
  assert.equal(allowed.decided_by, "allow");
  assert.equal(allowed.matches.length, 2);
  assert.deepEqual(explain(db, "2001:db8::1", 50)?.matches.map((m) => m.entry), ["2001:db8::/32"]);
  assert.deepEqual(explain(db, "192.0.2.1", "random"), {
    ip: "192.0.2.1",
    score: "random",
    decided_by: "default",
    default_score: "random",
    generation: 3,
    matches: [],
    stale: [],
    errors: [],
  });
  assert.equal(explain(db, "not-an-ip", 50), undefined);
  // The files are read again: a changed one is named stale, a missing one an error.
  writeFileSync(tor, "10.1.2.3\n2001:db8::/32\n192.0.2.0/24\n");
  rmSync(allow);
  const later = explain(db, "192.0.2.1", 50)!;
  assert.deepEqual(later.stale, [tor]);
  assert.deepEqual(later.errors, [`${allow}: cannot read it: no such file`]);
  assert.equal(later.score, 50, "the score is the table's: the change is not loaded");
  assert.deepEqual(later.matches.map((m) => m.entry), ["192.0.2.0/24"]);
  assert.equal(explain(undefined, "192.0.2.1", 50)?.score, 50);
});

test("ListWatcher reloads on a change and on request, and keeps the last good lists on failure", async () => {
  const list = file("watched.txt", "192.0.2.0/24\n");
  const lines: string[] = [];
  const log = createLogger({ level: Level.DEBUG, sink: (line) => lines.push(line) });
  const metrics = new MetricsRegistry();
  const published: IpDatabase[] = [];
  const abort = new AbortController();
  const watcher = new ListWatcher({
    specs: [{ kind: "block", file: list, score: 10 }],
    intervalMs: 20,
    maxShrink: 0.5,
    log,
    metrics,
    publish: (db) => published.push(db),
    signal: abort.signal,
  });
  const score = (db: IpDatabase, address: number) => new IpTable(db.table).v4(address);
  try {
    const first = await watcher.start();
    assert.equal(first.generation, 1);
    assert.equal(score(first, 0xc0000201), 10);
    // A change of the file is seen at the next poll.
    writeFileSync(list, "192.0.2.0/24\n198.51.100.0/24\n");
    await waitFor(() => published.length === 1, "a reload after the change", LOAD_MS);
    assert.equal(published[0]!.generation, 2);
    assert.equal(score(published[0]!, 0xc6336401), 10);
    // A bad line keeps generation 2, with an error naming the file and line.
    // (Another size: a rewrite within the file system's time granularity shows by its size.)
    writeFileSync(list, "192.0.2.0/24\n198.51.100.0/333\n");
    await waitFor(
      () => lines.some((l) => l.includes("not reloaded")),
      "the failed reload's log line",
      LOAD_MS,
    );
    assert.match(
      lines.find((l) => l.includes("not reloaded"))!,
      new RegExp(
        `generation 2 stays in use: .*watched\\.txt:2: "198\\.51\\.100\\.0/333" has a prefix`,
      ),
    );
    assert.equal(watcher.db?.generation, 2);
    // A request reloads even without a change; the file is good again.
    writeFileSync(list, "192.0.2.0/24\n198.51.100.0/24\n203.0.113.0/24\n");
    await watcher.reload("SIGHUP");
    await waitFor(() => published.length === 2, "the requested reload", LOAD_MS);
    assert.equal(published.at(-1)!.generation, 3);
    // Loads ran on a thread of their own.
    assert.ok(!lines.some((l) => l.includes("on this thread")), lines.join("\n"));
    const text = renderPrometheus([{ layout: metrics.layout(), values: metrics.values }]);
    assert.match(
      text,
      new RegExp(
        `spoa_iprep_list_entries\\{list="${
          list.replaceAll("/", "\\/").replaceAll(".", "\\.")
        }",kind="block"\\} 3`,
      ),
    );
    assert.match(text, /spoa_iprep_table_generation 3/);
    assert.match(text, /spoa_iprep_reloads_total\{outcome="success"\} 2/);
    assert.match(text, /spoa_iprep_reloads_total\{outcome="failure"\} 1/);
    assert.match(text, /spoa_iprep_last_reload_success 1/);
  } finally {
    abort.abort();
  }
});

test("ListWatcher refuses to start on a bad list, naming the file and line", async () => {
  const list = file("bad-start.txt", "10.0.0.0/8\n10.0.0.0/99\n");
  const watcher = new ListWatcher({
    specs: [{ kind: "block", file: list, score: 0 }],
    intervalMs: 0,
    maxShrink: 0.5,
    log: createLogger({ sink: () => {} }),
    publish: () => {},
  });
  await assert.rejects(watcher.start(), {
    message: `${list}:2: "10.0.0.0/99" has a prefix length outside 0..32`,
  });
});
