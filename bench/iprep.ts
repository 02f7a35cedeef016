/**
 * The IP-reputation lists at scale (issue 16's targets): synthetic lists of
 * `--v4` IPv4 CIDRs and `--v6` IPv6 CIDRs (`bench/_lists.ts`), for each
 * runtime:
 *
 * - in a process of its own (`--child`): the time to read both files and
 *   build the table (`loadDatabase`, median of `--repeats`), the resident
 *   memory it adds once garbage is collected, and the time of one lookup
 *   (IPv4 and IPv6 addresses at random, in batches of 1,000: the median and
 *   99th percentile over the batches of the mean time per lookup);
 * - the agent: resident memory of `spoa -n N` with the lists against `spoa -n
 *   N` without (the random service), one second after it listens (median of
 *   `--repeats` starts), for N = 1 and 2: the lists live in shared memory, so
 *   a second worker adds no copy of them; and the "lists loaded in" time it
 *   logs (on its loading thread).
 *
 * ```sh
 * node_modules/deno/deno run -A bench/iprep.ts [--runtime deno,bun] [--v4 1000000]
 *   [--v6 100000] [--repeats 3]
 * ```
 *
 * Prints markdown tables on stdout; progress on stderr.
 *
 * @module
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import process from "node:process";
import type { ChildResult } from "./_iprep_child.ts";
import {
  BUN,
  DENO,
  exitUsage,
  fmt,
  killLive,
  list,
  median,
  parseFlags,
  ROOT,
  rssBytes,
  type Runtime,
  sleep,
  startServer,
  stopServer,
} from "./_bench.ts";
import { writeLists } from "./_lists.ts";

const USAGE = `Usage: iprep.ts [--runtime deno,bun] [--v4 1000000] [--v6 100000] [--repeats 3]`;

async function runChild(runtime: Runtime, files: string[], repeats: number): Promise<ChildResult> {
  const self = "bench/_iprep_child.ts";
  const args = [files.join(","), String(repeats)];
  const cmd = runtime === "deno"
    ? [DENO, "run", "-A", "--v8-flags=--expose-gc", self, ...args]
    : [BUN, self, ...args];
  const out = await new Deno.Command(cmd[0]!, { args: cmd.slice(1), cwd: ROOT, stderr: "inherit" })
    .output();
  if (!out.success) throw new Error(`${runtime} child failed`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/** RSS of the agent one second after it listens, and the time it logged for the lists. */
async function agentRss(
  runtime: Runtime,
  workers: number,
  files: string[],
): Promise<{ rss: number; loadedMs: number | undefined }> {
  const lists = files.flatMap((file) => ["--block", file]);
  const args = ["-p", "0", "-a", "127.0.0.1", "-n", String(workers), ...lists];
  const reads = ["lib", ...new Set(files.map((file) => path.dirname(file)))].join(",");
  const cmd: [string, string[]] = runtime === "deno"
    ? [DENO, ["run", "--allow-net", `--allow-read=${reads}`, "main.ts", ...args]]
    : [BUN, ["main.ts", ...args]];
  const server = await startServer(cmd);
  try {
    await sleep(1000);
    const loaded = /lists loaded, generation 1 in (\d+) ms/.exec(server.log());
    return { rss: rssBytes(server.pid), loadedMs: loaded ? Number(loaded[1]) : undefined };
  } finally {
    await stopServer(server);
  }
}

const argv = process.argv.slice(2);
{
  const values = parseFlags("iprep.ts", USAGE, {
    args: argv,
    allowPositionals: false,
    options: {
      runtime: { type: "string", default: "deno,bun" },
      v4: { type: "string", default: "1000000" },
      v6: { type: "string", default: "100000" },
      repeats: { type: "string", default: "3" },
      help: { type: "boolean", default: false },
    },
  });
  const repeats = Number(values.repeats);
  if (!(repeats >= 1)) exitUsage("iprep.ts", USAGE, "--repeats must be at least 1");
  const runtimes = list(values.runtime) as Runtime[];
  const dir = mkdtempSync(path.join(tmpdir(), "spoa-bench-lists-"));
  try {
    console.error(`writing ${values.v4} IPv4 and ${values.v6} IPv6 CIDRs to ${dir}`);
    const files = writeLists(dir, Number(values.v4), Number(values.v6));
    const rows: string[] = [];
    const agentRows: string[] = [];
    for (const runtime of runtimes) {
      console.error(`${runtime}: loading in a process of its own`);
      const r = await runChild(runtime, files, repeats);
      rows.push(
        `| ${runtime} | ${fmt(median(r.loadMs))} | ${fmt(r.rssAddedBytes / 2 ** 20, 1)} | ${
          fmt(r.v4Ns.p50, 1)
        } | ${fmt(r.v4Ns.p99, 1)} | ${fmt(r.v6Ns.p50, 1)} | ${fmt(r.v6Ns.p99, 1)} | ${
          r.intervals.join(" + ")
        } |`,
      );
      for (const workers of [1, 2]) {
        const without: number[] = [];
        const withLists: number[] = [];
        const loaded: number[] = [];
        for (let i = 0; i < repeats; i++) {
          console.error(`${runtime} -n ${workers}: start ${i + 1} of ${repeats}`);
          without.push((await agentRss(runtime, workers, [])).rss);
          const got = await agentRss(runtime, workers, files);
          withLists.push(got.rss);
          if (got.loadedMs !== undefined) loaded.push(got.loadedMs);
        }
        agentRows.push(
          `| ${runtime} | ${workers} | ${fmt(median(without) / 2 ** 20, 1)} | ${
            fmt(median(withLists) / 2 ** 20, 1)
          } | ${fmt((median(withLists) - median(without)) / 2 ** 20, 1)} | ${
            fmt(median(loaded))
          } |`,
        );
      }
    }
    console.log(
      `${values.v4} IPv4 + ${values.v6} IPv6 CIDRs, ${repeats} repeats\n\n` +
        "| runtime | load ms | RSS added MiB | IPv4 lookup ns p50 | p99 | IPv6 lookup ns p50 | p99 | intervals (v4 + v6) |\n" +
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n" + rows.join("\n") +
        "\n\n| runtime | -n | RSS without lists MiB | with lists MiB | added MiB | lists loaded in ms (agent log) |\n" +
        "| --- | ---: | ---: | ---: | ---: | ---: |\n" + agentRows.join("\n"),
    );
  } finally {
    killLive();
    rmSync(dir, { recursive: true, force: true });
  }
}
