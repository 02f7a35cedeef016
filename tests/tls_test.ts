/**
 * `spoa --tls-cert FILE --tls-key FILE`: SPOP over TLS, through HAProxy
 * (every build of `SPOA_HAPROXY_BINS`, `server ... ssl verify required
 * ca-file`) with certificates made by `openssl`; peers that speak plain TCP
 * or fail the handshake change nothing; unusable files stop the start.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import tls from "node:tls";
import { runMain, startAgent } from "./_process.ts";
import { get, haproxyBuilds, type Response, startHaproxy, until } from "./_haproxy.ts";

const DIR = mkdtempSync(path.join(tmpdir(), "spoa-tls-"));
const file = (name: string) => path.join(DIR, name);
after(() => rmSync(DIR, { recursive: true, force: true }));

function openssl(...args: string[]): void {
  const run = spawnSync("openssl", args, { cwd: DIR, encoding: "utf8" });
  if (run.status !== 0) throw new Error(`openssl ${args.join(" ")}: ${run.stderr}`);
}

before(() => {
  // A CA, a server certificate it signs for 127.0.0.1, and an unrelated key.
  const subject = (cn: string) => ["-subj", `/CN=${cn}`];
  openssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    ...subject("spoa test CA"),
  );
  openssl(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
    ...subject("127.0.0.1"),
  );
  writeFileSync(file("san.ext"), "subjectAltName=IP:127.0.0.1\n");
  openssl(
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.pem",
    "-days",
    "2",
    "-extfile",
    "san.ext",
  );
  openssl("genpkey", "-algorithm", "RSA", "-out", "other.key");
  writeFileSync(file("garbage.pem"), "not a certificate\n");
  // The shipped SPOE file with room for a burst of new TLS connections. The
  // burst below makes HAProxy open about 25 agent connections at once, and
  // each one's handshake and HELLO count against `timeout processing`. With
  // --dispatch streams on Deno, the main thread does every handshake and
  // hands two streams per connection to a worker, and the slowest answers
  // took 100 ms on our 2-core machines (2.6 and 3.4 alike), the shipped
  // limit. This test is about TLS working in every mode, not about how fast
  // connections are set up (README, "Workers and dispatch").
  const spoe = readFileSync(
    path.join(import.meta.dirname!, "../haproxy/spoe-portable.conf"),
    "utf8",
  );
  const roomy = spoe.replace(/timeout processing\s+\S+/, "timeout processing 2s");
  assert.notEqual(roomy, spoe);
  writeFileSync(file("spoe-tls.conf"), roomy);
});

const TLS = () => ["--tls-cert", file("server.pem"), "--tls-key", file("server.key")];
const scoreOf = (r: Response) =>
  r.headers["x-ip-score"] === undefined ? undefined : Number(r.headers["x-ip-score"]);

for (const build of haproxyBuilds()) {
  for (const [workers, dispatch] of [["0", "reuseport"], ["2", "reuseport"], ["2", "streams"]]) {
    test(`interop [${build.label}]: HAProxy scores over TLS (ssl verify required), -n ${workers} ${dispatch}`, async () => {
      const agent = await startAgent([
        "-n",
        workers!,
        "--dispatch",
        dispatch!,
        "--seed",
        "9",
        ...TLS(),
      ]);
      let haproxy;
      try {
        haproxy = await startHaproxy({
          build,
          config: "tls.cfg",
          spoe: file("spoe-tls.conf"),
          agentPort: agent.port,
          app: true,
          checkInter: "200ms",
          env: { SPOA_CA: file("ca.pem") },
        });
        const url = `http://${haproxy.host}:${haproxy.port}/`;
        let score: number | undefined;
        await until(
          async () => (score = scoreOf(await get(url))) !== undefined,
          "a score over TLS",
        );
        const responses = await Promise.all(Array.from({ length: 50 }, () => get(url)));
        for (const response of responses) {
          assert.equal(response.headers["x-spoe-error"], undefined);
          assert.equal(scoreOf(response), score);
        }
        await until(async () => (await haproxy!.agentStatus()).startsWith("UP"), "the agent UP");
        const exit = await agent.stop();
        assert.equal(exit.code, 0, exit.stderr);
        assert.doesNotMatch(exit.stderr, / (error|warn) /);
      } catch (err) {
        if (haproxy) console.error(haproxy.log);
        throw err;
      } finally {
        await haproxy?.stop();
        await agent.stop("SIGKILL");
      }
    });
  }
}

test("spoa over TLS shrugs off plain TCP and failed handshakes, and keeps serving", async () => {
  const agent = await startAgent(["-n", "0", ...TLS()]);
  try {
    // Plain SPOP bytes on the TLS port.
    await new Promise<void>((resolve) => {
      const socket = net.connect({ port: agent.port, host: "127.0.0.1" }, () => {
        socket.write(new Uint8Array([0, 0, 0, 10, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0]));
      });
      socket.on("error", () => {});
      socket.on("close", () => resolve());
      setTimeout(() => socket.destroy(), 2000);
    });
    // A client that does not trust the certificate gives up during the handshake.
    await new Promise<void>((resolve) => {
      const socket = tls.connect({ port: agent.port, host: "127.0.0.1" });
      socket.on("error", () => resolve());
      socket.on("secureConnect", () => {
        socket.destroy();
        resolve();
      });
    });
    // And a client that trusts it gets a HELLO answered.
    const hello = await new Promise<number>((resolve, reject) => {
      const socket = tls.connect({
        port: agent.port,
        host: "127.0.0.1",
        ca: [spawnSync("cat", [file("ca.pem")], { encoding: "utf8" }).stdout],
      });
      socket.on("error", reject);
      socket.on("secureConnect", async () => {
        const { helloBytes } = await import("./_spop_client.ts");
        socket.write(helloBytes());
      });
      socket.on("data", (chunk: Buffer) => {
        socket.destroy();
        resolve(chunk[4]!);
      });
    });
    assert.equal(hello, 101); // AGENT-HELLO
    const exit = await agent.stop();
    assert.equal(exit.code, 0, exit.stderr);
    assert.doesNotMatch(exit.stderr, / (error|warn) /, "handshake failures are debug-level");
  } finally {
    await agent.stop("SIGKILL");
  }
});

test("spoa refuses unreadable, malformed and mismatched TLS files before listening", async () => {
  const cases: [string[], RegExp][] = [
    [
      ["--tls-cert", file("missing.pem"), "--tls-key", file("server.key")],
      /^spoa: Cannot read --tls-cert .*missing\.pem: /,
    ],
    [
      ["--tls-cert", file("garbage.pem"), "--tls-key", file("server.key")],
      /^spoa: Cannot use --tls-cert .*garbage\.pem: not a PEM certificate/,
    ],
    [
      ["--tls-cert", file("server.pem"), "--tls-key", file("garbage.pem")],
      /^spoa: Cannot use --tls-key .*garbage\.pem: not a PEM private key/,
    ],
    [
      ["--tls-cert", file("server.pem"), "--tls-key", file("other.key")],
      /^spoa: Cannot use --tls-key .*other\.key: it is not the key of the certificate/,
    ],
  ];
  for (const [args, message] of cases) {
    const exit = await runMain(["-n", "0", "-p", "0", ...args]);
    assert.equal(exit.code, 1, exit.stderr);
    assert.match(exit.stderr, message);
    assert.equal(exit.stderr.trim().split("\n").length, 1, exit.stderr);
  }
});
