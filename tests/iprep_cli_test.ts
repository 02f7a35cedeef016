/**
 * The IP-reputation lists on the command line: `spoa lookup`, the list flags
 * and their errors, and the scores a running `spoa` gives. Runs against
 * `main.ts` and against the compiled binaries (`SPOA_AGENT_BIN`).
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseCli, UsageError } from "../lib/cli.ts";
import { parseLookup } from "../lib/cli_lookup.ts";
import { FrameType } from "../lib/spop.ts";
import { runMain, startAgent } from "./_process.ts";
import { checkClientIp, SpopClient } from "./_spop_client.ts";

const DIR = mkdtempSync(path.join(tmpdir(), "spoa-iprep-cli-"));
after(() => rmSync(DIR, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const where = path.join(DIR, name);
  writeFileSync(where, text);
  return where;
}

const DROP = file("drop.txt", "; Spamhaus DROP\n192.0.2.0/24 ; SBL1\n2001:db8::/32 ; SBL2\n");
const PARTNERS = file("partners.txt", "192.0.2.10\n");

test("parseCli() passes the list flags on to the built-in service, from flags or SPOA_*", () => {
  const options = parseCli(["--block", `${DROP}=5`, "--allow", PARTNERS, "--default-score", "70"]);
  assert.deepEqual(options.serviceArgs, [
    "--block",
    `${DROP}=5`,
    "--allow",
    PARTNERS,
    "--default-score",
    "70",
  ]);
  const env = parseCli([], { SPOA_BLOCK: "a.txt, b.txt=20", SPOA_RELOAD_INTERVAL: "0" });
  assert.deepEqual(env.serviceArgs, [
    "--block",
    "a.txt",
    "--block",
    "b.txt=20",
    "--reload-interval",
    "0",
  ]);
});

test("parseCli() refuses bad list flags, and list flags with --agent", () => {
  const cases: [string[], string][] = [
    [["--default-score", "101"], 'Invalid value for --default-score: "101"'],
    [["--default-score", "low"], 'Invalid value for --default-score: "low"'],
    [["--block", "x.txt=500"], 'Cannot use --block "x.txt=500": the score must be from 0 to 100'],
    [["--reload-interval", "-1"], "Option --reload-interval needs a value"],
    [["--max-shrink", "101"], 'Invalid value for --max-shrink: "101"'],
    [["--agent", "a.ts", "--block", "x.txt"], "Cannot use --block with --agent"],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseCli(args), (err: unknown) => {
      assert.ok(err instanceof UsageError);
      assert.ok(err.message.startsWith(message), `${args.join(" ")}: ${err.message}`);
      return true;
    });
  }
  assert.throws(() => parseLookup([]), /spoa lookup needs one address/);
  assert.throws(() => parseLookup(["1.2.3.4", "5.6.7.8"]), /spoa lookup needs one address/);
});

test("spoa lookup prints why an address gets its score, as JSON", async () => {
  const exit = await runMain(["lookup", "192.0.2.10", "--block", `${DROP}=5`, "--allow", PARTNERS]);
  assert.equal(exit.code, 0, exit.stderr);
  assert.deepEqual(JSON.parse(exit.stdout), {
    ip: "192.0.2.10",
    score: 100,
    decided_by: "allow",
    default_score: 50,
    generation: 1,
    matches: [
      { list: DROP, kind: "block", entry: "192.0.2.0/24", line: 2, score: 5, decides: true },
      { list: PARTNERS, kind: "allow", entry: "192.0.2.10/32", line: 1, score: 100, decides: true },
    ],
    stale: [],
    errors: [],
  });
  const v6 = await runMain(["lookup", "2001:db8::5", "--block", DROP, "--default-score", "random"]);
  assert.equal(v6.code, 0, v6.stderr);
  assert.equal(JSON.parse(v6.stdout).score, 0);
  const unlisted = await runMain(["lookup", "198.51.100.1", "--block", DROP]);
  assert.equal(JSON.parse(unlisted.stdout).decided_by, "default");
  assert.equal(JSON.parse(unlisted.stdout).score, 50);
});

test("spoa lookup exits 2 for a bad address or no address, and 1 for a list it cannot read", async () => {
  const bad = await runMain(["lookup", "192.0.2", "--block", DROP]);
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr, 'spoa: Cannot look up "192.0.2": not an IPv4 or IPv6 address\n');
  const none = await runMain(["lookup"]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /^spoa: spoa lookup needs one address/);
  const broken = file("broken.txt", "10.0.0.0/8\n10.0.0.0/88\n");
  const unreadable = await runMain(["lookup", "10.0.0.1", "--block", broken]);
  assert.equal(unreadable.code, 1);
  assert.equal(
    unreadable.stderr,
    `spoa: ${broken}:2: "10.0.0.0/88" has a prefix length outside 0..32\n`,
  );
});

test("spoa exits 1 at start, naming the file and line, when a list cannot be read", async () => {
  const broken = file("broken-start.txt", "10.0.0.0/8\nexample.org\n");
  const exit = await runMain(["-p", "0", "-a", "127.0.0.1", "-n", "1", "--block", broken]);
  assert.equal(exit.code, 1);
  assert.match(
    exit.stderr,
    new RegExp(
      `its setup failed: ${
        broken.replaceAll(".", "\\.")
      }:2: "example\\.org" is not an IPv4 or IPv6 address or CIDR`,
    ),
  );
});

test("spoa --block and --allow score NOTIFYs from the lists, with -n 1 and -n 2", async () => {
  for (const workers of ["1", "2"]) {
    const agent = await startAgent([
      "-n",
      workers,
      "--block",
      `${DROP}=5`,
      "--allow",
      PARTNERS,
      "--default-score",
      "60",
    ]);
    const client = await SpopClient.connect(agent.port);
    try {
      await client.hello();
      const expected: [string, number][] = [
        ["192.0.2.1", 5],
        ["192.0.2.10", 100],
        ["::ffff:192.0.2.1", 5],
        ["2001:db8:1::1", 5],
        ["198.51.100.1", 60],
        ["2001:db9::1", 60],
      ];
      let id = 1;
      for (const [ip, score] of expected) {
        const ack = await client.notify(id, id++, [checkClientIp(ip)]);
        assert.equal(ack.type, FrameType.ACK);
        assert.equal(ack.actions?.[0]?.value, score, `${ip} with -n ${workers}`);
      }
    } finally {
      await client.close();
      await agent.stop();
    }
  }
});
