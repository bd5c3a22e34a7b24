/**
 * Memory after churn: `serve` (the pi-zero-2w bundle with its memory budget) takes
 * CYCLES sessions one after another, each connect → 20 requests → close,
 * from a native client; RSS and heap (from status) are read before, at the
 * end, after a pause, and once more 10 s after the end (V8's own memory
 * reducer starts ~8 s after the last full collection). Used by bench/device.ts, and on its
 * own: tsx bench/lib/device_churn.ts [--cycles N] [--env K=V]... [--bundle FILE]
 */
import { execFile, spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import { ClientSession } from "../../src/client/client_session.ts";
import { heapBudgetFlags, withNodeOptions, type HeapBudget } from "../../src/runtime/heap_budget.ts";
import { mallocTuningEnv } from "../../src/runtime/malloc_tuning.ts";
import { readRssKiB, sleep, stopProcess } from "./proc.ts";
import { servedPort } from "./served_port.ts";

const exec = promisify(execFile);

export interface ChurnResult {
  cycles: number;
  idleRssKiB: number;
  peakRssKiB: number;
  afterRssKiB: number;
  afterMinusIdleKiB: number;
  /** RSS 10 s after the churn stopped, minus idle. */
  after10sMinusIdleKiB: number;
  heapUsedIdleKiB: number;
  heapUsedAfterKiB: number;
  ms: number;
}

export async function measureChurn(node: string, bundle: string, env: NodeJS.ProcessEnv, cycles = 4000, pauseMs = 3000): Promise<ChurnResult> {
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), "perilink-churn-"));
  // 4,000 sessions from one address in a row: the handshake rates (an admission policy, not a cost) are off.
  const config = path.join(stateDir, "churn-config.json");
  await fs.writeFile(config, JSON.stringify({ limits: { sessionRatePerPeer: 0, sessionRateGlobal: 0 } }));
  const child = spawn(node, [bundle, "serve", "--access", "open", "--config", config, "--state-dir", stateDir, "--listen", "127.0.0.1:0"], { env, stdio: ["ignore", "ignore", "pipe"] });
  try {
    const port = await servedPort(child, "serve", 60_000);
    const heap = async (): Promise<number> => {
      const { stdout } = await exec(node, [bundle, "status", "--state-dir", stateDir, "--json"], { env });
      return JSON.parse(stdout).memory.heapUsedBytes / 1024;
    };
    await sleep(pauseMs);
    const idleRssKiB = readRssKiB(child.pid!);
    const heapUsedIdleKiB = await heap();
    let peakRssKiB = idleRssKiB;
    const payload = Buffer.alloc(64, 1);
    const t0 = performance.now();
    for (let i = 0; i < cycles; i++) {
      const s = await ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 10_000 });
      const ch = await s.openChannel("churn", "127.0.0.1", port);
      for (let r = 0; r < 20; r++) await ch.request(payload);
      await s.close();
      if (i % 250 === 0) peakRssKiB = Math.max(peakRssKiB, readRssKiB(child.pid!));
    }
    const ms = performance.now() - t0;
    peakRssKiB = Math.max(peakRssKiB, readRssKiB(child.pid!));
    await sleep(pauseMs);
    const afterRssKiB = readRssKiB(child.pid!);
    const heapUsedAfterKiB = await heap();
    await sleep(Math.max(0, 10_000 - pauseMs));
    const after10sMinusIdleKiB = readRssKiB(child.pid!) - idleRssKiB;
    return { cycles, idleRssKiB, peakRssKiB, afterRssKiB, afterMinusIdleKiB: afterRssKiB - idleRssKiB, after10sMinusIdleKiB, heapUsedIdleKiB, heapUsedAfterKiB, ms };
  } finally {
    await stopProcess(child);
    await fs.rm(stateDir, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { cycles: { type: "string" }, env: { type: "string", multiple: true }, bundle: { type: "string" } } });
  const target = JSON.parse(await fs.readFile(new URL("../../targets/pi-zero-2w.json", import.meta.url), "utf8")) as { memory: HeapBudget };
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...mallocTuningEnv(target.memory.mallocMmapThresholdBytes, {}),
    NODE_OPTIONS: withNodeOptions(undefined, heapBudgetFlags(target.memory, [], undefined)),
  };
  for (const kv of (values.env as string[] | undefined) ?? []) {
    const i = kv.indexOf("=");
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const bundle = values.bundle ?? path.join(fileURLToPath(new URL("../../", import.meta.url)), "dist", "pi-zero-2w", "perilink.mjs");
  console.log(JSON.stringify(await measureChurn(process.execPath, bundle, env, Number(values.cycles ?? 4000))));
}
