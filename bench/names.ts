import { Resolver } from "node:dns/promises";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { Agent as UndiciAgent, request as undiciRequest } from "undici";
import { createClient } from "../src/client/client.ts";
import { ClientSession } from "../src/client/client_session.ts";
import { identifyUdp } from "../src/client/identify.ts";
import { cliCommand, stopChild } from "../test/helpers/cli.ts";
import { startDnsmasq } from "../test/helpers/name_peers.ts";
import { createTopology, type Topology } from "../test/helpers/netns_topology.ts";
import { tcpSocketsTo } from "./lib/os_sockets.ts";
import { machineLine, startRun } from "./lib/result_file.ts";
import { median } from "./lib/stats.ts";
import { num } from "./lib/table.ts";

/**
 * Names (C6, C7) in the namespace topology (root; test/helpers/netns_topology.ts):
 * a perilink server and dnsmasq in the server host's namespace B.
 *
 * 1. first request by name — a fresh perilink client: connect by name
 *    (unicast DNS to dnsmasq) + one request, against the same steps by hand:
 *    a c-ares lookup against the same dnsmasq (`dns.Resolver`, what
 *    getaddrinfo does with that resolv.conf) + a session (net.connect and
 *    handshake) + the same request.
 * 2. sockets — 4 names × 2 addresses (direct and routed IPv4) of one server:
 *    one request by each name and each address, through one perilink client,
 *    a shared node:http Agent (keepAlive) and a shared undici Agent (both
 *    resolving the names through the same dnsmasq); TCP sockets counted by the OS.
 */

const ROUNDS = 20;
const NAMES = ["perisrv.test", "peri-alias.test", "peri-3.test", "peri-4.test"];

export async function main(args: string[]): Promise<void> {
  const run = startRun("names", args);
  const rounds = Number(args[args.indexOf("--rounds") + 1]) || ROUNDS;
  console.log(
    run.describe(
      `names: a perilink server and dnsmasq in namespace B of the netns topology; ${rounds} rounds of a first request by name (a cold client each round), ` +
        `then the TCP sockets for ${NAMES.length} names × 2 addresses (+ the 2 addresses) of one server`,
    ),
  );
  console.log(machineLine(run.machine));
  const made = await createTopology();
  if ("skip" in made) {
    console.log(`names benchmark skipped: ${made.skip}`);
    return;
  }
  const topo: Topology = made;
  const dir = mkdtempSync(path.join(os.tmpdir(), "perilink-bench-names-"));
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const httpPort = port + 1;
  const { direct, routed } = topo;
  const children = [];
  try {
    const serve = cliCommand(["serve", "--access", "open", "--listen", `${direct.server.v4}:${port}`, "--listen", `${routed.server.v4}:${port}`, "--state-dir", dir, "--log-level", "warn"]);
    children.push(topo.spawnInServer(serve.cmd, serve.args));
    const httpScript = `require("http").createServer((q,s)=>{q.resume();q.on("end",()=>s.end("ok"))}).listen(${httpPort},"0.0.0.0")`;
    children.push(topo.spawnInServer(process.execPath, ["-e", httpScript]));
    const dns = startDnsmasq(topo, direct.server.v4, NAMES.flatMap((n) => [`${n},${direct.server.v4}`, `${n},${routed.server.v4}`]).map((r) => r));
    if ("skip" in dns) {
      console.log(`names benchmark skipped: ${dns.skip}`);
      return;
    }
    children.push(dns.child);
    for (let i = 0; ; i++) {
      try {
        await identifyUdp(direct.server.v4, port, { timeoutMs: 300 });
        break;
      } catch (err) {
        if (i > 60) throw err;
      }
    }
    const resolution = { nameServers: [direct.server.v4], order: ["dns" as const], reverse: false };

    // 1. First request by name.
    const ours: number[] = [];
    const byHand: number[] = [];
    for (let r = 0; r < rounds; r++) {
      let t0 = performance.now();
      const c = createClient({ lingerMs: 0, resolution });
      const link = await c.connect({ host: "perisrv.test", port, app: "bench" });
      await link.request("info");
      ours.push(performance.now() - t0);
      await c.close();
      t0 = performance.now();
      const resolver = new Resolver();
      resolver.setServers([direct.server.v4]);
      const [address] = await resolver.resolve4("perisrv.test");
      const s = await ClientSession.connect({ host: address!, port, timeoutMs: 3000 });
      const ch = await s.openChannel("bench");
      await ch.request("info");
      byHand.push(performance.now() - t0);
      s.destroy();
    }

    // 2. Sockets for 4 names × 2 addresses.
    const resolver = new Resolver();
    resolver.setServers([direct.server.v4]);
    /** A `lookup` for node:net that asks the same dnsmasq (the root namespace's getaddrinfo does not know these names). */
    const lookup = (host: string, o: { all?: boolean }, cb: (e: Error | null, a: unknown, f?: number) => void): void => {
      const numeric = /^[\d.]+$/.test(host);
      (numeric ? Promise.resolve([host]) : resolver.resolve4(host)).then(
        (a) => (o.all ? cb(null, [{ address: a[0]!, family: 4 }]) : cb(null, a[0]!, 4)),
        (e: Error) => cb(e, o.all ? [] : ""),
      );
    };
    const hosts = [...NAMES, direct.server.v4, routed.server.v4];
    const c = createClient({ lingerMs: 60_000, resolution });
    const links = [];
    for (const h of hosts) links.push(await c.connect({ host: h, port, app: "bench" }));
    await Promise.all(links.map((l) => l.request("info")));
    const perilinkSockets = tcpSocketsTo([port])?.size ?? NaN;
    await c.close();
    const agent = new http.Agent({ keepAlive: true });
    for (const h of hosts) {
      await new Promise<void>((resolve, reject) => {
        http.get({ host: h, port: httpPort, agent, lookup: lookup as never }, (res) => res.resume().on("end", resolve)).on("error", reject);
      });
    }
    const httpSockets = tcpSocketsTo([httpPort])?.size ?? NaN;
    agent.destroy();
    await new Promise((r) => setTimeout(r, 200));
    const undici = new UndiciAgent({ connect: { lookup: lookup as never } });
    for (const h of hosts) {
      const res = await undiciRequest(`http://${h}:${httpPort}/`, { dispatcher: undici });
      await res.body.text();
    }
    const undiciSockets = tcpSocketsTo([httpPort])?.size ?? NaN;
    await undici.close();

    const rows = [
      ["first request by name: perilink (resolve + probe + session + request)", num(median(ours), 1), num(Math.max(...ours), 1)],
      ["first request by name: dns.Resolver + net.connect/handshake + request", num(median(byHand), 1), num(Math.max(...byHand), 1)],
    ];
    run.report
      .line(`names — first request by name, ${rounds} rounds, cold client each round (ms)`, "")
      .table(["case", "median", "max"], rows)
      .line("", `names — TCP sockets for ${NAMES.length} names × 2 addresses (+ the 2 addresses), one server`, "")
      .table(
        ["client", "sockets"],
        [
          ["perilink (one createClient)", String(perilinkSockets)],
          ["node:http Agent keepAlive (shared)", String(httpSockets)],
          ["undici Agent (shared)", String(undiciSockets)],
        ],
      );
    console.log("\n" + run.report.toString());
    const file = run.write({
      rounds,
      firstRequestMs: { perilink: ours, byHand },
      sockets: { hosts, perilink: perilinkSockets, http: httpSockets, undici: undiciSockets },
    });
    console.log(`\nwrote ${file}`);
  } finally {
    for (const ch of children) await stopChild(ch, 2000);
    await topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}
