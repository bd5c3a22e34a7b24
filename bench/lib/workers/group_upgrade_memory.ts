import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { controlRequest } from "../../../src/server/control_server.ts";
import type { ServerStatus } from "../../../src/server/server.ts";
import { freePort } from "../../../test/helpers/free_port.ts";
import type { LoadDone, StartLoad } from "../children/handoff_load.ts";
import { ensureFreshBundle, HTTP_APP } from "../handoff/services.ts";
import { readLoadRecords, OUTCOME_OK } from "../load_records.ts";
import { Child, procTable, sleep, stopProcess } from "../proc.ts";
import { pidAlive } from "../../../src/handoff/takeover.ts";

/**
 * The process tree's memory through one `--workers N` group upgrade under
 * connection-per-request HTTP load, with `limits.upgradeSurge` N (the whole
 * new group starts beside the old one) or 1 (rolling): the sum of VmRSS of
 * every process of the tree, sampled every 20 ms from /proc. Processes stay
 * followed once seen, so the new manager counts after the old one exits.
 */
export interface UpgradeMemoryRow {
  surge: number;
  workers: number;
  round: number;
  /** Tree RSS just before the upgrade, MiB. */
  beforeMiB: number;
  /** The highest tree RSS from the upgrade until the old group is gone and the new one is whole, MiB. */
  peakMiB: number;
  /** The most perilink processes (managers and service processes) at once. */
  peakProcesses: number;
  handoverMs: number;
  /** From the upgrade command until the new group has N ready and none drains. */
  wholeMs: number;
  requests: number;
  failed: number;
}

/** Follows a tree of processes: once a process is seen under it, it stays followed (reparented or not) until it exits. */
class TreeSampler {
  #followed = new Set<number>();
  peakKiB = 0;
  peakProcesses = 0;

  constructor(root: number) {
    this.#followed.add(root);
  }

  sample(): number {
    const table = procTable();
    for (const [pid, row] of table) if (row.zombie) table.delete(pid);
    for (let grew = true; grew; ) {
      grew = false;
      for (const [pid, { ppid }] of table) {
        if (!this.#followed.has(pid) && this.#followed.has(ppid)) {
          this.#followed.add(pid);
          grew = true;
        }
      }
    }
    let kib = 0;
    let perilink = 0;
    for (const pid of [...this.#followed]) {
      const row = table.get(pid);
      if (!row) {
        this.#followed.delete(pid);
        continue;
      }
      kib += row.rssKiB;
      perilink++;
    }
    this.peakKiB = Math.max(this.peakKiB, kib);
    this.peakProcesses = Math.max(this.peakProcesses, perilink);
    return kib;
  }
}

export async function upgradeMemoryOnce(surge: number, workers: number, round: number, loadChild: string, clients: number): Promise<UpgradeMemoryRow> {
  const port = await freePort();
  const stateDir = mkdtempSync(path.join(os.tmpdir(), "perilink-bench-roll-"));
  const config = path.join(stateDir, "config.json");
  writeFileSync(config, JSON.stringify({ dispatch: "manager", workers, limits: { upgradeSurge: surge } }));
  const bundle = ensureFreshBundle();
  const server = spawn(process.execPath, [bundle, "serve", "--config", config, "--access", "open", "--listen", `127.0.0.1:${port}`, "--state-dir", stateDir, "--app", HTTP_APP, "--log-level", "warn"], { stdio: ["ignore", "ignore", "pipe"] });
  let errText = "";
  server.stderr!.setEncoding("utf8").on("data", (s: string) => (errText = (errText + s).slice(-4000)));
  const status = (): Promise<ServerStatus | null> => controlRequest(stateDir, { op: "status" }).then((s) => s as ServerStatus, () => null);
  const whole = async (): Promise<boolean> => {
    const s = await status();
    return s !== null && s.draining.length === 0 && s.workers.filter((w) => w.state === "ready").length === workers;
  };
  const file = path.join(os.tmpdir(), `perilink-bench-roll-${process.pid}-${surge}.bin`);
  const load = new Child(loadChild);
  try {
    for (const end = Date.now() + 30_000; !(await whole()); await sleep(100)) {
      if (server.exitCode !== null || Date.now() > end) throw new Error(`perilink serve --workers ${workers} did not start: ${errText}`);
    }
    load.send({ type: "start", mode: "http-close", port, clients, maxMs: 90_000, maxRequests: 2_000_000, thinkMs: 0, file } satisfies StartLoad);
    await load.next("started", 20_000);
    await sleep(1500);
    const tree = new TreeSampler(server.pid!);
    const beforeKiB = tree.sample();
    tree.peakKiB = 0;
    tree.peakProcesses = 0;
    let sampling = true;
    const sampler = (async () => {
      for (let i = 0; sampling && i < 6000; i++, await sleep(20)) tree.sample();
    })();
    const t0 = Date.now();
    const up = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const c = spawn(process.execPath, [bundle, "upgrade", "--state-dir", stateDir, "--json", "--timeout", "60000"], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      c.stdout!.setEncoding("utf8").on("data", (s: string) => (out += s));
      c.stderr!.setEncoding("utf8").on("data", (s: string) => (out += s));
      c.once("exit", (code) => resolve({ code, out }));
    });
    const handoverMs = Date.now() - t0;
    if (up.code !== 0) throw new Error(`perilink upgrade failed: ${up.out}`);
    for (const end = Date.now() + 60_000; !(await whole()); await sleep(20)) {
      if (Date.now() > end) throw new Error("the new group did not become whole within 60 s");
    }
    const wholeMs = Date.now() - t0;
    await sleep(300);
    sampling = false;
    await sampler;
    load.send({ type: "stop" });
    const done = await load.next<LoadDone>("result", 30_000);
    const r = readLoadRecords(done.file, done.count);
    let failed = 0;
    for (let i = 0; i < r.count; i++) if (r.outcome[i] !== OUTCOME_OK) failed++;
    rmSync(done.file, { force: true });
    return { surge, workers, round, beforeMiB: beforeKiB / 1024, peakMiB: tree.peakKiB / 1024, peakProcesses: tree.peakProcesses, handoverMs, wholeMs, requests: r.count, failed };
  } finally {
    await load.stop(1000);
    // The upgraded manager is no child of ours: stop it through its pid in the state directory's status.
    const s = await status();
    await stopProcess(server, 3000);
    if (s && s.pid !== server.pid) {
      try {
        process.kill(s.pid, "SIGTERM");
      } catch {
        // gone
      }
      for (let i = 0; i < 100 && pidAlive(s.pid); i++) await sleep(50);
      if (pidAlive(s.pid)) process.kill(s.pid, "SIGKILL");
    }
    rmSync(stateDir, { recursive: true, force: true });
  }
}

