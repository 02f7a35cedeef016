/**
 * The IP-reputation service's block and allow lists through real HAProxy
 * (every build of `SPOA_HAPROXY_BINS`): `spoa --block FILE[=SCORE] --allow
 * FILE[=SCORE] --default-score N` as a process under the runtime running the
 * tests, with 1 and 2 workers, and `serve(lib/iprep/agent.ts, { args })` in
 * this process. HAProxy sends `src` in `check-client-ip` on every request,
 * denies scores below 20 with 403 and returns `sess.iprep.ip_score` in an
 * `x-ip-score` header either way, so every test asserts exact scores. Clients
 * connect from loopback addresses (127.0.0.1, 127.0.0.2) the lists name.
 * Each test starts its own agent and HAProxy and stops both by PID.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createLogger, serve } from "../lib/mod.ts";
import { startAgent } from "./_process.ts";
import {
  get,
  type Haproxy,
  type HaproxyBuild,
  haproxyBuilds,
  type Response,
  sleep,
  startHaproxy,
  urlOf,
} from "./_haproxy.ts";

const DIR = mkdtempSync(path.join(tmpdir(), "spoa-iprep-interop-"));
after(() => rmSync(DIR, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const at = path.join(DIR, name);
  writeFileSync(at, text);
  return at;
};

/** The lists: all of loopback, 127.0.0.1 alone, and documentation addresses only. */
const LOOPBACK = file("loopback.txt", "# every test client\n127.0.0.0/8\n");
const ONE = file("one.txt", "127.0.0.1\n");
const OTHERS = file("others.txt", "192.0.2.0/24\n198.51.100.7\n");

/**
 * The shipped per-request setup (`haproxy/haproxy-request.cfg` with
 * `spoe-iprep-request.conf`), with the score also in a header, on the 403 too.
 */
const CONFIG = file(
  "haproxy.cfg",
  `global
    log stderr format short local0 notice

defaults
    mode http
    log global
    timeout connect 5s
    timeout client  30s
    timeout server  30s

frontend www
    bind "\${HAPROXY_BIND}"
    filter spoe engine ip-reputation config "\${SPOE_CONF}"
    http-request return status 500 content-type text/plain lf-string "spoe_error=%[var(txn.iprep.error)]\\n" if { var(txn.iprep.error) -m found }
    http-request deny deny_status 403 hdr x-ip-score "%[var(sess.iprep.ip_score)]" if { var(sess.iprep.ip_score) -m int lt 20 }
    http-request return status 200 content-type text/plain hdr x-ip-score "%[var(sess.iprep.ip_score)]" lf-string "ip_score=%[var(sess.iprep.ip_score)]\\n"

backend iprep-backend
    mode tcp
    timeout server 1m
    server iprep-srv "\${SPOA_ADDR}" check maxconn 100
`,
);

/** The score HAProxy reports for a request from `from`, retried past SPOE errors of a cold start. */
async function scored(h: Haproxy, from: string): Promise<Response & { score: number }> {
  let res = await get(urlOf(h), from);
  for (let i = 0; i < 20 && res.status === 500; i++) {
    await sleep(50);
    res = await get(urlOf(h), from);
  }
  const header = res.headers["x-ip-score"];
  assert.ok(header !== undefined && header !== "", `a score for ${from}: ${JSON.stringify(res)}`);
  return { ...res, score: Number(header) };
}

/**
 * Asserts what HAProxy does with each client: `[source, score]`, denied
 * (403) below 20, passed (200, the score in the body too) otherwise.
 */
async function assertScores(h: Haproxy, expected: [string, number][]): Promise<void> {
  for (const [from, score] of expected) {
    for (let i = 0; i < 3; i++) {
      const res = await scored(h, from);
      assert.equal(res.score, score, `${from} scores ${score}`);
      if (score < 20) assert.equal(res.status, 403, `${from} is denied`);
      else {
        assert.equal(res.status, 200, `${from} passes`);
        assert.equal(res.text, `ip_score=${score}\n`);
      }
    }
  }
}

/**
 * Defines the tests for one HAProxy build.
 *
 * @param build The HAProxy to run against.
 */
function suite(build: HaproxyBuild): void {
  const name = (what: string) => `interop [${build.label}]: ${what}`;
  const start = (agentPort: number) =>
    startHaproxy({ build, config: CONFIG, spoe: "spoe-iprep-request.conf", agentPort });

  /** One test per worker count: `spoa -n N ...args` behind HAProxy. */
  const cli = (what: string, args: string[], expected: [string, number][]) => {
    for (const workers of ["1", "2"]) {
      test(name(`spoa -n ${workers} ${what}`), async () => {
        const agent = await startAgent(["-n", workers, ...args]);
        let h: Haproxy | undefined;
        try {
          h = await start(agent.port);
          await assertScores(h, expected);
          assert.match(agent.stderr, /lists loaded, generation 1/);
          if (workers === "2") assert.match(agent.stderr, /listening on \S+ with 2 workers/);
          else assert.doesNotMatch(agent.stderr, /\[worker/);
          assert.doesNotMatch(agent.stderr, /\b(error|warn)\b/);
        } catch (err) {
          console.error(`agent:\n${agent.stderr}\nHAProxy:\n${h?.log}`);
          throw err;
        } finally {
          await h?.stop("SIGTERM");
          await agent.stop();
        }
      });
    }
  };

  cli("--block with a list of 127.0.0.0/8 scores clients 0 and HAProxy denies them", [
    "--block",
    LOOPBACK,
  ], [["127.0.0.1", 0], ["127.0.0.2", 0]]);

  cli(
    "--block and --allow gives the allowed client 100 and HAProxy passes it alone",
    ["--block", LOOPBACK, "--allow", ONE],
    [["127.0.0.1", 100], ["127.0.0.2", 0]],
  );

  cli(
    "--default-score 60 scores clients on no list 60 and HAProxy passes them",
    ["--block", OTHERS, "--default-score", "60"],
    [["127.0.0.1", 60], ["127.0.0.2", 60]],
  );

  cli(
    "with lists and no --default-score scores clients on no list 50",
    ["--block", OTHERS],
    [["127.0.0.1", 50]],
  );

  cli(
    "--block FILE=SCORE scores with the lowest score of the lists that hold a client",
    ["--block", `${LOOPBACK}=30`, "--block", `${ONE}=15`, "--allow", `${OTHERS}=90`],
    [["127.0.0.1", 15], ["127.0.0.2", 30]],
  );

  cli(
    "--allow FILE=SCORE gives the allow list's score over any block list",
    ["--block", `${ONE}=5`, "--allow", `${LOOPBACK}=70`],
    [["127.0.0.1", 70], ["127.0.0.2", 70]],
  );

  test(
    name("serve(lib/iprep/agent.ts) with list args scores clients through HAProxy"),
    async () => {
      const server = await serve(new URL("../lib/iprep/agent.ts", import.meta.url), {
        args: ["--block", `${LOOPBACK}=10`, "--allow", ONE, "--reload-interval", "0"],
        workers: 2,
        hostname: "127.0.0.1",
        port: 0,
        log: createLogger({ sink: () => {} }),
      });
      let h: Haproxy | undefined;
      try {
        h = await start(server.port);
        await assertScores(h, [["127.0.0.1", 100], ["127.0.0.2", 10]]);
      } catch (err) {
        console.error(`HAProxy:\n${h?.log}`);
        throw err;
      } finally {
        await h?.stop("SIGTERM");
        await server.shutdown(1000);
      }
    },
  );
}

for (const build of haproxyBuilds()) suite(build);
