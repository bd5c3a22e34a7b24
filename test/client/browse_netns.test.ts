/**
 * Discovery against real peers in network namespaces (root; CI runs it): a
 * perilink server with the built-in DNS-SD responder in the server host's
 * namespace, found by `perilink browse` and by python3-zeroconf's browser,
 * and services a python3-zeroconf responder registers there (a third-party
 * responder, as avahi would be), one of them with a lying TXT. Every query
 * goes out on the direct line's veth only.
 */
import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import type { BrowsedServer } from "../../src/client/browse.ts";
import type { Identification } from "../../src/client/identify.ts";
import { instanceLabel } from "../../src/protocol/dnssd.ts";
import { VERSION } from "../../src/version.ts";
import { cliCommand, runCli, stopChild } from "../helpers/cli.ts";
import { probeUntil, sleep, tempDir } from "../helpers/fixtures.ts";
import { startZeroconfServices, zeroconfBrowse, zeroconfPython, type Started } from "../helpers/name_peers.ts";
import { createTopology, type Topology } from "../helpers/netns_topology.ts";

let topo: Topology | null = null;
let skipAll: string | false = false;
const PORT = randomInt(20_000, 30_000);
const PORT2 = PORT + 1;
const children: Started[] = [];
let advertised: Identification;
let plain: Identification;

/** `perilink serve` in the server namespace with this configuration. */
function serveInServer(t: Topology, config: object): void {
  const file = path.join(tempDir(), "config.json");
  writeFileSync(file, JSON.stringify({ access: "open", logLevel: "warn", stateDir: tempDir(), rescanIntervalMs: 0, ...config }));
  const { cmd, args } = cliCommand(["serve", "--config", file]);
  const child = t.spawnInServer(cmd, args, { cwd: process.cwd() });
  children.push({ child, log: () => "" });
}

async function browse(): Promise<BrowsedServer[]> {
  const r = await runCli(["browse", "--json", "--timeout", "2000", "--interface", topo!.direct.clientIf], { timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout || "[]") as BrowsedServer[];
}

before(async () => {
  const made = await createTopology();
  if ("skip" in made) {
    skipAll = made.skip;
    return;
  }
  topo = made;
  const v4 = topo.direct.server.v4;
  serveInServer(topo, { listen: [`${v4}:${PORT}`, `[${topo.direct.server.v6}]:${PORT}`], discovery: { advertise: "builtin" } });
  serveInServer(topo, { listen: [`${v4}:${PORT2}`] }); // not advertised: only a third-party responder names it
  advertised = await probeUntil(v4, PORT, 20_000);
  plain = await probeUntil(v4, PORT2, 20_000);
});

after(async () => {
  for (const c of children) if ("child" in c) await stopChild(c.child);
  await topo?.destroy();
});

test("perilink browse --json finds the server the built-in responder advertises, by its probed id", async (t) => {
  if (skipAll) return t.skip(skipAll);
  const rows = await browse();
  const row = rows.find((r) => r.serverId === advertised.serverId);
  assert.ok(row, JSON.stringify(rows));
  assert.equal(row.keyFingerprint, advertised.keyFingerprint);
  assert.deepEqual(row.names, [instanceLabel(os.hostname())]);
  assert.deepEqual(row.addresses, [`${topo!.direct.server.v4}:${PORT}`, `[${topo!.direct.server.v6}]:${PORT}`], "A and AAAA, each probed");
  assert.deepEqual(row.ports, [PORT]);
  assert.equal(row.version, VERSION);
  assert.equal(row.txt, "matches");
  assert.ok(!rows.some((r) => r.serverId === plain.serverId), "the server that does not advertise is not listed");
});

test("a python3-zeroconf browser sees the built-in responder's service with the server's TXT", async (t) => {
  if (skipAll) return t.skip(skipAll);
  const py = zeroconfPython();
  if (typeof py !== "string") return t.skip(py.skip);
  const found = await zeroconfBrowse(py, topo!.direct.client.v4, 4);
  const name = `${instanceLabel(os.hostname())}._perilink._tcp.local.`;
  const s = Object.entries(found).find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1];
  assert.ok(s, `zeroconf saw ${JSON.stringify(found)}`);
  assert.equal(s.port, PORT);
  assert.ok(s.addresses.includes(topo!.direct.server.v4), JSON.stringify(s.addresses));
  assert.deepEqual(s.txt, { id: advertised.serverId, fp: advertised.keyFingerprint, ver: VERSION, ports: String(PORT) });
});

test("browse lists services a python3-zeroconf responder registers, and flags the one whose TXT names another server", async (t) => {
  if (skipAll) return t.skip(skipAll);
  const v4 = topo!.direct.server.v4;
  const zc = startZeroconfServices(topo!, v4, [
    { instance: "zc-good", host: "zc-host.local", address: v4, port: PORT2, txt: { id: plain.serverId, fp: plain.keyFingerprint, ver: "1.2.3" } },
    // Claims to be the plain server, but points at the advertised one: the probe says who answers there.
    { instance: "zc-liar", host: "zc-host.local", address: v4, port: PORT, txt: { id: plain.serverId, fp: plain.keyFingerprint, ver: "6.6.6" } },
  ]);
  if ("skip" in zc) return t.skip(zc.skip);
  children.push(zc);
  const end = Date.now() + 10_000;
  while (!zc.log().includes("ready") && Date.now() < end) await sleep(100);
  assert.ok(zc.log().includes("ready"), zc.log());
  const rows = await browse();
  const good = rows.find((r) => r.serverId === plain.serverId);
  const liar = rows.find((r) => r.serverId === advertised.serverId);
  assert.ok(good && liar, JSON.stringify(rows));
  assert.deepEqual(good.names, ["zc-good"]);
  assert.equal(good.txt, "matches");
  assert.deepEqual(good.addresses, [`${v4}:${PORT2}`]);
  assert.deepEqual([...liar.names].sort(), [instanceLabel(os.hostname()), "zc-liar"].sort());
  assert.equal(liar.txt, "differs", "a TXT naming another id is flagged; the probe's id wins");
  assert.equal(rows.length, 2);
});
