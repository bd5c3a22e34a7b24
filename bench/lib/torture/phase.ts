import { rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { AttackDone, StartAttack } from "../children/torture_attacker.ts";
import type { LoadDone, StartLoad } from "../children/handoff_load.ts";
import { now, startPerilink, type Service } from "../handoff/services.ts";
import { OUTCOME_FAILED, readLoadRecords, recordStats, type RecordStats } from "../load_records.ts";
import { Child, readMemKiB, sleep } from "../proc.ts";
import { readFileSync } from "node:fs";
import type { Counters } from "./attack.ts";
import type { Profile } from "./bundles.ts";
import { ServerWatch, type WatchSummary } from "./server_watch.ts";
import { killedUpgrade, plainUpgrade, type UpgradeAttempt } from "./upgrades.ts";

const LOAD_CHILD = fileURLToPath(new URL("../children/handoff_load.ts", import.meta.url));
const ATTACKER_CHILD = fileURLToPath(new URL("../children/torture_attacker.ts", import.meta.url));
const TORTURE_APP = fileURLToPath(new URL("./torture_app.mjs", import.meta.url));
const MAX_REQUESTS = 2_000_000;

export interface PhaseSettings {
  durationMs: number;
  warmupMs: number;
  clients: number;
  thinkMs: number;
  /** Plain upgrades in the torture phase. */
  upgrades: number;
  /** Which attempt (1-based, among upgrades + 1) is the killed one; 0 for none. */
  killAt: number;
  killDelayMs: number;
  /** A failed request overlapping [start, end + tailMs] of the killed upgrade counts as lost to it. */
  tailMs: number;
  attacks: string[];
  /** Passed to every attack (each reads the keys it knows). */
  attackOptions: Record<string, number>;
}

export interface PhaseResult {
  phase: "quiet" | "torture";
  /** Requests that started in the measured window (answered or failed). */
  legit: RecordStats & { reqPerSec: number };
  /** Failed requests that overlap the killed upgrade's window (counted apart from `failedOther`). */
  lostToKill: number;
  failedOther: number;
  /** Latency of the requests that overlap no upgrade window. */
  outsideUpgrades: RecordStats;
  loadErrors: Record<string, number>;
  loadBounded: boolean;
  idleRssKiB: number;
  memory: WatchSummary;
  upgrades: UpgradeAttempt[];
  attacks: Record<string, Counters>;
  /** Signed probe answers per second: as the attackers received them, and from the servers' `probes` counters. */
  probesAnsweredPerSec: number;
  probesCountedPerSec: number;
  measuredMs: number;
  serverWarnings: number;
}

/** Sends `stop` to every child and collects its answer; a child that does not answer in time is reported with empty counters. */
async function stopAttackers(children: { kind: string; child: Child }[]): Promise<Record<string, Counters>> {
  const out: Record<string, Counters> = {};
  await Promise.all(
    children.map(async ({ kind, child }) => {
      child.send({ type: "stop" });
      try {
        out[kind] = (await child.next<AttackDone>("result", 15_000)).counters;
      } catch (err) {
        process.stderr.write(`torture: attack ${kind} gave no result: ${(err as Error).message}\n`);
        out[kind] = {};
      }
    }),
  );
  return out;
}

/** SIGKILLs `pid` if it still runs with `marker` (the server's state directory) on its command line, so a reused pid is never hit. */
function killIfOurs(pid: number, marker: string): void {
  try {
    if (!readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(marker)) return;
    process.kill(pid, "SIGKILL");
  } catch {
    // gone
  }
}

/**
 * One phase on a fresh server (`perilink serve` from the profile's bundle,
 * demo app, 127.0.0.1, port chosen by the kernel): the legitimate load (its
 * own process) for a warm-up and then `durationMs` measured; in the torture
 * phase the attackers (a process each) run for the whole measured window
 * and the upgrades are spread over it. Every process started here is ended
 * before it returns, on failure too.
 */
export async function runPhase(phase: "quiet" | "torture", profile: Profile, s: PhaseSettings, log: (line: string) => void): Promise<PhaseResult> {
  // Only trusted keys, as a device runs by default: the load uses the state directory's own key; strangers are refused.
  const service: Service = await startPerilink(profile.bundle, TORTURE_APP, "control", 1, "keys");
  const stateDir = service.info().stateDir as string;
  const watch = new ServerWatch(stateDir);
  const file = path.join(os.tmpdir(), `perilink-bench-torture-${process.pid}-${profile.name}-${phase}.bin`);
  const load = new Child(LOAD_CHILD);
  const attackers: { kind: string; child: Child }[] = [];
  const onSignal = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\n${signal}: stopping every process this benchmark started\n`);
    for (const a of attackers) a.child.process.kill("SIGKILL");
    load.process.kill("SIGKILL");
    void service.stop().finally(() => {
      for (const pid of watch.pids()) killIfOurs(pid, stateDir);
      process.exit(130);
    });
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const first = await watch.status(5000);
    if (!first) throw new Error("the server does not answer status over its control socket");
    await sleep(1000);
    watch.sample();
    const idleRssKiB = readMemKiB(first.pid)?.rss ?? NaN;
    watch.start(200, 1000);

    const budgetMs = s.warmupMs + s.durationMs + 90_000;
    load.send({ type: "start", mode: "perilink", port: service.port, clients: s.clients, maxMs: budgetMs, maxRequests: MAX_REQUESTS, thinkMs: s.thinkMs, file, stateDir } satisfies StartLoad);
    await load.next("started", 30_000);
    await sleep(s.warmupMs);

    if (phase === "torture") {
      const target = {
        host: "127.0.0.1",
        port: service.port,
        maxSessions: profile.server.maxSessions,
        maxSessionsPerPeer: profile.server.maxSessionsPerPeer,
        handshakeTimeoutMs: profile.server.handshakeTimeoutMs,
        maxFrameBytes: profile.server.maxFrameBytes,
        maxBufferedBytes: profile.server.maxBufferedBytes,
        stateDir,
      };
      const deadline = Date.now() + s.durationMs + 60_000;
      for (const kind of s.attacks) {
        const child = new Child(ATTACKER_CHILD);
        attackers.push({ kind, child });
        child.send({ type: "start", kind, target, options: { ...s.attackOptions, deadline } } satisfies StartAttack);
      }
      await Promise.all(attackers.map((a) => a.child.next("started", 30_000)));
      log(`    attacks running: ${s.attacks.join(", ")}`);
    }

    const probesBefore = (await watch.status(2000))?.counters.probes ?? 0;
    const t0 = now();
    const upgrades: UpgradeAttempt[] = [];
    if (phase === "torture") {
      const attempts = s.upgrades + (s.killAt > 0 ? 1 : 0);
      const gap = s.durationMs / (attempts + 1);
      for (let i = 1; i <= attempts; i++) {
        await sleep(t0 + i * gap - now());
        if (now() >= t0 + s.durationMs) break;
        const u = i === s.killAt ? await killedUpgrade(stateDir, watch, s.killDelayMs) : await plainUpgrade(service, watch);
        upgrades.push(u);
        const what = u.kind === "kill-9" ? `upgrade with kill -9 of new pid ${u.killedPid ?? "(not found)"} after ${u.killedAfterMs ?? "-"} ms` : "upgrade";
        const outcome = u.ok ? "ok" : `failed${u.rolledBack ? ", rolled back" : ""}: ${u.error}`;
        log(`    #${i} ${what}: ${outcome}; serving pid ${u.pidBefore} -> ${u.pidAfter} (${Math.round(u.endedAt - u.startedAt)} ms)`);
      }
    }
    await sleep(t0 + s.durationMs - now());
    const t1 = now();

    const attacks = await stopAttackers(attackers);
    load.send({ type: "stop" });
    const done = await load.next<LoadDone>("result", 30_000);
    watch.sample();
    await watch.status(5000);
    watch.stop();

    const rec = readLoadRecords(done.file, done.count);
    const inMeasure = (start: number): boolean => start >= t0 && start < t1;
    const windows = upgrades.map((u) => ({ kind: u.kind, from: u.startedAt, to: u.endedAt + s.tailMs }));
    const overlaps = (start: number, end: number, kind?: string): boolean => windows.some((w) => (kind === undefined || w.kind === kind) && start < w.to && end >= w.from);
    const legit = recordStats(rec, (start) => inMeasure(start));
    let lostToKill = 0;
    for (let i = 0; i < rec.count; i++) {
      const start = rec.start[i]!;
      if (rec.outcome[i] === OUTCOME_FAILED && inMeasure(start) && overlaps(start, start + rec.latency[i]!, "kill-9")) lostToKill++;
    }
    const memory = watch.summary();
    const probe = attacks["probe-flood"];
    const measuredMs = t1 - t0;
    return {
      phase,
      legit: { ...legit, reqPerSec: (legit.requests * 1000) / measuredMs },
      lostToKill,
      failedOther: legit.failed + legit.non2xx - lostToKill,
      outsideUpgrades: recordStats(rec, (start, end) => inMeasure(start) && !overlaps(start, end)),
      loadErrors: done.errors,
      loadBounded: done.bounded,
      idleRssKiB,
      memory,
      upgrades,
      attacks,
      probesAnsweredPerSec: probe && probe.activeMs ? ((probe.answered ?? 0) * 1000) / probe.activeMs : NaN,
      probesCountedPerSec: phase === "torture" ? (((memory.counters.probes ?? 0) - probesBefore) * 1000) / measuredMs : NaN,
      measuredMs,
      serverWarnings: ((service.info().warnings as unknown[] | undefined) ?? []).length,
    };
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    watch.stop();
    await Promise.all(attackers.map((a) => a.child.stop(2000)));
    await load.stop(5000);
    await service.stop();
    for (const pid of watch.pids()) killIfOurs(pid, stateDir);
    rmSync(file, { force: true });
  }
}
