/**
 * The three agents of `examples/`, each run by `spoa --agent` behind real
 * HAProxy (every build of `SPOA_HAPROXY_BINS`) with its own unchanged
 * `haproxy.cfg` and `spoe.conf`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { importKey, sign } from "../examples/signed-token/agent.ts";
import { type AgentProcess, startAgent } from "./_process.ts";
import {
  get,
  type Haproxy,
  type HaproxyBuild,
  haproxyBuilds,
  type Response,
  startHaproxy,
  until,
} from "./_haproxy.ts";

const EXAMPLES = fileURLToPath(new URL("../examples/", import.meta.url));
const SECRET = "a-test-secret-of-some-length";

/** Runs `fn` with the example's agent and HAProxy running its config. */
async function withExample(
  build: HaproxyBuild,
  name: string,
  args: string[],
  fn: (haproxy: Haproxy) => Promise<void>,
): Promise<void> {
  let agent: AgentProcess | undefined;
  let haproxy: Haproxy | undefined;
  try {
    agent = await startAgent(["-n", "0", "--agent", `examples/${name}/agent.ts`, ...args]);
    haproxy = await startHaproxy({
      build,
      config: `${EXAMPLES}${name}/haproxy.cfg`,
      spoe: `${EXAMPLES}${name}/spoe.conf`,
      agentPort: agent.port,
      app: true,
    });
    await fn(haproxy);
    const exit = await agent.stop();
    assert.equal(exit.code, 0, exit.stderr);
    assert.doesNotMatch(exit.stderr, / error /);
  } catch (err) {
    if (haproxy) console.error(haproxy.log);
    throw err;
  } finally {
    await haproxy?.stop();
    await agent?.stop("SIGKILL");
  }
}

/** Requests until the agent's answer shows (HAProxy may connect to it only now). */
async function request(
  haproxy: Haproxy,
  path: string,
  headers: Record<string, string>,
  header: string,
  localAddress?: string,
): Promise<Response> {
  let response: Response | undefined;
  await until(async () => {
    response = await get(`http://${haproxy.host}:${haproxy.port}${path}`, localAddress, headers);
    return response.headers[header] !== undefined;
  }, `${header} on ${path}`);
  return response!;
}

const BROWSER = {
  "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
  "Accept-Language": "en-GB,en;q=0.8",
  Accept: "text/html,application/xhtml+xml",
};

for (const build of haproxyBuilds()) {
  const label = `examples [${build.label}]`;

  test(`${label}: bot-score lets a browser through and denies tools, probes and bare requests`, async () => {
    await withExample(build, "bot-score", [], async (haproxy) => {
      const browser = await request(haproxy, "/", BROWSER, "x-bot-score");
      assert.equal(browser.status, 200);
      assert.equal(browser.headers["x-bot-score"], "0");

      const tool = await request(haproxy, "/", { "User-Agent": "curl/8.5.0" }, "x-bot-score");
      assert.equal(tool.status, 403);
      assert.equal(tool.headers["x-bot-reasons"], "tool,no-accept-language,no-accept");

      const probe = await request(haproxy, "/.env", BROWSER, "x-bot-score");
      assert.equal(probe.status, 403);
      assert.equal(probe.headers["x-bot-reasons"], "probe");

      const bare = await request(haproxy, "/", {}, "x-bot-score");
      assert.equal(bare.status, 403);
      assert.equal(bare.headers["x-bot-score"], "75");
    });
  });

  test(`${label}: signed-token admits a valid token and says why others are refused`, async () => {
    const key = await importKey(SECRET);
    const now = Math.floor(Date.now() / 1000);
    const valid = await sign(key, "alice", now + 600);
    const expired = await sign(key, "bob", now - 1);
    const forged = valid.replace("alice", "mallory");
    await withExample(build, "signed-token", ["--", "--secret", SECRET], async (haproxy) => {
      const ok = await request(haproxy, "/private", { Cookie: `session=${valid}` }, "x-auth-user");
      assert.equal(ok.status, 200);
      assert.equal(ok.headers["x-auth-user"], "alice");
      const cases: [Record<string, string>, string][] = [
        [{}, "missing"],
        [{ Cookie: `session=${forged}` }, "bad-signature"],
        [{ Cookie: `session=${expired}` }, "expired"],
        [{ Cookie: "session=not-a-token" }, "malformed"],
      ];
      for (const [headers, reason] of cases) {
        const refused = await request(haproxy, "/private", headers, "x-auth-reason");
        assert.equal(refused.status, 401, reason);
        assert.equal(refused.headers["x-auth-reason"], reason);
      }
      const open = await request(haproxy, "/public", {}, "x-auth-reason");
      assert.equal(open.status, 200);
    });
  });

  test(`${label}: lookup asks the service, caches, and falls back when it is slow or down`, async () => {
    const answers = new Map<string, { score: number; delayMs: number }>([
      ["127.0.0.1", { score: 80, delayMs: 0 }],
      ["127.0.0.2", { score: 5, delayMs: 0 }],
      ["127.0.0.3", { score: 90, delayMs: 400 }],
    ]);
    const asked: string[] = [];
    const service = http.createServer((req, res) => {
      const ip = new URL(req.url ?? "/", "http://x").searchParams.get("ip") ?? "";
      asked.push(ip);
      const answer = answers.get(ip);
      setTimeout(() => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ score: answer?.score ?? 50 }));
      }, answer?.delayMs ?? 0);
    });
    await new Promise<void>((resolve) => service.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(service.address() as AddressInfo).port}`;
    try {
      const args = ["--", "--service", url, "--timeout", "40", "--backoff", "300"];
      await withExample(build, "lookup", args, async (haproxy) => {
        const first = await request(haproxy, "/", {}, "x-lookup-source", "127.0.0.1");
        assert.equal(first.status, 200);
        assert.deepEqual([first.headers["x-lookup-score"], first.headers["x-lookup-source"]], [
          "80",
          "service",
        ]);
        const again = await request(haproxy, "/", {}, "x-lookup-source", "127.0.0.1");
        assert.equal(again.headers["x-lookup-source"], "cache");
        assert.equal(asked.filter((ip) => ip === "127.0.0.1").length, 1);

        const bad = await request(haproxy, "/", {}, "x-lookup-source", "127.0.0.2");
        assert.equal(bad.status, 403);
        assert.equal(bad.headers["x-lookup-score"], "5");

        // 400 ms is beyond the agent's 40 ms timeout: the fallback, well within HAProxy's 100 ms.
        const slow = await request(haproxy, "/", {}, "x-lookup-source", "127.0.0.3");
        assert.equal(slow.status, 200);
        assert.deepEqual([slow.headers["x-lookup-score"], slow.headers["x-lookup-source"]], [
          "50",
          "fallback",
        ]);
        assert.equal(slow.headers["x-spoe-error"], undefined);

        // Down: the fallback at once (the backoff), then again after it.
        await new Promise<void>((resolve) => service.close(() => resolve()));
        service.closeAllConnections();
        for (const ip of ["127.0.0.4", "127.0.0.5"]) {
          const down = await request(haproxy, "/", {}, "x-lookup-source", ip);
          assert.equal(down.headers["x-lookup-source"], "fallback");
          assert.equal(down.status, 200);
        }
      });
    } finally {
      service.closeAllConnections();
      service.close();
    }
  });
}
