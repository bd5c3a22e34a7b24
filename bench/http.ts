import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Resolver } from "node:dns/promises";
import { parseArgs } from "node:util";
import { Agent, Pool, request, type Dispatcher } from "undici";
import { createDispatcher } from "../src/http.ts";
import { cliCommand, REPO_ROOT, stopChild } from "../test/helpers/cli.ts";
import { freePort } from "../test/helpers/free_port.ts";
import { startDnsmasqOnLoopback } from "../test/helpers/name_peers.ts";
import { spawn } from "node:child_process";
import { tcpSocketsTo } from "./lib/os_sockets.ts";
import { sleep } from "./lib/proc.ts";
import { machineLine, startRun } from "./lib/result_file.ts";
import { median } from "./lib/stats.ts";
import { num } from "./lib/table.ts";

/**
 * perilink/http (src/http/): fetch()/undici through a dispatcher keyed by
 * server identity, against undici's own dispatchers.
 *
 * 1. sockets — one raw-mode perilink server (an HTTP app) on 127.0.0.1 and
 *    ::1, one port, reached by 2 names (dnsmasq on loopback, each name with
 *    both addresses) and the 2 addresses: one request by each origin through
 *    perilink's dispatcher and through a shared undici Agent resolving the
 *    names through the same dnsmasq; TCP sockets counted by the OS. Then a
 *    third name of the same server: the connections it opened.
 * 2. throughput — one origin, `--requests` GETs with 32 in flight, through
 *    perilink's dispatcher and undici's Pool to that origin with the same
 *    number of connections (1 and 4), alternating, medians of rounds.
 *
 * The server is its own process (`perilink serve`, the working tree); traffic on loopback.
 */

const NAMES = ["printer.test", "printer-alias.test"];
const LATE = "printer-late.test";
const APP = path.join(REPO_ROOT, "test/fixtures/http_app.ts");

async function load(dispatcher: Dispatcher, origin: string, count: number, inflight: number): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      const res = await request(`${origin}/r`, { dispatcher });
      await res.body.dump();
      if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
    }
  };
  await Promise.all(Array.from({ length: inflight }, worker));
  return count / ((performance.now() - t0) / 1000);
}

export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { rounds: { type: "string" }, requests: { type: "string" } } });
  const rounds = Number(values.rounds ?? 5);
  const requests = Number(values.requests ?? 20_000);
  const run = startRun("http", args);
  console.log(run.describe(`http: a raw-mode perilink server (HTTP app) on 127.0.0.1 and ::1; sockets for ${NAMES.length} names × 2 addresses; ${rounds} rounds × ${requests} GETs, 32 in flight`));
  console.log(machineLine(run.machine));
  const dir = mkdtempSync(path.join(os.tmpdir(), "perilink-bench-http-"));
  const port = await freePort();
  const serve = cliCommand(["serve", "--app", APP, "--access", "open", "--listen", `127.0.0.1:${port}`, "--listen", `[::1]:${port}`, "--state-dir", dir, "--log-level", "warn"]);
  const server = spawn(serve.cmd, serve.args, { cwd: REPO_ROOT, stdio: ["ignore", "ignore", "inherit"] });
  const dnsPort = await freePort();
  const dns = startDnsmasqOnLoopback(dnsPort, [...NAMES, LATE].map((n) => `${n},127.0.0.1,::1`));
  try {
    const probe = new Agent();
    for (let i = 0; ; i++) {
      try {
        await (await request(`http://127.0.0.1:${port}/`, { dispatcher: probe })).body.dump();
        break;
      } catch (err) {
        if (i > 100) throw err;
        await sleep(100);
      }
    }
    await probe.close(); // its socket would count below
    const settings = { rounds, requests, inflight: 32 };
    let sockets: Record<string, number> | null = null;
    let lateOpened: number | null = null;
    if ("skip" in dns) {
      run.report.line(`sockets: skipped (${dns.skip})`);
    } else {
      await sleep(300);
      const origins = [...NAMES.map((n) => `http://${n}:${port}`), `http://127.0.0.1:${port}`, `http://[::1]:${port}`];
      const ours = createDispatcher({ stateDir: false, resolution: { nameServers: [`127.0.0.1:${dnsPort}`], order: ["dns"] } });
      for (const o of origins) await (await request(`${o}/`, { dispatcher: ours })).body.dump();
      const oursSockets = tcpSocketsTo([port])?.size ?? NaN;
      const before = ours.servers().reduce((n, r) => n + r.opened, 0);
      await (await request(`http://${LATE}:${port}/`, { dispatcher: ours })).body.dump();
      lateOpened = ours.servers().reduce((n, r) => n + r.opened, 0) - before;
      await ours.close();
      await sleep(200);
      const resolver = new Resolver();
      resolver.setServers([`127.0.0.1:${dnsPort}`]);
      const lookup = (host: string, o: { all?: boolean }, cb: (e: Error | null, a: unknown, f?: number) => void): void => {
        const numeric = host === "127.0.0.1" || host === "::1" || host === "[::1]";
        const found = numeric ? Promise.resolve([{ address: host.replace(/[[\]]/g, ""), family: host.includes(":") ? 6 : 4 }]) : resolver.resolve4(host).then((a) => a.map((address) => ({ address, family: 4 })));
        found.then(
          (list) => (o.all ? cb(null, list) : cb(null, list[0]!.address, list[0]!.family)),
          (e: Error) => cb(e, o.all ? [] : ""),
        );
      };
      const agent = new Agent({ connect: { lookup: lookup as never } });
      for (const o of origins) await (await request(`${o}/`, { dispatcher: agent })).body.dump();
      const agentSockets = tcpSocketsTo([port])?.size ?? NaN;
      await agent.close();
      sockets = { perilink: oursSockets, undiciAgent: agentSockets };
      run.report.table(
        [`${NAMES.length} names × 2 addresses + the 2 addresses, one server`, "TCP sockets (OS)"],
        [
          ["perilink dispatcher", String(oursSockets)],
          ["undici Agent (shared)", String(agentSockets)],
        ],
      );
      run.report.line(
        `perilink: ${oursSockets} socket (target 1: ${oursSockets === 1 ? "met" : "MISSED"}); undici Agent: ${agentSockets} (target 4+: ${agentSockets >= 4 ? "met" : "MISSED"})`,
        `first request by a new name of the known server: ${lateOpened} new TCP connection${lateOpened === 1 ? "" : "s"} (target 0: ${lateOpened === 0 ? "met" : "MISSED"})`,
        "",
      );
    }

    const origin = `http://127.0.0.1:${port}`;
    const rates: Record<string, number[]> = {};
    for (const connections of [1, 4]) {
      for (let r = 0; r < rounds; r++) {
        const contenders: [string, () => Dispatcher][] = [
          [`undici Pool, ${connections} conn`, () => new Pool(origin, { connections })],
          [`perilink dispatcher, ${connections} conn`, () => createDispatcher({ stateDir: false, connections })],
        ];
        for (const [name, make] of r % 2 === 0 ? contenders : contenders.reverse()) {
          const d = make();
          await load(d, origin, 500, 32); // warm: connections open, code paths hot
          (rates[name] ??= []).push(await load(d, origin, requests, 32));
          await d.close();
        }
      }
    }
    const rows: string[][] = [];
    const ratios: Record<number, number> = {};
    for (const connections of [1, 4]) {
      const pool = median(rates[`undici Pool, ${connections} conn`]!);
      const ours = median(rates[`perilink dispatcher, ${connections} conn`]!);
      ratios[connections] = ours / pool;
      rows.push([`undici Pool, ${connections} connection${connections > 1 ? "s" : ""}`, num(pool), rates[`undici Pool, ${connections} conn`]!.map((x) => num(x)).join(" ")]);
      rows.push([`perilink dispatcher, ${connections} connection${connections > 1 ? "s" : ""} per server`, num(ours), rates[`perilink dispatcher, ${connections} conn`]!.map((x) => num(x)).join(" ")]);
    }
    run.report.table(["one origin, 32 GETs in flight", "req/s (median)", "rounds"], rows);
    run.report.line(...[1, 4].map((c) => `perilink / undici Pool at ${c} connection${c > 1 ? "s" : ""} = ${ratios[c]!.toFixed(2)} (target >= 0.90: ${ratios[c]! >= 0.9 ? "met" : "MISSED"})`));
    console.log(run.report.toString());
    run.write({ settings, sockets, lateNameConnections: lateOpened, throughput: { rates, ratios } });
  } finally {
    if (!("skip" in dns)) dns.child.kill();
    await stopChild(server);
    rmSync(dir, { recursive: true, force: true });
  }
}
