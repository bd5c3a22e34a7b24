import type { Report } from "../result_file.ts";
import { num } from "../table.ts";
import type { Counters } from "./attack.ts";
import { ATTACKS } from "./attacks/index.ts";
import type { PhaseResult } from "./phase.ts";

/** Peak resident memory allowed above idle, MiB, per build target. */
export const RSS_BUDGET_MIB: Record<string, number> = { node20: 64, "pi-zero-2w": 32 };
/** Legitimate p99 under torture, at most this many times the quiet run's. */
export const P99_OVER_QUIET = 5;

export interface ProfileResult {
  profile: string;
  bundle: string;
  limits: Record<string, unknown>;
  quiet: PhaseResult;
  torture: PhaseResult;
  verdicts: Verdicts;
}

export interface Verdicts {
  failedRequests: { value: number; target: number; met: boolean };
  peakRss: { peakMiB: number; idleMiB: number; budgetMiB: number; met: boolean };
  p99: { tortureMs: number; quietMs: number; ratio: number; target: number; met: boolean };
  upgrades: { ok: number; planned: number; met: boolean };
  /** Signed probe answers per second against the target's server-wide probe budget (rate + burst spread over the run). */
  probeRate: { countedPerSec: number; budgetPerSec: number; met: boolean } | null;
  killRollback: { killed: boolean; rolledBack: boolean; met: boolean } | null;
  /** The poisoned-name client: requests and channels that reached the rogue server (target 0). */
  poisonedName: { toRogue: number; refused: number; viaDevice: number; met: boolean } | null;
}

const MiB = (kib: number): number => kib / 1024;

export function verdicts(profile: string, probeLimits: Record<string, number>, quiet: PhaseResult, torture: PhaseResult, plannedUpgrades: number): Verdicts {
  const failed = torture.failedOther + quiet.legit.failed + quiet.legit.non2xx;
  const budget = RSS_BUDGET_MIB[profile] ?? RSS_BUDGET_MIB.node20!;
  const idle = MiB(torture.idleRssKiB);
  const peak = MiB(Math.max(torture.memory.peakHwmKiB, torture.memory.peakRssKiB));
  const ratio = torture.legit.p99Ms / quiet.legit.p99Ms;
  const plain = torture.upgrades.filter((u) => u.kind === "upgrade");
  const kill = torture.upgrades.find((u) => u.kind === "kill-9");
  const rate = probeLimits.globalRatePerSecond;
  // Each serving process has its own bucket, full when it starts: the first and one per successful upgrade.
  const processes = 1 + plain.filter((u) => u.ok).length;
  const probeBudget = rate === undefined ? NaN : rate + (processes * (probeLimits.globalBurst ?? 0)) / (torture.measuredMs / 1000);
  return {
    probeRate: Number.isFinite(probeBudget) && Number.isFinite(torture.probesCountedPerSec)
      ? { countedPerSec: torture.probesCountedPerSec, budgetPerSec: probeBudget, met: torture.probesCountedPerSec <= probeBudget }
      : null,
    failedRequests: { value: failed, target: 0, met: failed === 0 },
    peakRss: { peakMiB: peak, idleMiB: idle, budgetMiB: budget, met: peak <= idle + budget },
    p99: { tortureMs: torture.legit.p99Ms, quietMs: quiet.legit.p99Ms, ratio, target: P99_OVER_QUIET, met: ratio <= P99_OVER_QUIET },
    upgrades: { ok: plain.filter((u) => u.ok).length, planned: plannedUpgrades, met: plain.filter((u) => u.ok).length === plannedUpgrades },
    poisonedName: torture.attacks["poisoned-name"]
      ? (() => {
          const p = torture.attacks["poisoned-name"]!;
          const toRogue = (p.answeredByRogue ?? 0) + (p.rogueChannels ?? 0);
          return { toRogue, refused: p.refusedChanged ?? 0, viaDevice: p.okViaDevice ?? 0, met: toRogue === 0 && (p.refusedChanged ?? 0) > 0 };
        })()
      : null,
    killRollback: kill ? { killed: kill.killedPid !== null, rolledBack: kill.rolledBack === true, met: kill.killedPid !== null && kill.rolledBack === true } : null,
  };
}

const mark = (ok: boolean): string => (ok ? "met" : "MISSED");

/** The counters worth a line, in a stable order; activeMs shown as seconds. */
function countersLine(c: Counters): string {
  return Object.entries(c)
    .map(([k, v]) => (k === "activeMs" ? `active ${num(v / 1000, 1)} s` : `${k} ${num(v)}`))
    .join(", ");
}

/** Adds one profile's tables and verdicts to `out`. */
export function formatProfile(out: Report, r: ProfileResult): void {
  const row = (p: PhaseResult): string[] => [
    p.phase,
    num(p.legit.requests),
    num(p.failedOther),
    num(p.lostToKill),
    num(p.legit.reqPerSec),
    num(p.legit.p50Ms, 2),
    num(p.legit.p99Ms, 2),
    num(p.legit.maxMs, 1),
    num(p.outsideUpgrades.p99Ms, 2),
    num(MiB(p.idleRssKiB), 1),
    num(MiB(p.memory.peakRssKiB), 1),
    num(MiB(p.memory.peakHwmKiB), 1),
    num(MiB(p.memory.peakSumKiB), 1),
    num(p.probesAnsweredPerSec),
    num(p.probesCountedPerSec),
  ];
  out.table(
    ["phase", "legit requests", "failed", "lost to kill -9", "req/s", "p50 ms", "p99 ms", "max ms", "p99 outside upgrades", "idle RSS MiB", "peak RSS MiB", "peak HWM MiB", "peak sum MiB", "probes answered/s", "probes counted/s"],
    [row(r.quiet), row(r.torture)],
  );
  out.line("");
  out.table(
    ["attack", "counters"],
    Object.entries(r.torture.attacks).map(([kind, c]) => [ATTACKS[kind]?.label ?? kind, countersLine(c)]),
  );
  const sc = r.torture.memory.counters;
  out.line(
    `server counters (the serving process at the end, whose totals carry every generation's): sessions accepted ${num(sc.sessionsAccepted ?? NaN)}, refused ${num(sc.sessionsRefused ?? NaN)}, ` +
      `protocol errors ${num(sc.protocolErrors ?? NaN)}, probes answered ${num(sc.probes ?? NaN)}, dropped ${num(sc.probesDropped ?? NaN)}; ` +
      `status answered ${r.torture.memory.statusAnswered}, unanswered ${r.torture.memory.statusFailed}; server warnings logged ${r.torture.serverWarnings}`,
  );
  for (const st of [...r.quiet.memory.stalls, ...r.torture.memory.stalls]) {
    out.line(
      `STALL at ${st.at} (serving pid ${st.servingPid}): ` +
        st.procs.map((p) => `pid ${p.pid} state ${p.state}, ${p.cpuTicks} CPU ticks, ${p.threads} threads, wchan ${p.wchan || "-"}${p.stack ? `, stack:\n${p.stack}\n` : ""}`).join("; "),
    );
  }
  const errs = Object.entries(r.torture.loadErrors).sort((a, b) => b[1] - a[1]).slice(0, 3);
  if (errs.length > 0) out.line(`legitimate failures by message: ${errs.map(([m, n]) => `${n}x ${m.slice(0, 100)}`).join("; ")}`);
  if (r.quiet.loadBounded || r.torture.loadBounded) out.line("WARNING: the legitimate load stopped at its bound before the phase ended");

  const v = r.verdicts;
  out.line("");
  out.line(`targets (${r.profile}):`);
  out.line(
    `  0 legitimate requests failed: ${num(v.failedRequests.value)} (torture ${num(r.torture.failedOther)}, quiet ${num(r.quiet.legit.failed + r.quiet.legit.non2xx)}; ` +
      `${num(r.torture.lostToKill)} lost in the kill -9 upgrade's window reported apart) -> ${mark(v.failedRequests.met)}`,
  );
  const capped = r.torture.attacks["ping-flood"]?.capped === 1 ? " (the PING flood stopped at its byte cap with the server taking every byte: this peak is a floor)" : "";
  out.line(
    `  peak RSS <= idle + ${v.peakRss.budgetMiB} MiB: ${num(v.peakRss.peakMiB, 1)} MiB vs ${num(v.peakRss.idleMiB, 1)} + ${v.peakRss.budgetMiB} = ` +
      `${num(v.peakRss.idleMiB + v.peakRss.budgetMiB, 1)} MiB -> ${mark(v.peakRss.met)}${capped}`,
  );
  out.line(
    `  legitimate p99 <= ${v.p99.target}x quiet: ${num(v.p99.tortureMs, 2)} ms vs ${v.p99.target} x ${num(v.p99.quietMs, 2)} = ${num(v.p99.target * v.p99.quietMs, 2)} ms ` +
      `(${num(v.p99.ratio, 1)}x) -> ${mark(v.p99.met)}`,
  );
  if (v.probeRate) {
    out.line(
      `  signed probes/s <= the server-wide probe budget of targets/${r.profile}.json (globalRatePerSecond + globalBurst per serving process, over the run): ` +
        `${num(v.probeRate.countedPerSec)}/s vs ${num(v.probeRate.budgetPerSec)}/s -> ${mark(v.probeRate.met)}`,
    );
  }
  out.line(`  ${v.upgrades.planned} upgrades under attack: ${v.upgrades.ok} ok -> ${mark(v.upgrades.met)}`);
  if (v.poisonedName) {
    out.line(
      `  a poisoned name gets the rogue server nothing: ${num(v.poisonedName.toRogue)} requests or channels reached it; ` +
        `${num(v.poisonedName.refused)} connects refused as PERILINK_SERVER_CHANGED, ${num(v.poisonedName.viaDevice)} reached the device -> ${mark(v.poisonedName.met)}`,
    );
  }
  if (v.killRollback) {
    out.line(
      `  kill -9 of the new process during an upgrade: ${v.killRollback.killed ? "killed" : "NOT killed (not found in time)"}, ` +
        `${v.killRollback.rolledBack ? "rolled back, the old process kept serving" : "NOT rolled back"} -> ${mark(v.killRollback.met)}`,
    );
  }
}
