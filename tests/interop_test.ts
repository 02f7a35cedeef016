/**
 * Interop with real HAProxy: the configurations of `haproxy/` with the agent
 * of `main.ts` under the runtime running the tests (or the compiled binary of
 * `SPOA_AGENT_BIN`), once for every HAProxy of `SPOA_HAPROXY_BINS` (Debian's
 * 2.6 alone by default; CI adds 3.4). Each test's name says which HAProxy it
 * ran against. Each test starts its own agent and HAProxy on free loopback
 * ports and stops both by PID. HAProxy must be installed; these tests never
 * skip, except the scenarios that exist in one generation of HAProxy's SPOE
 * engine only (async and fragmentation on 2.x), whose names say so.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { seededScore } from "../lib/iprep/mod.ts";
import { type AgentProcess, startAgent } from "./_process.ts";
import {
  establishedTo,
  get,
  type Haproxy,
  type HaproxyBuild,
  haproxyBuilds,
  type HaproxyOptions,
  haproxyVersion,
  type Response,
  scoreOf,
  sleep,
  startHaproxy,
  until,
  urlOf,
} from "./_haproxy.ts";

/** Lines the agent must never log while HAProxy behaves. */
const BAD_LOG = /\b(error|warn)\b/;

function assertQuiet(agent: AgentProcess): void {
  const bad = agent.stderr.split("\n").filter((line) => BAD_LOG.test(line));
  assert.deepEqual(bad, [], "the agent logged warnings or errors");
}

/** Runs `body` with an agent and HAProxy, and stops both whatever happens. */
async function withBoth(
  agentArgs: string[],
  haproxy: (agentPort: number) => Promise<Haproxy>,
  body: (agent: AgentProcess, h: Haproxy) => Promise<void>,
): Promise<void> {
  const agent = await startAgent(agentArgs);
  let h: Haproxy | undefined;
  try {
    h = await haproxy(agent.port);
    await body(agent, h);
  } finally {
    await h?.stop("SIGTERM");
    await agent.stop();
  }
}

function loopback(i: number): string {
  return `127.0.${Math.floor(i / 250)}.${2 + (i % 250)}`;
}

function ipv4Bytes(ip: string): Uint8Array {
  return new Uint8Array(ip.split(".").map(Number));
}

/** The expected outcome of the reference rule for a seeded score. */
function expectSeeded(res: Response, seed: number, ip: string, rejected: (r: Response) => boolean) {
  const expected = seededScore(seed, ipv4Bytes(ip));
  if (expected < 20) assert.ok(rejected(res), `${ip} scores ${expected}: rejected`);
  else assert.equal(scoreOf(res.text), expected, `${ip} scores ${expected}`);
  return expected;
}

/**
 * 200 concurrent requests, one from each of 200 client addresses, each
 * answered with its seeded score (or the 403 of a score below 20) and no
 * SPOE error.
 */
async function seededBurst(h: Haproxy, seed: number, halfClose = false): Promise<void> {
  const ips = Array.from({ length: 200 }, (_, i) => loopback(i));
  const responses = await Promise.all(ips.map((ip) => get(urlOf(h), ip, {}, halfClose)));
  for (const [i, res] of responses.entries()) {
    assert.doesNotMatch(res.text, /spoe_error/, `request ${i}: ${res.text}`);
    expectSeeded(res, seed, ips[i]!, (r) => r.status === 403);
  }
}

/**
 * Two bursts of 200 requests before the measured one. HAProxy 2.x opens agent
 * connections on demand, about one per two waiting requests, each with its
 * own HELLO; on a cold start with the 2 cores shared by HAProxy, the agent
 * and this client, that burst took up to 123 ms of `timeout processing`
 * (measured with `option set-process-time`), against 5 ms once warm.
 */
async function warmUp(h: Haproxy): Promise<void> {
  for (let i = 0; i < 2; i++) await Promise.all(Array.from({ length: 200 }, () => get(urlOf(h))));
}

/**
 * One request to let HAProxy open its first agent connection: with the
 * reference `timeout processing 15ms`, connecting and the HELLO exchange can
 * eat the budget of a cold start on a busy machine.
 */
async function firstConnection(h: Haproxy): Promise<void> {
  await until(async () => {
    const res = await get(urlOf(h));
    return res.status === 0 || scoreOf(res.text) !== undefined;
  }, "HAProxy's first agent connection");
}

/**
 * A request through the reference config, asked again while HAProxy reports
 * no answer from the agent: `timeout processing 15ms` can expire on a busy
 * 2-core machine (HAProxy then neither rejects nor scores). Only answered
 * requests are judged; an agent that never answers still fails.
 */
async function answered(h: Haproxy, localAddress?: string): Promise<Response> {
  let res = await get(urlOf(h), localAddress);
  for (let i = 0; i < 5 && res.status !== 0 && scoreOf(res.text) === undefined; i++) {
    await sleep(20);
    res = await get(urlOf(h), localAddress);
  }
  return res;
}

/**
 * Defines every interop test for one HAProxy build.
 *
 * @param build The HAProxy to run against.
 */
function suite(build: HaproxyBuild): void {
  const name = (what: string) => `interop [${build.label}]: ${what}`;
  const start = (options: Omit<HaproxyOptions, "build">) => startHaproxy({ ...options, build });

  /**
   * A scenario that exists in one generation of HAProxy's SPOE engine only:
   * against the other, the test is listed as skipped and its name says why.
   */
  const legacyOnly = (what: string, body: () => Promise<void>) =>
    build.legacy
      ? test(name(what), body)
      : test(name(`${what}: not run, HAProxy 3.1+ has neither async nor fragmentation`), {
        skip: true,
      }, body);
  const modernOnly = (what: string, body: () => Promise<void>) =>
    build.legacy
      ? test(name(`${what}: not run, HAProxy 3.1+ only`), { skip: true }, body)
      : test(name(what), body);
  /** What HAProxy offers in its HELLO: 2.x to 3.0 also offer async. */
  const offered = build.legacy ? "pipelining,async" : "pipelining";

  /** HAProxy with the shipped per-request config (every request waits for a score). */
  const perRequest = (agentPort: number): Promise<Haproxy> =>
    start({ config: "haproxy-request.cfg", spoe: "spoe-iprep-request.conf", agentPort });

  test(name("HAProxy runs and reports its version"), () => {
    assert.match(haproxyVersion(build), /^HAProxy version \d+\.\d+/);
  });

  test(name("the reference config passes agent scores 0..100 that vary"), async () => {
    await withBoth(
      ["-d"],
      (port) => start({ config: "haproxy.cfg", spoe: "spoe-iprep.conf", agentPort: port }),
      async (agent, h) => {
        await firstConnection(h);
        const scores: number[] = [];
        let rejected = 0;
        for (let i = 0; i < 40; i++) {
          const res = await answered(h);
          if (res.status === 0) {
            rejected++;
            continue;
          }
          const score = scoreOf(res.text);
          assert.ok(score !== undefined, `response ${i} has a score: ${JSON.stringify(res.text)}`);
          assert.ok(score >= 0 && score <= 100, `score ${score}`);
          scores.push(score);
        }
        assert.ok(scores.length >= 20, `${scores.length} scored, ${rejected} rejected`);
        assert.ok(new Set(scores).size > 5, `scores vary: ${scores.join(",")}`);
        // HAProxy 2.x offers pipelining and async, 3.1+ pipelining; the agent takes pipelining.
        assert.match(
          agent.stderr,
          new RegExp(`capabilities "${offered}".*; agent answers 2\\.0, 16380, "pipelining"`),
        );
        assertQuiet(agent);
      },
    );
  });

  test(
    name("with --seed the reject rule rejects exactly the clients scoring below 20"),
    async () => {
      const seed = 20261126;
      await withBoth(
        ["--seed", String(seed)],
        (port) => start({ config: "haproxy.cfg", spoe: "spoe-iprep.conf", agentPort: port }),
        async (agent, h) => {
          await firstConnection(h);
          let low = 0;
          for (let i = 0; i < 60; i++) {
            const ip = loopback(i);
            const res = await answered(h, ip);
            if (expectSeeded(res, seed, ip, (r) => r.status === 0) < 20) low++;
          }
          assert.ok(low > 0 && low < 60, `${low} of 60 clients score below 20`);
          assertQuiet(agent);
        },
      );
    },
  );

  test(name("200 concurrent requests are all scored per request, with no SPOE error"), async () => {
    const seed = 7;
    await withBoth(
      ["--seed", String(seed)],
      perRequest,
      async (agent, h) => {
        await warmUp(h);
        await seededBurst(h, seed);
        assertQuiet(agent);
      },
    );
  });

  test(
    name("200 concurrent sessions are all scored on the portable config, with no SPOE error"),
    async () => {
      const seed = 11;
      await withBoth(
        ["--seed", String(seed)],
        (port) =>
          start({
            config: "portable.cfg",
            spoe: "spoe-portable.conf",
            agentPort: port,
            app: true,
          }),
        async (agent, h) => {
          const ips = Array.from({ length: 200 }, (_, i) => loopback(i));
          await warmUp(h);
          const responses = await Promise.all(ips.map((ip) => get(urlOf(h), ip)));
          responses.forEach((res, i) => {
            assert.equal(res.headers["x-spoe-error"], undefined, `request ${i}`);
            const expected = seededScore(seed, ipv4Bytes(ips[i]!));
            if (expected < 20) {
              assert.equal(res.status, 0, `${ips[i]} scores ${expected}: rejected`);
            } else {
              assert.equal(res.status, 200);
              assert.equal(res.text, "app\n");
              assert.equal(res.headers["x-ip-score"], String(expected), `${ips[i]}`);
            }
          });
          assertQuiet(agent);
        },
      );
    },
  );

  test(name("option spop-check marks the agent UP, and DOWN once it is stopped"), async () => {
    const agent = await startAgent([]);
    let h: Haproxy | undefined;
    try {
      h = await start({
        config: "portable.cfg",
        spoe: "spoe-portable.conf",
        agentPort: agent.port,
        app: true,
        checkInter: "200ms",
      });
      const haproxy = h;
      await until(async () => (await haproxy.agentStatus()) === "UP", "the agent to be UP");
      await agent.stop();
      await until(
        async () => (await haproxy.agentStatus()).startsWith("DOWN"),
        "the agent to be DOWN",
      );
      assertQuiet(agent);
    } finally {
      await h?.stop("SIGTERM");
      await agent.stop();
    }
  });

  test(name("scores come back after the agent restarts, without restarting HAProxy"), async () => {
    let agent = await startAgent([]);
    const port = agent.port;
    let h: Haproxy | undefined;
    try {
      h = await perRequest(port);
      const url = urlOf(h);
      const scored = async () => {
        const res = await get(url);
        return res.status === 403 || scoreOf(res.text) !== undefined;
      };
      await until(scored, "a first score");
      await agent.stop();
      const down = await get(url);
      assert.match(down.text, /spoe_error=\d+/, "no agent: the SPOE error shows");
      agent = await startAgent(["-p", String(port)]);
      assert.equal(agent.port, port);
      await until(scored, "scores after the restart");
      assertQuiet(agent);
    } finally {
      await h?.stop("SIGTERM");
      await agent.stop();
    }
  });

  test(
    name(
      "HAProxy reloaded idle and under load, then stopped under load, leaves no error and no connection",
    ),
    async () => {
      await withBoth(
        ["-d"],
        perRequest,
        async (agent, first) => {
          let h = first;
          const url = urlOf(h);
          const scored = async () => scoreOf((await get(url)).text) !== undefined;
          await until(scored, "a first score");
          // Idle reload.
          h = await h.reload();
          await until(scored, "scores after the reload");
          // Reload under load: requests keep flowing while the old process finishes.
          let running = true;
          const load = (async () => {
            let n = 0;
            while (running) {
              await Promise.all(Array.from({ length: 20 }, () => get(url).catch(() => undefined)));
              n++;
            }
            return n;
          })();
          await sleep(200);
          h = await h.reload();
          await sleep(200);
          // Stop under load (soft stop), then wait for the agent to see every connection go.
          const stopping = h.stop("SIGUSR1");
          await sleep(100);
          running = false;
          assert.ok((await load) > 0);
          await stopping;
          await until(() => establishedTo(agent.port) === 0, "no connection left to the agent");
          assert.match(agent.stderr, /HAPROXY-HELLO/, "HAProxy connected");
          const bad = agent.stderr.split("\n").filter((line) => / (error|warn) /.test(line));
          assert.deepEqual(bad, [], "the agent logged warnings or errors");
        },
      );
    },
  );

  test(name("HAProxy stopped while idle leaves no error and no connection"), async () => {
    await withBoth(
      [],
      perRequest,
      async (agent, h) => {
        const url = urlOf(h);
        await until(async () => scoreOf((await get(url)).text) !== undefined, "a first score");
        assert.ok(establishedTo(agent.port) > 0, "HAProxy keeps its agent connections open");
        await h.stop("SIGUSR1");
        await until(() => establishedTo(agent.port) === 0, "no connection left to the agent");
        assertQuiet(agent);
      },
    );
  });

  test(name("an IPv6 client gets its score"), async () => {
    const seed = 99;
    await withBoth(
      ["--seed", String(seed)],
      (port) =>
        start({
          config: "haproxy.cfg",
          spoe: "spoe-iprep.conf",
          agentPort: port,
          ipv6: true,
        }),
      async (agent, h) => {
        const loopback6 = new Uint8Array(16);
        loopback6[15] = 1;
        const expected = seededScore(seed, loopback6);
        await firstConnection(h);
        const res = await answered(h);
        if (expected < 20) assert.equal(res.status, 0);
        else assert.equal(scoreOf(res.text), expected);
        assertQuiet(agent);
      },
    );
  });

  test(name("a -c pipelining agent answers 100 concurrent requests"), async () => {
    await withBoth(
      ["-c", "pipelining"],
      perRequest,
      async (agent, h) => {
        await warmUp(h);
        const responses = await Promise.all(Array.from({ length: 100 }, () => get(urlOf(h))));
        for (const res of responses) {
          assert.ok(res.status === 403 || scoreOf(res.text) !== undefined, res.text);
        }
        assertQuiet(agent);
      },
    );
  });

  legacyOnly(
    "a -c async agent takes HAProxy 2.x's async and answers 200 concurrent requests",
    async () => {
      const seed = 11;
      await withBoth(
        ["-c", "async", "-d", "--seed", String(seed)],
        perRequest,
        async (agent, h) => {
          await warmUp(h);
          // Each client address has a known score: with async, HAProxy may send a
          // stream's NOTIFY on any of its connections, and each answer must still
          // reach the stream that asked.
          await seededBurst(h, seed);
          assert.match(
            agent.stderr,
            /capabilities "pipelining,async".*agent answers 2\.0, \d+, "pipelining,async"/,
          );
          assertQuiet(agent);
        },
      );
    },
  );

  legacyOnly(
    "a -c fragmentation agent reassembles the fragmented NOTIFYs of HAProxy 2.x",
    async () => {
      // HAProxy 2.x splits a NOTIFY only when the payload exceeds the agent's
      // max-frame-size *as configured in the SPOE file* at encoding time, and only
      // to an agent that announced fragmentation; a large header does it.
      const dir = mkdtempSync(join(tmpdir(), "spoa-frag-"));
      const spoe = join(dir, "spoe-fragmented.conf");
      writeFileSync(
        spoe,
        [
          "[ip-reputation]",
          "spoe-agent iprep-agent",
          "    messages check-client-ip log-request",
          "    option var-prefix iprep",
          "    option set-on-error error",
          "    max-frame-size 256",
          "    timeout hello 2s",
          "    timeout idle 30s",
          "    timeout processing 2s",
          "    use-backend iprep-backend",
          "spoe-message check-client-ip",
          "    args src",
          "    event on-frontend-http-request",
          "spoe-message log-request",
          "    args headers=req.hdrs",
          "    event on-frontend-http-request",
          "",
        ].join("\n"),
      );
      const seed = 5;
      try {
        await withBoth(
          ["-c", "fragmentation", "-m", "256", "-d", "--seed", String(seed)],
          (port) => start({ config: "haproxy-request.cfg", spoe, agentPort: port }),
          async (agent, h) => {
            const big = "a".repeat(1500);
            for (let i = 0; i < 3; i++) {
              const ip = loopback(i);
              const res = await get(urlOf(h), ip, { "x-big": big });
              assert.doesNotMatch(res.text, /spoe_error/);
              expectSeeded(res, seed, ip, (r) => r.status === 403);
            }
            assert.match(agent.stderr, /agent answers 2\.0, 256, "pipelining,fragmentation"/);
            assert.match(agent.stderr, /<- NOTIFY stream=\d+ frame=1 length=\d+ no-FIN/);
            assert.match(agent.stderr, /<- UNSET stream=\d+ frame=1 length=\d+ no-FIN/);
            assert.match(agent.stderr, /<- UNSET stream=\d+ frame=1 length=\d+\n/);
            assertQuiet(agent);
          },
        );
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  modernOnly(
    "an agent started with -c async -c fragmentation (for 2.x) gets neither from HAProxy 3.1+ and answers 200 concurrent requests",
    async () => {
      const seed = 13;
      await withBoth(
        ["-c", "async", "-c", "fragmentation", "-d", "--seed", String(seed)],
        perRequest,
        async (agent, h) => {
          await warmUp(h);
          await seededBurst(h, seed);
          // async is announced only when offered; fragmentation, as in the C
          // agent, whenever asked for: 3.1+ ignores it and never fragments.
          assert.match(
            agent.stderr,
            /capabilities "pipelining",.*agent answers 2\.0, \d+, "pipelining,fragmentation"/,
          );
          assert.doesNotMatch(agent.stderr, /no-FIN/);
          assertQuiet(agent);
        },
      );
    },
  );

  test(
    name(
      "clients that shut their side down after the request are all scored with `no option abortonclose`",
    ),
    async () => {
      // HAProxy 3.x takes a client's shutdown for an abort and interrupts its
      // SPOE exchange (error 4) when that comes before the ACK; 2.x waits.
      // `no option abortonclose` in `defaults` gives every generation 2.x's
      // behaviour (README, "HAProxy 2.x and 3.1+").
      const dir = mkdtempSync(join(tmpdir(), "spoa-halfclose-"));
      const config = join(dir, "haproxy-request-halfclose.cfg");
      const shipped = readFileSync(
        new URL("../haproxy/haproxy-request.cfg", import.meta.url),
        "utf8",
      );
      writeFileSync(
        config,
        shipped.replace(/^defaults\n/m, "defaults\n    no option abortonclose\n"),
      );
      const seed = 17;
      try {
        await withBoth(
          ["--seed", String(seed)],
          (port) => start({ config, spoe: "spoe-iprep-request.conf", agentPort: port }),
          async (agent, h) => {
            await warmUp(h);
            await seededBurst(h, seed, true);
            assertQuiet(agent);
          },
        );
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
}

for (const build of haproxyBuilds()) suite(build);
