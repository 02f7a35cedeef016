/**
 * The IP-reputation service with lists, run by `serve()`: reloads under load
 * lose no ACK, and `/lookup` answers on the metrics endpoint, on this thread
 * and on workers.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createLogger, serve } from "../lib/mod.ts";
import { FrameType } from "../lib/spop.ts";
import { checkClientIp, concat, notifyBytes, SpopClient } from "./_spop_client.ts";

const DIR = mkdtempSync(path.join(tmpdir(), "spoa-iprep-service-"));
after(() => rmSync(DIR, { recursive: true, force: true }));
const quiet = createLogger({ sink: () => {} });
const SERVICE = new URL("../lib/iprep/agent.ts", import.meta.url);
/** `deno test` type-checks each new Worker's module: loads take seconds there. */
const LOAD_MS = 30_000;

/** The generation `/lookup` reports. */
async function generation(metricsPort: number): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${metricsPort}/lookup?ip=192.0.2.1`);
  return (await response.json()).generation;
}

test("the service reloads its lists under load without losing an ACK", async () => {
  const list = path.join(DIR, "scored.txt");
  writeFileSync(list, "192.0.2.0/24 10\n");
  const server = await serve(SERVICE, {
    workers: 2,
    hostname: "127.0.0.1",
    port: 0,
    args: ["--block", list, "--reload-interval", "0"],
    log: quiet,
    metrics: { port: 0 },
  });
  let stop = false;
  const scores = new Set<unknown>();
  let acked = 0;
  const load = async (c: number) => {
    const client = await SpopClient.connect(server.port);
    try {
      await client.hello();
      let id = 1;
      while (!stop) {
        const frames = [];
        for (let i = 0; i < 20; i++) {
          frames.push(notifyBytes(id + i, 1, [checkClientIp(`192.0.2.${c * 20 + i}`)]));
        }
        await client.send(concat(frames));
        for (let i = 0; i < 20; i++) {
          const ack = await client.nextFrame();
          assert.equal(ack.type, FrameType.ACK);
          assert.equal(ack.streamId, id + i);
          scores.add(ack.actions?.[0]?.value);
          acked++;
        }
        id += 20;
      }
      assert.equal(client.isClosed, false);
    } finally {
      await client.close();
    }
  };
  try {
    const clients = [0, 1, 2, 3].map(load);
    for (let round = 2; round <= 4; round++) {
      writeFileSync(list, `192.0.2.0/24 ${round * 10}\n192.0.2.0/25 ${round * 10}\n`);
      server.reload!();
      const deadline = Date.now() + LOAD_MS;
      while (await generation(server.metricsPort!) < round) {
        assert.ok(Date.now() < deadline, `generation ${round}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    // Every client gets the last table's score once the workers have it.
    const seen = acked;
    while (acked < seen + 400) await new Promise((resolve) => setTimeout(resolve, 10));
    stop = true;
    await Promise.all(clients);
    assert.ok(acked > 0);
    for (const score of scores) assert.ok([10, 20, 30, 40].includes(score as number), `${score}`);
    assert.ok(scores.has(40), [...scores].join(","));
  } finally {
    stop = true;
    await server.shutdown();
  }
});

for (const workers of [0, 2]) {
  test(`/lookup explains a score on the metrics endpoint with workers: ${workers}`, async () => {
    const list = path.join(DIR, `drop-${workers}.txt`);
    writeFileSync(list, "; DROP\n198.51.100.0/24 ; SBL7\n");
    const server = await serve(SERVICE, {
      workers,
      hostname: "127.0.0.1",
      port: 0,
      args: ["--block", `${list}=3`, "--default-score", "75"],
      log: quiet,
      metrics: { port: 0 },
    });
    const http = `http://127.0.0.1:${server.metricsPort}`;
    try {
      const found = await fetch(`${http}/lookup?ip=198.51.100.9`);
      assert.equal(found.status, 200);
      assert.match(found.headers.get("content-type") ?? "", /^application\/json/);
      assert.deepEqual(await found.json(), {
        ip: "198.51.100.9",
        score: 3,
        decided_by: "block",
        default_score: 75,
        generation: 1,
        matches: [{
          list,
          kind: "block",
          entry: "198.51.100.0/24",
          line: 2,
          score: 3,
          decides: true,
        }],
        stale: [],
        errors: [],
      });
      const unlisted = await (await fetch(`${http}/lookup?ip=2001:db8::1`)).json();
      assert.equal(unlisted.score, 75);
      assert.equal(unlisted.decided_by, "default");
      const missing = await fetch(`${http}/lookup`);
      assert.equal(missing.status, 400);
      assert.deepEqual(await missing.json(), {
        error: "missing the ip parameter: /lookup?ip=ADDR",
      });
      const bad = await fetch(`${http}/lookup?ip=300.1.1.1`);
      assert.equal(bad.status, 400);
      assert.deepEqual(await bad.json(), { error: 'not an IPv4 or IPv6 address: "300.1.1.1"' });
      const metrics = await (await fetch(`${http}/metrics`)).text();
      assert.match(metrics, /spoa_iprep_table_generation 1\n/);
      assert.match(metrics, /spoa_iprep_list_entries\{list="[^"]+",kind="block"\} 1\n/);
    } finally {
      await server.shutdown();
    }
  });
}
