/**
 * Rolling group upgrades (limits.upgradeSurge): a real `--workers 4` upgrade
 * under HTTP load, the service processes counted from /proc. In a file of
 * their own so that each file's group upgrades fit the runner's per-file
 * timeout on a slow machine.
 */
import assert from "node:assert/strict";
import { existsSync, promises as fs, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { WORKER_ENV } from "../../src/group/group_protocol.ts";
import { REPO_ROOT } from "../helpers/cli.ts";
import { sleep, tempDir, waitFor } from "../helpers/fixtures.ts";
import { nodeOnly, serveGroup, upgradeGroup } from "../helpers/group.ts";
import { httpLoad } from "../helpers/load.ts";

const HTTP_APP = path.join(REPO_ROOT, "test/fixtures/http_app.ts");

/** Service processes (PERILINK_WORKER in their environment) that descend from `root`, from /proc. */
function serviceProcessesUnder(root: number): number {
  const parent = new Map<number, number>();
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      parent.set(Number(e), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // exited meanwhile
    }
  }
  let n = 0;
  for (const pid of parent.keys()) {
    let p: number | undefined = parent.get(pid);
    while (p !== undefined && p > 1 && p !== root) p = parent.get(p);
    if (p !== root) continue;
    try {
      if (readFileSync(`/proc/${pid}/environ`, "latin1").split("\0").some((kv) => kv.startsWith(`${WORKER_ENV}=`))) n++;
    } catch {
      // exited meanwhile
    }
  }
  return n;
}

for (const [surge, peak] of [
  [1, 5],
  [4, 8],
] as const) {
  test(`--workers 4 with limits.upgradeSurge ${surge}: at most ${peak} service processes run during a group upgrade under load, 0 requests fail, and the new group ends with 4`, async (t) => {
    if (nodeOnly(t)) return;
    if (!existsSync("/proc/self/environ")) return t.skip("counts processes through /proc (Linux)");
    const config = path.join(tempDir(), "config.json");
    await fs.writeFile(config, JSON.stringify({ dispatch: "manager", limits: { upgradeSurge: surge } }));
    const g = await serveGroup(["--config", config, "--app", HTTP_APP, "--workers", "4"]);
    await waitFor(async () => (await g.status()).workers.filter((w) => w.state === "ready").length === 4, "the first group's four", 20_000);
    const load = httpLoad("127.0.0.1", g.port, 16, { maxMs: 120_000 });
    let most = 0;
    let sampling = true;
    const sampler = (async () => {
      for (let i = 0; sampling && i < 5000; i++, await sleep(15)) most = Math.max(most, serviceProcessesUnder(g.pid));
    })();
    await sleep(300);
    const t0 = Date.now();
    await upgradeGroup(g);
    const handedOverMs = Date.now() - t0;
    await waitFor(
      async () => {
        const s = await g.status();
        return s.draining.length === 0 && s.workers.filter((w) => w.state === "ready").length === 4;
      },
      "the old group gone and the new one at four",
      30_000,
    );
    const rolledMs = Date.now() - t0;
    await sleep(200);
    sampling = false;
    await sampler;
    const report = await load.stop();
    assert.deepEqual(report.errors.slice(0, 5), [], `${report.errors.length} errors`);
    assert.equal(report.non2xx, 0);
    const steps = g.log().split("\n").filter((l) => /group_|worker_added|upgrade_/.test(l));
    assert.equal(most, peak, `the most service processes seen at once: ${most}; the group's log:\n${steps.join("\n")}`);
    if (surge === 1) assert.match(g.log(), /"group_rolling"/);
    t.diagnostic(`upgradeSurge ${surge}: at most ${most} service processes at once; handed over in ${handedOverMs} ms, four new ones after ${rolledMs} ms; ${report.ok} HTTP responses, 0 errors`);
  });
}
