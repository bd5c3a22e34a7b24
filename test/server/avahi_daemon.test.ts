/**
 * `"discovery": {"advertise": "avahi"}` against a real avahi-daemon (root;
 * CI runs it): avahi-daemon runs in the server host's network namespace and
 * in a mount namespace of its own, where a temporary directory is bind-mounted
 * over /etc/avahi/services and a tmpfs over /run (this machine's /etc/avahi
 * and /run are never touched). `perilink serve` joins both namespaces, so it
 * writes the file at the default path, and is found from the other end of the
 * veth by `perilink browse` and python3-zeroconf; a seamless upgrade keeps it
 * advertised, a stop (SIGTERM) withdraws it, a start after the stop brings it
 * back. Every query goes out on the direct line's veth only.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomInt } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import type { BrowsedServer } from "../../src/client/browse.ts";
import type { Identification } from "../../src/client/identify.ts";
import { multicastRoutes } from "../../src/client/names/interfaces.ts";
import { MDNS_GROUPS } from "../../src/client/names/multicast_source.ts";
import { browseInstances, type FoundInstance } from "../../src/client/names/service_browser.ts";
import { VERSION } from "../../src/version.ts";
import { cliCommand, REPO_ROOT, runCli, stopChild } from "../helpers/cli.ts";
import { probeUntil, sleep, tempDir, waitFor } from "../helpers/fixtures.ts";
import { serverInterfaceOf, which, zeroconfBrowse, zeroconfPython } from "../helpers/name_peers.ts";
import { createTopology, type Topology } from "../helpers/netns_topology.ts";
import { killPids, pidAlive } from "../helpers/pid_alive.ts";

let topo: Topology | null = null;
let skipAll: string | false = false;
let avahi: ChildProcess | null = null;
let avahiLog = "";
// Made here, not in before(): node:test runs an after() registered in a hook when that hook ends.
const dir = tempDir();
const servicesDir = tempDir();
const stateDir = tempDir();
const configFile = path.join(dir, "config.json");
const PORT = randomInt(20_000, 30_000);
/** avahi's host name, which its `%h` in the file becomes: our own, so no other responder on the link (a host's avahi-daemon) takes it first. */
const INSTANCE = `plk-${randomInt(1e6, 1e7)}`;
/** Serving processes (the one started here, the one its upgrade started), killed after the file if still there. */
const servers = new Set<number>();
let serving: ChildProcess | null = null;
let serveLog = "";
let id: Identification;

const serviceFile = (): string => readFileSync(path.join(servicesDir, "perilink.service"), "utf8");

/** `perilink serve` in avahi-daemon's network and mount namespaces (nsenter execs: its pid is the server's). */
function serve(): ChildProcess {
  const { cmd, args } = cliCommand(["serve", "--config", configFile]);
  const child = spawn("nsenter", ["-t", String(avahi!.pid), "-m", "-n", `--wd=${REPO_ROOT}`, "--", cmd, ...args], { cwd: REPO_ROOT, stdio: ["ignore", "ignore", "pipe"] });
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (serveLog += s));
  servers.add(child.pid!);
  return child;
}

/** What answers a `_perilink._tcp` PTR query on the direct line, unprobed (what avahi advertises, whether or not a server is there). */
function query(): Promise<FoundInstance[]> {
  return browseInstances(multicastRoutes(MDNS_GROUPS.v4, MDNS_GROUPS.v6, [topo!.direct.clientIf]), { timeoutMs: 1000 });
}

async function browse(): Promise<BrowsedServer[]> {
  const r = await runCli(["browse", "--json", "--timeout", "2000", "--interface", topo!.direct.clientIf], { timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout || "[]") as BrowsedServer[];
}

/** Until avahi-daemon has logged `what` `times` times in all. */
async function avahiLogged(what: string, times: number, ms = 15_000): Promise<void> {
  await waitFor(() => avahiLog.split(what).length - 1 >= times, `avahi-daemon to log "${what}" (${times}×); it logged:\n${avahiLog}`, ms);
}

async function advertisedWithin(ms: number): Promise<FoundInstance> {
  let last: FoundInstance[] = [];
  const end = Date.now() + ms;
  while (Date.now() < end) {
    last = await query();
    const mine = last.find((i) => i.port === PORT);
    if (mine) return mine;
  }
  throw new Error(`not advertised within ${ms} ms: ${JSON.stringify(last)}`);
}

async function goneWithin(ms: number): Promise<void> {
  let last: FoundInstance[] = [];
  const end = Date.now() + ms;
  while (Date.now() < end) {
    last = await query();
    if (last.length === 0) return;
  }
  throw new Error(`still advertised ${ms} ms after the stop: ${JSON.stringify(last)}`);
}

before(async () => {
  const daemon = which("avahi-daemon");
  if (!daemon) return void (skipAll = "avahi-daemon is not installed (Debian: avahi-daemon)");
  if (!which("unshare") || !which("nsenter")) return void (skipAll = "unshare and nsenter (util-linux) are not installed");
  const made = await createTopology();
  if ("skip" in made) return void (skipAll = made.skip);
  topo = made;
  const { v4, v6 } = topo.direct.server;
  writeFileSync(configFile, JSON.stringify({ access: "open", logLevel: "warn", stateDir, rescanIntervalMs: 0, listen: [`${v4}:${PORT}`, `[${v6}]:${PORT}`], discovery: { advertise: "avahi" } }));
  const conf = path.join(dir, "avahi-daemon.conf");
  const iface = serverInterfaceOf(topo, v4);
  writeFileSync(conf, `[server]\nuse-ipv4=yes\nuse-ipv6=yes\nhost-name=${INSTANCE}\nallow-interfaces=${iface}\nenable-dbus=no\n[wide-area]\nenable-wide-area=no\n[publish]\npublish-hinfo=no\npublish-workstation=no\n`);
  // The services directory is compiled in (/etc/avahi/services): ours is bind-mounted over it, and
  // /run (its pid file and socket) is a tmpfs, in a mount namespace that goes with its last process.
  const script = `mount -t tmpfs none /run && mkdir /run/avahi-daemon && mount --bind ${servicesDir} /etc/avahi/services && exec ${daemon} -f ${conf} --no-drop-root --no-chroot --no-rlimits --no-proc-title`;
  avahi = topo.spawnInServer("unshare", ["-m", "--propagation", "private", "sh", "-c", script]);
  avahi.stdout!.setEncoding("utf8").on("data", (s: string) => (avahiLog += s));
  avahi.stderr!.setEncoding("utf8").on("data", (s: string) => (avahiLog += s));
  await avahiLogged("Server startup complete", 1);
});

after(async () => {
  if (serving) await stopChild(serving, 5000);
  for (const pid of servers) if (pidAlive(pid)) process.kill(pid, "SIGTERM");
  await waitFor(() => [...servers].every((p) => !pidAlive(p)), "the servers to stop", 10_000).catch(() => killPids(servers));
  if (avahi) await stopChild(avahi, 5000);
  await topo?.destroy();
});

test("avahi-daemon advertises the service file perilink serve writes: perilink browse and python3-zeroconf find it with its TXT", { timeout: 60_000 }, async (t) => {
  if (skipAll) return t.skip(skipAll);
  serving = serve();
  id = await probeUntil(topo!.direct.server.v4, PORT, 20_000, () => `the server logged:\n${serveLog}`);
  await avahiLogged("successfully established", 1);
  assert.match(serviceFile(), new RegExp(`<port>${PORT}</port>`));
  const rows = await browse();
  const row = rows.find((r) => r.serverId === id.serverId);
  assert.ok(row, JSON.stringify(rows));
  assert.deepEqual(row.names, [INSTANCE]);
  assert.ok(row.addresses.includes(`${topo!.direct.server.v4}:${PORT}`), JSON.stringify(row.addresses));
  assert.deepEqual(row.ports, [PORT]);
  assert.equal(row.version, VERSION);
  assert.equal(row.txt, "matches");
  const py = zeroconfPython();
  if (typeof py !== "string") return t.diagnostic(`python3-zeroconf part skipped: ${py.skip}`);
  const found = await zeroconfBrowse(py, topo!.direct.client.v4, 4);
  const s = Object.entries(found).find(([n]) => n.toLowerCase() === `${INSTANCE}._perilink._tcp.local.`.toLowerCase())?.[1];
  assert.ok(s, `zeroconf saw ${JSON.stringify(found)}`);
  assert.equal(s.port, PORT);
  assert.ok(s.addresses.includes(topo!.direct.server.v4), JSON.stringify(s.addresses));
  assert.deepEqual(s.txt, { id: id.serverId, fp: id.keyFingerprint, ver: VERSION, ports: String(PORT) });
});

test("a seamless upgrade keeps the service advertised after the old process has exited", { timeout: 60_000 }, async (t) => {
  if (skipAll) return t.skip(skipAll);
  assert.ok(serving, "the first test started the server");
  const old = serving;
  const exited = new Promise<void>((r) => (old.exitCode !== null || old.signalCode !== null ? r() : old.once("exit", () => r())));
  const up = await runCli(["upgrade", "--state-dir", stateDir, "--timeout", "20000", "--json"], { timeoutMs: 40_000 });
  assert.equal(up.code, 0, up.stderr);
  const { pid } = JSON.parse(up.stdout) as { pid: number };
  servers.add(pid);
  await Promise.race([exited, sleep(20_000).then(() => assert.fail("the old process did not exit within 20 s of the upgrade"))]);
  serving = null;
  await sleep(1500); // whatever the old process would write at its exit, avahi has read by now
  assert.match(serviceFile(), new RegExp(`<port>${PORT}</port>`), "the file still names the service");
  const mine = await advertisedWithin(5000);
  assert.equal(mine.name, INSTANCE);
  assert.equal(mine.txt.id, id.serverId);
  const row = (await browse()).find((r) => r.serverId === id.serverId);
  assert.ok(row, "perilink browse still finds it, the new process answering the probe");
  assert.equal(row.generation, id.generation + 1);
});

test("a stop (SIGTERM) withdraws the service; a start after it advertises it again", { timeout: 90_000 }, async (t) => {
  if (skipAll) return t.skip(skipAll);
  const upgraded = [...servers].find((p) => pidAlive(p));
  assert.ok(upgraded, "the upgraded process serves");
  const established = avahiLog.split("successfully established").length - 1;
  process.kill(upgraded, "SIGTERM");
  await waitFor(() => !pidAlive(upgraded), "the server to stop", 15_000);
  assert.doesNotMatch(serviceFile(), /<service>/, "the file stays, with no service in it");
  await avahiLogged("removing service", 1, 10_000);
  await goneWithin(10_000);
  assert.deepEqual(await browse(), []);

  serving = serve();
  await probeUntil(topo!.direct.server.v4, PORT, 20_000, () => `the server logged:\n${serveLog}`);
  await avahiLogged("successfully established", established + 1);
  assert.equal((await advertisedWithin(5000)).txt.id, id.serverId);
  await stopChild(serving, 10_000);
  serving = null;
  await goneWithin(10_000);
});
