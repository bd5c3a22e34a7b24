/**
 * `npm run bench -- lines`: the better line (C8) and dead-line detection
 * (C5) in the two-line namespace topology (test/helpers/netns_topology.ts;
 * needs root): what one line measure costs, how long moving every link to
 * a better line takes with requests in flight (and how many fail: target
 * 0), and how long requests stall when the session's line dies silently.
 *
 * Options: --rounds N (default 5), --measures N per line (default 10).
 */
import type { ChildProcess } from "node:child_process";
import { randomInt } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createClient, LINE_MAX_HOPS, type PerilinkClient } from "../src/client/client.ts";
import { identifyUdp } from "../src/client/identify.ts";
import { measureLine, type LineMeasure } from "../src/client/line/line_measure.ts";
import { linuxLineSystem } from "../src/client/line/line_system.ts";
import type { Link } from "../src/client/link.ts";
import { cliCommand, stopChild } from "../test/helpers/cli.ts";
import { createTopology, type Line, type Topology } from "../test/helpers/netns_topology.ts";
import { machineLine, startRun } from "./lib/result_file.ts";
import { median } from "./lib/stats.ts";
import { num } from "./lib/table.ts";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function intArg(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(`--${name}`);
  const n = i < 0 ? dflt : Number(args[i + 1]);
  if (!Number.isInteger(n) || n < 1 || n > 1000) throw new RangeError(`--${name} must be an integer in 1..1000`);
  return n;
}

async function startServer(topo: Topology, stateDir: string): Promise<{ port: number; serverId: string; child: ChildProcess }> {
  const port = randomInt(20_000, 60_000);
  const { cmd, args } = cliCommand(["serve", "--access", "open", "--listen", `${topo.direct.server.v4}:${port}`, "--listen", `${topo.routed.server.v4}:${port}`, "--state-dir", stateDir, "--log-level", "warn"]);
  const child = topo.spawnInServer(cmd, args);
  child.stdout?.resume();
  child.stderr?.resume();
  const end = Date.now() + 30_000;
  let serverId = "";
  for (const host of [topo.direct.server.v4, topo.routed.server.v4]) {
    for (;;) {
      try {
        serverId = (await identifyUdp(host, port, { timeoutMs: 500 })).serverId;
        break;
      } catch (err) {
        if (Date.now() > end || child.exitCode !== null) throw new Error(`server not answering on ${host}: ${(err as Error).message}`);
        await sleep(100);
      }
    }
  }
  return { port, serverId, child };
}

/** Requests one after another on every link (`depth` at a time each) until stopped; counts answers and failures. */
function load(links: Link[], depth: number, idempotent: boolean): { stop(): Promise<{ ok: number; failed: string[] }> } {
  let stopping = false;
  let ok = 0;
  const failed: string[] = [];
  const end = Date.now() + 60_000;
  const loops = links.flatMap((l, i) =>
    Array.from({ length: depth }, async (_, d) => {
      for (let n = 0; !stopping && Date.now() < end; n++) {
        const body = `${i}.${d}.${n}`;
        try {
          const r = await l.request(body, { idempotent });
          if (r.toString() === body) ok++;
          else failed.push(`${body}: wrong answer`);
        } catch (err) {
          failed.push(`${body}: ${(err as { code?: string }).code ?? (err as Error).message}`);
        }
      }
    }),
  );
  return {
    async stop() {
      stopping = true;
      await Promise.all(loops);
      return { ok, failed };
    },
  };
}

const onAddress = (c: PerilinkClient): string | null => c.sessions()[0]?.communicationAddress ?? null;

async function until(cond: () => boolean, ms: number): Promise<number> {
  const start = performance.now();
  while (!cond()) {
    if (performance.now() - start > ms) return Infinity;
    await sleep(2);
  }
  return performance.now() - start;
}

export async function main(args: string[]): Promise<void> {
  const run = startRun("lines", args);
  const rounds = intArg(args, "rounds", 5);
  const measures = intArg(args, "measures", 10);
  console.log(
    run.describe(
      `lines: the two-line netns topology; ${measures} measures per line, then ${rounds} rounds of moving 8 links (4 in flight each) to the better line ` +
        `and ${rounds} rounds of a silent line death under load (4 in flight)`,
    ),
  );
  console.log(machineLine(run.machine));
  const t = await createTopology();
  if ("skip" in t) {
    console.log(`lines: skipped (${t.skip})`);
    return;
  }
  const stateDir = mkdtempSync(path.join(os.tmpdir(), "perilink-bench-lines-"));
  let child: ChildProcess | null = null;
  try {
    const srv = await startServer(t, stateDir);
    child = srv.child;
    const { port, serverId } = srv;

    // 1. One line measure: probes sent, wall time, figures. Spaced 250 ms apart: the
    //    server signs at most 50 probes per second per source (the probe rate limit).
    const measured: Record<string, LineMeasure[]> = {};
    for (const [name, line] of [["direct", t.direct], ["routed", t.routed]] as [string, Line][]) {
      measured[name] = [];
      for (let i = 0; i < measures; i++) {
        measured[name]!.push(await measureLine(line.server.v4, port, { system: linuxLineSystem, maxHops: LINE_MAX_HOPS, timeoutMs: 1000, serverId }));
        await sleep(250);
      }
    }

    // 2. Moving 8 links (4 requests in flight each, not idempotent) from the routed line to the
    //    direct one: from the connect that names the direct address to every link on it.
    const moves: { ms: number; requests: number; failed: number }[] = [];
    for (let r = 0; r < rounds; r++) {
      const c = createClient({ lingerMs: 0 });
      try {
        const links: Link[] = [];
        for (let i = 0; i < 8; i++) links.push(await c.connect({ host: t.routed.server.v4, port, app: `app${i}` }));
        const run = load(links, 4, false);
        await sleep(300);
        const start = performance.now();
        const extra = await c.connect({ host: t.direct.server.v4, port, app: "namer" });
        await until(() => onAddress(c) === t.direct.server.v4, 10_000);
        const ms = performance.now() - start;
        await sleep(300);
        const res = await run.stop();
        extra.close();
        moves.push({ ms, requests: res.ok + res.failed.length, failed: res.failed.length });
      } finally {
        await c.close();
      }
      await sleep(500);
    }

    // 3. The session's line dies silently (blackhole both ways) under load: time from the
    //    failure to the first answer through the other address; idempotent requests failed.
    const deaths: { ms: number; requests: number; failed: number }[] = [];
    for (let r = 0; r < rounds; r++) {
      const c = createClient({ lingerMs: 0 });
      try {
        const a = await c.connect({ host: t.direct.server.v4, port, app: "a" });
        await c.connect({ host: t.routed.server.v4, port, app: "b" });
        const run = load([a], 4, true);
        await sleep(300);
        const failAt = performance.now();
        await t.setBlackhole(t.direct, true);
        let ms = Infinity;
        try {
          ms = await until(() => onAddress(c) === t.routed.server.v4, 10_000);
          // the first answer after the move
          const probe = await a.request("after", { idempotent: true }).then(() => performance.now() - failAt, () => Infinity);
          ms = Math.max(ms, probe);
          await sleep(300);
        } finally {
          await t.setBlackhole(t.direct, false);
        }
        const res = await run.stop();
        deaths.push({ ms, requests: res.ok + res.failed.length, failed: res.failed.length });
      } finally {
        await c.close();
      }
      await sleep(500);
    }

    const rows: string[][] = [];
    for (const [name, ms] of Object.entries(measured)) {
      const ok = ms.filter((m) => m.reachable);
      const last = ok[ok.length - 1];
      rows.push([
        `measure one line (${name})`,
        `${num(median(ms.map((m) => m.ms)), 1)} ms`,
        `${num(median(ms.map((m) => m.probesSent)))} probes`,
        last ? `${last.bandwidthMbps ?? "?"} Mb/s, ${last.routers} routers, MTU ${last.pathMtu}, RTT ${num(median(ok.map((m) => m.rttMs ?? NaN)), 2)} ms` : "unreachable",
        `${ok.length}/${ms.length} reachable`,
      ]);
    }
    rows.push([
      "move 8 links to the better line (32 in flight)",
      `${num(median(moves.map((m) => m.ms)), 0)} ms`,
      `${num(moves.reduce((s, m) => s + m.requests, 0))} requests`,
      `failed ${moves.reduce((s, m) => s + m.failed, 0)}`,
      `${rounds} rounds, max ${num(Math.max(...moves.map((m) => m.ms)), 0)} ms`,
    ]);
    rows.push([
      "silent line death → requests flow again",
      `${num(median(deaths.map((m) => m.ms)), 0)} ms`,
      `${num(deaths.reduce((s, m) => s + m.requests, 0))} requests`,
      `failed ${deaths.reduce((s, m) => s + m.failed, 0)}`,
      `${rounds} rounds, max ${num(Math.max(...deaths.map((m) => m.ms)), 0)} ms`,
    ]);
    run.report.table(["lines", "median", "cost / volume", "figures", "notes"], rows);
    console.log(run.report.toString());
    const file = run.write({ rounds, measures, measured, moves, deaths });
    console.log(`\nwritten ${file}`);
  } finally {
    if (child) await stopChild(child, 3000);
    await t.destroy();
    rmSync(stateDir, { recursive: true, force: true });
  }
}
