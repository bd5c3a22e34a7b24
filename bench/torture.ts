import path from "node:path";
import { parseArgs } from "node:util";
import { machineLine, Report, startRun } from "./lib/result_file.ts";
import { ATTACKS } from "./lib/torture/attacks/index.ts";
import { loadProfile } from "./lib/torture/bundles.ts";
import { runPhase, type PhaseSettings } from "./lib/torture/phase.ts";
import { formatProfile, P99_OVER_QUIET, RSS_BUDGET_MIB, verdicts, type ProfileResult } from "./lib/torture/report.ts";

/**
 * The server under attack: per build target, one `perilink serve` (the
 * target's bundle) with legitimate perilink clients sending requests all
 * along, first alone (the quiet run), then, on a fresh server and for the
 * same time, alongside every attack of lib/torture/attacks/ (random bytes,
 * never-reading PING floods, slow-loris handshakes, handshake floods past the
 * session limits, probe floods from 1,000 loopback sources, strangers whose
 * keys it does not trust asking for channels; and, from a trusted host gone
 * bad, a one-way message flood at an app whose handler awaits, half-sent
 * frames at the memory budget, every slot held by sessions with channels
 * from many addresses; and a poisoned name answer aimed at a client) while it is
 * upgraded 5 times and one more upgrade's new process is killed with
 * SIGKILL while it starts. Reports legitimate requests sent, failed and lost
 * to the kill, their p99 against the quiet run, the server's peak resident
 * memory against idle, and signed probe answers per second, beside the
 * targets.
 *
 *   npm run bench -- torture [--profile node20,pi-zero-2w] [--duration-ms 25000] [--clients 16]
 *     [--think-ms 5] [--upgrades 5] [--kill-at 3] [--kill-delay-ms 20] [--attacks all|name,…]
 *     [--probes-per-second 5000] [--handshakes-per-second 1000] [--stranger-handshakes-per-second 200] [--ping-connections 4]
 *     [--ping-max-mib 1024] [--loris-connections 32] [--random-workers 4] [--probe-sources 1000] [--message-bytes 1024]
 */

const NUMERIC: Record<string, { key: string; def: number; min: number; max: number }> = {
  "duration-ms": { key: "durationMs", def: 25_000, min: 2_000, max: 120_000 },
  "warmup-ms": { key: "warmupMs", def: 1_000, min: 0, max: 10_000 },
  clients: { key: "clients", def: 16, min: 1, max: 256 },
  "think-ms": { key: "thinkMs", def: 5, min: 0, max: 1_000 },
  upgrades: { key: "upgrades", def: 5, min: 0, max: 20 },
  "kill-at": { key: "killAt", def: 3, min: 0, max: 21 },
  "kill-delay-ms": { key: "killDelayMs", def: 20, min: 0, max: 10_000 },
  "tail-ms": { key: "tailMs", def: 500, min: 0, max: 5_000 },
};
const ATTACK_NUMERIC: Record<string, { key: string; def: number; min: number; max: number }> = {
  "probes-per-second": { key: "probesPerSecond", def: 5_000, min: 1, max: 50_000 },
  "probe-sources": { key: "probeSources", def: 1_000, min: 1, max: 1_000 },
  "handshakes-per-second": { key: "handshakesPerSecond", def: 1_000, min: 1, max: 10_000 },
  "stranger-handshakes-per-second": { key: "strangerHandshakesPerSecond", def: 200, min: 1, max: 10_000 },
  "ping-connections": { key: "pingConnections", def: 4, min: 1, max: 64 },
  "ping-max-mib": { key: "pingMaxMiB", def: 1024, min: 1, max: 16_384 },
  "loris-connections": { key: "lorisConnections", def: 32, min: 1, max: 1_000 },
  "random-workers": { key: "randomWorkers", def: 4, min: 1, max: 64 },
  "message-bytes": { key: "messageBytes", def: 1024, min: 1, max: 16 * 1024 * 1024 },
};

function numberOption(name: string, raw: string | undefined, spec: { def: number; min: number; max: number }): number {
  const v = raw === undefined ? spec.def : Number(raw);
  if (!Number.isInteger(v) || v < spec.min || v > spec.max) throw new RangeError(`--${name} takes an integer in ${spec.min}..${spec.max}, not ${raw}`);
  return v;
}

export async function main(args: string[]): Promise<void> {
  const run = startRun("torture", args);
  const options: Record<string, { type: "string"; default?: string }> = { profile: { type: "string", default: "node20,pi-zero-2w" }, attacks: { type: "string", default: "all" } };
  for (const name of [...Object.keys(NUMERIC), ...Object.keys(ATTACK_NUMERIC)]) options[name] = { type: "string" };
  const { values } = parseArgs({ args, options });
  const v = values as Record<string, string | undefined>;
  const settings: Record<string, number> = {};
  for (const [name, spec] of Object.entries(NUMERIC)) settings[spec.key] = numberOption(name, v[name], spec);
  const attackOptions: Record<string, number> = {};
  for (const [name, spec] of Object.entries(ATTACK_NUMERIC)) attackOptions[spec.key] = numberOption(name, v[name], spec);
  const attacks = v.attacks === "all" || v.attacks === undefined ? Object.keys(ATTACKS) : v.attacks.split(",").filter(Boolean);
  const unknown = attacks.filter((a) => !ATTACKS[a]);
  if (unknown.length > 0) throw new RangeError(`unknown attack(s) ${unknown.join(", ")}; known: ${Object.keys(ATTACKS).join(", ")}`);
  const s: PhaseSettings = { ...(settings as unknown as Omit<PhaseSettings, "attacks" | "attackOptions">), attacks, attackOptions };
  if (s.killAt > s.upgrades + 1) throw new RangeError(`--kill-at must be 0 (no kill) or 1..${s.upgrades + 1}`);

  const profiles = (v.profile ?? "").split(",").filter(Boolean).map(loadProfile);
  console.log(
    run.describe(
      `torture: per profile a quiet run, then a torture run, ${s.durationMs} ms each on a fresh server (127.0.0.1); ${s.clients} legitimate perilink links ` +
        `(one client, demo app "info", ${s.thinkMs} ms pause after each answer), ${s.warmupMs} ms warm-up; torture: ${attacks.join(", ")}; ` +
        `${s.upgrades} upgrades over the control socket${s.killAt > 0 ? ` and, as attempt #${s.killAt}, one whose new process is killed with SIGKILL ${s.killDelayMs} ms after it appears` : ""}`,
    ),
  );
  console.log(`${machineLine(run.machine)}, load average ${run.loadBefore.map((x) => x.toFixed(2)).join(" ")}`);

  const results: ProfileResult[] = [];
  for (const p of profiles) {
    console.log(`\n${p.name}: ${path.relative(process.cwd(), p.bundle)} (maxSessions ${p.server.maxSessions}, per peer ${p.server.maxSessionsPerPeer}, maxFrame ${p.server.maxFrameBytes})`);
    console.log("  quiet run");
    const quiet = await runPhase("quiet", p, s, console.log);
    console.log("  torture run");
    const torture = await runPhase("torture", p, s, console.log);
    const r: ProfileResult = { profile: p.name, bundle: p.bundle, limits: { server: p.server, probe: p.probe }, quiet, torture, verdicts: verdicts(p.name, p.probe, quiet, torture, s.upgrades) };
    results.push(r);
    const part = new Report();
    formatProfile(part, r);
    console.log("\n" + part.toString());
    run.report.line(...(run.report.blocks.length > 0 ? [""] : []), `${p.name} (${path.relative(process.cwd(), p.bundle)}):`).add(part);
  }
  const note =
    "failed = legitimate requests that got an error (refused, reset, timeout) or a non-2xx, started in the measured window; lost to kill -9 = failed requests " +
    `overlapping the killed upgrade (from its request to its answer + ${s.tailMs} ms). peak RSS = the larger of sampled VmRSS (every 200 ms) and VmHWM of any ` +
    "one server process; peak sum = old and new processes together. probes answered/s = signed answers the attackers received; counted/s = the servers' probes counters. " +
    "The attackers, the legitimate load and the server share this machine's CPUs, so the p99 also measures what the attackers take from the server's CPU.";
  console.log("\n" + note);
  run.report.line("", note);

  const file = run.write({
    settings: s,
    targets: { failedRequests: 0, rssOverIdleMiB: RSS_BUDGET_MIB, p99OverQuiet: P99_OVER_QUIET },
    profiles: results,
  });
  console.log(`\nresults: ${file}`);
}
