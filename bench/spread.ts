import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { createClient, type HostClient, type Link } from "../src/index.ts";
import { ensureFreshBundle, now, startPerilink, type LogEvent, type Replacement } from "./lib/handoff/services.ts";
import { sleep } from "./lib/proc.ts";
import { machineLine, startRun } from "./lib/result_file.ts";
import { median, percentile } from "./lib/stats.ts";
import { num } from "./lib/table.ts";

/**
 * Spreading GOAWAY over a window after an upgrade (`limits.goAwaySpreadMs`),
 * against sending it to every session at once: `sessions` perilink clients
 * (one session each, as many hosts would hold) send the demo app a request,
 * pause `think-ms`, and again; the server (the node20 bundle, session mode)
 * is upgraded once per round. Per contender: the new process's peak CPU (the
 * busiest 100 ms from /proc/PID/stat, in % of one core) and its CPU time in
 * the 2 s after the handover, while the sessions come over with a handshake
 * (a signature and a key exchange) each; and the latency of the requests
 * that began in the upgrade window (from the command to 2 s after it)
 * against steady state. Contenders alternate order between rounds.
 *
 *   npm run bench -- spread [--sessions 256] [--rounds 3] [--spread-ms 0,500,1000] [--think-ms 50]
 *
 * All sessions come from 127.0.0.1, standing for that many hosts of a LAN:
 * the server's per-peer session limits are lifted for the benchmark; the
 * global rate limit (500/s, burst 1000) stays.
 */

const STEADY_MS = 2000;
const WINDOW_AFTER_MS = 2000;
const CPU_SAMPLE_MS = 20;
const CPU_WINDOW_MS = 100;
const MAX_REQUESTS = 2_000_000;
const TICK_MS = 10; // USER_HZ 100 on Linux

interface RoundResult {
  spreadMs: number;
  upgrade: Replacement;
  peakCpuPct: number;
  cpuMs2s: number;
  steadyP99: number;
  windowP50: number;
  windowP99: number;
  windowMax: number;
  windowRequests: number;
  failed: number;
  errors: Record<string, number>;
}

/** Cumulative user + system CPU of `pid` in ms (clock ticks of /proc/PID/stat); NaN once it is gone. */
function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * TICK_MS;
  } catch {
    return NaN;
  }
}

/** Samples `pid`'s CPU every CPU_SAMPLE_MS for `forMs`: the busiest CPU_WINDOW_MS (% of one core) and the CPU ms used in the first 2 s. */
async function sampleCpu(pid: number, forMs: number): Promise<{ peakPct: number; first2s: number }> {
  const samples: [number, number][] = [];
  const end = now() + forMs;
  while (now() < end) {
    const c = cpuMs(pid);
    if (Number.isNaN(c)) break;
    samples.push([now(), c]);
    await sleep(CPU_SAMPLE_MS);
  }
  let peak = 0;
  let first2s = 0;
  for (let i = 0, j = 0; i < samples.length; i++) {
    while (j < samples.length && samples[j]![0] - samples[i]![0] < CPU_WINDOW_MS) j++;
    if (j >= samples.length) break;
    peak = Math.max(peak, ((samples[j]![1] - samples[i]![1]) / (samples[j]![0] - samples[i]![0])) * 100);
  }
  const t0 = samples[0]?.[0] ?? 0;
  for (const [t, c] of samples) if (t - t0 <= 2000) first2s = c - samples[0]![1];
  return { peakPct: peak, first2s };
}

async function oneRound(bundle: string, spreadMs: number, sessions: number, thinkMs: number): Promise<RoundResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "perilink-bench-spread-"));
  const config = path.join(dir, "config.json");
  writeFileSync(config, JSON.stringify({ limits: { goAwaySpreadMs: spreadMs, maxSessionsPerPeer: 4 * sessions, sessionRatePerPeer: 100_000, sessionBurstPerPeer: 100_000 } }));
  let handedOver: ((e: LogEvent) => void) | null = null;
  const service = await startPerilink(bundle, null, "cli", 1, "open", {
    args: ["--config", config],
    onEvent: (e) => {
      if (e.event === "upgrade_handed_over") handedOver?.(e);
    },
  });
  const clients: HostClient[] = [];
  const start = new Float64Array(MAX_REQUESTS);
  const latency = new Float64Array(MAX_REQUESTS);
  const ok = new Uint8Array(MAX_REQUESTS);
  const errors: Record<string, number> = {};
  let count = 0;
  let running = true;
  try {
    const links: Link[] = [];
    for (let i = 0; i < sessions; i++) {
      const client = createClient({ lingerMs: 0, stateDir: false, agent: false });
      clients.push(client);
      links.push(await client.connect({ host: "127.0.0.1", port: service.port, app: `s${i}` }));
    }
    const deadline = Date.now() + 60_000;
    const loops = links.map(async (link) => {
      while (running && count < MAX_REQUESTS && Date.now() < deadline) {
        const i = count++;
        start[i] = now();
        try {
          await link.request("info", { timeoutMs: 10_000 });
          ok[i] = 1;
        } catch (err) {
          const key = `${(err as { code?: string }).code ?? ""} ${(err as Error).message}`.slice(0, 160);
          errors[key] = (errors[key] ?? 0) + 1;
        }
        latency[i] = now() - start[i]!;
        await sleep(thinkMs);
      }
    });
    const loadStart = now();
    await sleep(STEADY_MS);
    const newPid = new Promise<number>((resolve) => (handedOver = (e) => resolve(Number(e.fields.newPid))));
    const cmdStart = now();
    const cpu = newPid.then((pid) => sampleCpu(pid, WINDOW_AFTER_MS + 1000));
    const upgrade = await service.replace();
    const cmdEnd = now();
    const usage = upgrade.ok ? await cpu : { peakPct: NaN, first2s: NaN };
    await sleep(Math.max(0, cmdEnd + WINDOW_AFTER_MS - now()));
    running = false;
    await Promise.all(loops);
    const pick = (from: number, to: number): Float64Array => {
      const xs: number[] = [];
      for (let i = 0; i < count; i++) if (start[i]! >= from && start[i]! < to && ok[i] === 1) xs.push(latency[i]!);
      return Float64Array.from(xs).sort();
    };
    const steady = pick(loadStart + 500, cmdStart);
    const window = pick(cmdStart, cmdEnd + WINDOW_AFTER_MS);
    let failed = 0;
    for (let i = 0; i < count; i++) if (ok[i] === 0) failed++;
    return {
      spreadMs,
      upgrade,
      peakCpuPct: usage.peakPct,
      cpuMs2s: usage.first2s,
      steadyP99: percentile(steady, 99),
      windowP50: percentile(window, 50),
      windowP99: percentile(window, 99),
      windowMax: window.length > 0 ? window[window.length - 1]! : NaN,
      windowRequests: window.length,
      failed,
      errors,
    };
  } finally {
    running = false;
    await Promise.all(clients.map((c) => c.close()));
    await service.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      sessions: { type: "string", default: "256" },
      rounds: { type: "string", default: "3" },
      "spread-ms": { type: "string", default: "0,500,1000" },
      "think-ms": { type: "string", default: "50" },
    },
  });
  const sessions = Number(values.sessions);
  const rounds = Number(values.rounds);
  const thinkMs = Number(values["think-ms"]);
  const spreads = values["spread-ms"]!.split(",").map(Number);
  const settings = { sessions, rounds, spreads, thinkMs, steadyMs: STEADY_MS, windowAfterMs: WINDOW_AFTER_MS };
  const run = startRun("spread", args);
  console.log(`spread: ${sessions} sessions (one client each, a request every ${thinkMs} ms after each answer), one upgrade a round, GOAWAY spread over ${spreads.join(" / ")} ms, ${rounds} rounds`);
  console.log(machineLine(run.machine));
  const bundle = ensureFreshBundle();
  const results: RoundResult[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const s of r % 2 === 0 ? spreads : [...spreads].reverse()) {
      const res = await oneRound(bundle, s, sessions, thinkMs);
      results.push(res);
      console.log(
        `  round ${r + 1}, spread ${s} ms: peak CPU ${num(res.peakCpuPct)}%, CPU ${num(res.cpuMs2s)} ms, window p99 ${num(res.windowP99, 1)} ms (steady ${num(res.steadyP99, 1)}), failed ${res.failed}${res.upgrade.ok ? "" : ` — upgrade failed: ${res.upgrade.error}`}`,
      );
    }
  }
  const of = (s: number, f: (x: RoundResult) => number): number => median(results.filter((x) => x.spreadMs === s).map(f));
  const base = spreads[0]!;
  run.report.table(
    ["GOAWAY spread", "new process peak CPU (100 ms)", "its CPU, 2 s after handover", "steady p99 ms", "window p50 ms", "window p99 ms", "window max ms", "failed"],
    spreads.map((s) => [
      s === 0 ? "0 (all at once)" : `${s} ms`,
      `${num(of(s, (x) => x.peakCpuPct))}%`,
      `${num(of(s, (x) => x.cpuMs2s))} ms`,
      num(of(s, (x) => x.steadyP99), 1),
      num(of(s, (x) => x.windowP50), 1),
      num(of(s, (x) => x.windowP99), 1),
      num(of(s, (x) => x.windowMax), 1),
      String(results.filter((x) => x.spreadMs === s).reduce((n, x) => n + x.failed, 0)),
    ]),
  );
  run.report.line(
    ...spreads
      .filter((s) => s !== base)
      .map(
        (s) =>
          `spread ${s} ms / all at once: peak CPU ${(of(s, (x) => x.peakCpuPct) / of(base, (x) => x.peakCpuPct)).toFixed(2)}×, window p99 ${(of(s, (x) => x.windowP99) / of(base, (x) => x.windowP99)).toFixed(2)}× (medians of ${rounds} rounds)`,
      ),
  );
  console.log("\n" + run.report.toString());
  run.write({ settings, results });
}
