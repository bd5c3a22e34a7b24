/**
 * C6/C7 against real name services in network namespaces (root; CI runs it):
 * dnsmasq, llmnrd, nmbd and an mDNS responder in the server host's
 * namespace, a perilink server there on both lines' addresses.
 */
import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { after, afterEach, before, test } from "node:test";
import { createClient, type PerilinkClient } from "../../src/client/client.ts";
import { NetbiosSource } from "../../src/client/names/netbios_source.ts";
import { broadcastRoutes } from "../../src/client/names/interfaces.ts";
import { cliCommand, runCli, stopChild } from "../helpers/cli.ts";
import { probeUntil, sleep, tempDir } from "../helpers/fixtures.ts";
import { serverInterfaceOf, startDnsmasq, startLlmnrd, startNmbd, startZeroconf, type Started } from "../helpers/name_peers.ts";
import { createTopology, type Topology } from "../helpers/netns_topology.ts";
import { tcpConnectionsTo } from "../helpers/os_sockets.ts";

let topo: Topology | null = null;
let skipAll: string | false = false;
const PORT = randomInt(20_000, 40_000);
let serverId = "";
let otherServerId = "";
let otherAddress = "";
const peers: Record<"dns" | "llmnr" | "netbios" | "mdns", string | false> = { dns: false, llmnr: false, netbios: false, mdns: false };
const children: Started[] = [];

/** Waits until `host:port` answers a probe (a server starting in the namespace). */
function serveInServer(t: Topology, listen: string[]): Started {
  const { cmd, args } = cliCommand(["serve", "--access", "open", ...listen.flatMap((l) => ["--listen", l]), "--state-dir", tempDir(), "--log-level", "warn"]);
  const child = t.spawnInServer(cmd, args, { cwd: process.cwd() });
  return { child, log: () => "" };
}

before(async () => {
  const made = await createTopology();
  if ("skip" in made) {
    skipAll = made.skip;
    return;
  }
  topo = made;
  const { direct, routed } = topo;
  const bDirect = serverInterfaceOf(topo, direct.server.v4);
  // A second server on one more address of the routed line (not on the interface the
  // multicast responders answer for): a name that points there is another server.
  otherAddress = routed.server.v4.replace(/\.2$/, ".3");
  await topo.ip(["-n", topo.serverNs, "addr", "add", `${otherAddress}/24`, "dev", serverInterfaceOf(topo, routed.server.v4)]);

  const all = [direct.server.v4, `[${direct.server.v6}]`, routed.server.v4, `[${routed.server.v6}]`].map((a) => `${a}:${PORT}`);
  children.push(serveInServer(topo, all), serveInServer(topo, [`${otherAddress}:${PORT}`]));

  const dns = startDnsmasq(topo, direct.server.v4, [
    `perisrv.test,peri-alias.test,${direct.server.v4},${direct.server.v6}`,
    `perisrv.test,peri-alias.test,${routed.server.v4},${routed.server.v6}`,
    `other.test,${otherAddress}`,
  ]);
  const llmnr = startLlmnrd(topo, "perisrv", bDirect);
  const nb = startNmbd(topo, tempDir("perilink-nmbd-"), "PERISRV", "PERIALIAS", bDirect);
  const mdns = startZeroconf(topo, "perisrv.local", [direct.server.v4], direct.server.v4);
  for (const [k, s] of [["dns", dns], ["llmnr", llmnr], ["netbios", nb], ["mdns", mdns]] as const) {
    if ("skip" in s) peers[k] = s.skip;
    else children.push(s);
  }
  serverId = (await probeUntil(direct.server.v4, PORT, 20_000)).serverId;
  otherServerId = (await probeUntil(otherAddress, PORT, 20_000)).serverId;
  if (!peers.netbios) {
    // nmbd answers only once it has registered its names (about 1.5 s).
    const src = new NetbiosSource(() => broadcastRoutes(137, [topo!.direct.clientIf]), 50);
    const end = Date.now() + 20_000;
    while ((await src.resolve("PERISRV", { timeoutMs: 500 })).length === 0) {
      if (Date.now() > end) {
        peers.netbios = "nmbd did not answer within 20 s";
        break;
      }
    }
  }
  await sleep(300); // dnsmasq, llmnrd and the mDNS responder start in well under this
});

after(async () => {
  for (const c of children) if ("child" in c) await stopChild(c.child, 2000);
  await topo?.destroy();
});

function client(): PerilinkClient {
  const t = topo!;
  const c = createClient({
    lingerMs: 0,
    resolution: { nameServers: [t.direct.server.v4], interfaces: [t.direct.clientIf, t.routed.clientIf], timeoutMs: 1500, order: ["hosts", "dns", "mdns", "llmnr", "netbios"] },
  });
  open.add(c);
  return c;
}

/** Clients of the test that is running: each test closes its own before the next counts sockets. */
const open = new Set<PerilinkClient>();
async function closeClients(): Promise<void> {
  await Promise.all([...open].map((c) => c.close()));
  open.clear();
}

afterEach(closeClients);

test("applications connecting by each name (DNS, LLMNR, NetBIOS, mDNS) and each numeric address of the server host ride 1 TCP socket; the address list shows every (name, address, source)", async (t) => {
  if (skipAll) return t.skip(skipAll);
  const { direct, routed } = topo!;
  const c = client();
  const hosts: string[] = [];
  const expectRows: string[] = [];
  if (!peers.dns) {
    hosts.push("perisrv.test", "peri-alias.test");
    for (const n of ["perisrv.test", "peri-alias.test"]) for (const a of [direct.server.v4, direct.server.v6, routed.server.v4, routed.server.v6]) expectRows.push(`${n} ${a} dns`);
  } else t.diagnostic(`dns: ${peers.dns}`);
  if (!peers.llmnr) {
    hosts.push("perisrv");
    expectRows.push(`perisrv ${direct.server.v4} llmnr`);
  } else t.diagnostic(`llmnr: ${peers.llmnr}`);
  if (!peers.netbios) {
    hosts.push("PERIALIAS");
    expectRows.push(`PERISRV ${direct.server.v4} netbios`, `PERIALIAS ${direct.server.v4} netbios`);
  } else t.diagnostic(`netbios: ${peers.netbios}`);
  if (!peers.mdns) {
    hosts.push("perisrv.local");
    expectRows.push(`perisrv.local ${direct.server.v4} mdns`);
  } else t.diagnostic(`mdns: ${peers.mdns}`);
  if (!peers.netbios) hosts.push("PERISRV");
  hosts.push(direct.server.v4, direct.server.v6, routed.server.v4, routed.server.v6);
  const links = [];
  for (const host of hosts) links.push(await c.connect({ host, port: PORT, app: `app-${host}` }));
  await Promise.all(links.map((l) => l.request("info", { timeoutMs: 5000 })));
  assert.equal(tcpConnectionsTo([PORT]), 1, `one socket for ${hosts.length} hosts, counted by the OS`);
  assert.equal(c.socketsInUse, 1);
  assert.deepEqual(new Set(c.sessions().map((r) => r.serverId)), new Set([serverId]));
  const rows = c.addresses();
  // Names compare without case (the list keeps the latest spelling an application used).
  const seen = new Set(rows.map((r) => `${r.name} ${r.address} ${r.source}`.toLowerCase()));
  for (const e of expectRows) assert.ok(seen.has(e.toLowerCase()), `address list has ${e}; it has:\n${[...seen].join("\n")}`);
  for (const r of rows) if (r.address === direct.server.v4) assert.equal(r.serverId, serverId);
  for (const r of rows) if (r.address.startsWith("fe80:")) assert.match(r.address, /%/, "a link-local answer keeps the interface it came from");
  t.diagnostic(`address list: ${rows.length} rows, ${links.length} links on 1 socket`);
});

test("a name that points at a different server (another identifier) gets its own session", async (t) => {
  if (skipAll) return t.skip(skipAll);
  if (peers.dns) return t.skip(peers.dns);
  const c = client();
  const a = await c.connect({ host: "perisrv.test", port: PORT, app: "a" });
  const b = await c.connect({ host: "other.test", port: PORT, app: "b" });
  await Promise.all([a.request("info"), b.request("info")]);
  assert.equal(tcpConnectionsTo([PORT]), 2);
  assert.deepEqual(new Set(c.sessions().map((r) => r.serverId)), new Set([serverId, otherServerId]));
  assert.notEqual(serverId, otherServerId);
});

test("the reverse lookup of a numeric address adds the server's other addresses (PTR, then forward)", async (t) => {
  if (skipAll) return t.skip(skipAll);
  if (peers.dns) return t.skip(peers.dns);
  const { direct, routed } = topo!;
  const c = client();
  const link = await c.connect({ host: routed.server.v4, port: PORT, app: "a" });
  const end = Date.now() + 5000;
  const wanted = [direct.server.v4, direct.server.v6, routed.server.v6];
  // Each address joins once its own probe proved it: they arrive one by one, not together.
  while (!wanted.every((a) => link.entry.addresses.some((x) => x.host === a)) && Date.now() < end) await sleep(20);
  const hosts = link.entry.addresses.map((x) => x.host);
  for (const a of wanted) assert.ok(hosts.includes(a), `${a} learned from the PTR name: ${hosts.join(", ")}`);
  assert.ok(c.addresses().some((r) => r.source === "ptr" && r.name === "perisrv.test"));
});

test("the system resolver (getaddrinfo) source resolves through the namespace's resolv.conf: perilink call by name in the server host", async (t) => {
  if (skipAll) return t.skip(skipAll);
  if (peers.dns) return t.skip(peers.dns);
  const topoNs = topo!;
  topoNs.etcFile(topoNs.serverNs, "resolv.conf", `nameserver ${topoNs.direct.server.v4}\n`);
  const r = await runCli(["call", `perisrv.test:${PORT}`, `peri-alias.test:${PORT}`, "--resolve", "hosts", "--json"], {
    prefix: ["ip", "netns", "exec", topoNs.serverNs],
    env: { ...process.env, PERILINK_STATE_DIR: tempDir() },
  });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { sessions: { sessionNumber: number }[]; addresses: { name: string; address: string; source: string }[] };
  assert.equal(new Set(out.sessions.map((s) => s.sessionNumber)).size, 1, "both names on one session");
  const rows = new Set(out.addresses.map((a) => `${a.name} ${a.address} ${a.source}`));
  assert.ok(rows.has(`perisrv.test ${topoNs.direct.server.v4} hosts`), [...rows].join("\n"));
  assert.ok(rows.has(`peri-alias.test ${topoNs.routed.server.v4} hosts`), [...rows].join("\n"));
});
