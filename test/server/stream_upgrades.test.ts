import assert from "node:assert/strict";
import crypto from "node:crypto";
import { after, test } from "node:test";
import { createClient } from "../../src/client/client.ts";
import { controlRequest } from "../../src/server/control_server.ts";
import type { ServerStatus } from "../../src/server/server.ts";
import { runCli, spawnCli, stopChild } from "../helpers/cli.ts";
import { sleep, tempDir, waitFor } from "../helpers/fixtures.ts";
import { freePort } from "../helpers/free_port.ts";
import { skipUnlessHandoff } from "../helpers/migration.ts";
import { pidsKilledAfterFile } from "../helpers/pid_alive.ts";

const pids = pidsKilledAfterFile();

async function* chunks(buf: Buffer, size: number): AsyncGenerator<Uint8Array> {
  for (let off = 0; off < buf.length; off += size) {
    yield buf.subarray(off, off + size);
    if ((off / size) % 16 === 0) await sleep(1); // a body that takes a while: upgrades land mid-stream
  }
}

test("streams in progress finish on the old process and new ones go to the new: 0 failed through upgrades (C10)", async (t) => {
  if (skipUnlessHandoff(t)) return;
  const stateDir = tempDir();
  const port = await freePort();
  const child = spawnCli(["serve", "--access", "open", "--state-dir", stateDir, "--listen", `127.0.0.1:${port}`, "--app", "demo"]);
  let log = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (log += s));
  after(() => stopChild(child));
  await waitFor(() => log.includes('"server_started"') || child.exitCode !== null, "the server to start", 30_000);
  pids.add(child.pid!);
  const client = createClient({ lingerMs: 0, stateDir: false });
  after(() => client.close());
  const body = crypto.randomBytes(1024 * 1024 + 5);
  let done = 0;
  const failures: string[] = [];
  let stop = false;
  const workers = Array.from({ length: 4 }, async (_, w) => {
    const link = await client.connect({ host: "127.0.0.1", port, app: `w${w}` });
    while (!stop) {
      try {
        // Alternately a one-shot stream (kept until the server reads it) and bytes (always replayable).
        const back = done % 2 === 0 ? await link.request(chunks(body, 16 * 1024)) : await link.request(body, { idempotent: true });
        if (!back.equals(body)) failures.push("corrupt echo");
        done++;
      } catch (err) {
        failures.push(`${(err as { code?: string }).code}: ${(err as Error).message}`);
      }
    }
  });
  await sleep(300);
  for (let i = 1; i <= 3; i++) {
    const r = await runCli(["upgrade", "--state-dir", stateDir, "--json", "--timeout", "20000"], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    pids.add((JSON.parse(r.stdout) as { pid: number }).pid);
    await sleep(300);
  }
  stop = true;
  await Promise.all(workers);
  const s = (await controlRequest(stateDir, { op: "status" })) as ServerStatus;
  pids.add(s.pid);
  assert.equal(s.generation, 4);
  assert.deepEqual(failures, []);
  assert.ok(done >= 8, `${done} streamed echoes`);
});
