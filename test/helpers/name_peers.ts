/**
 * Real name services from Debian, run in the server namespace of a test
 * topology: dnsmasq (DNS + PTR), llmnrd (LLMNR), nmbd (NetBIOS) and a
 * python3-zeroconf responder (mDNS). Each start returns the child, or a
 * one-line reason to skip when its program is missing.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { promises as dnsPromises } from "node:dns";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Topology } from "./netns_topology.ts";

/** The first of `names` found on PATH (or the usual sbin directories), or null. */
export function which(...names: string[]): string | null {
  for (const n of names) {
    for (const dir of [...(process.env.PATH ?? "").split(":"), "/usr/sbin", "/sbin", "/usr/bin"]) {
      const p = path.join(dir, n);
      if (dir && existsSync(p)) return p;
    }
  }
  return null;
}

/** The interface in the server namespace that holds `address`. */
export function serverInterfaceOf(topo: Topology, address: string): string {
  const out = execFileSync("ip", ["-n", topo.serverNs, "-j", "addr"], { encoding: "utf8" });
  const links = JSON.parse(out) as { ifname: string; addr_info: { local: string }[] }[];
  const l = links.find((x) => x.addr_info.some((a) => a.local === address));
  if (!l) throw new Error(`no interface in ${topo.serverNs} has ${address}`);
  return l.ifname;
}

export type Started = { child: ChildProcess; log: () => string } | { skip: string };

function started(child: ChildProcess): Started {
  let log = "";
  child.stdout?.setEncoding("utf8").on("data", (s: string) => (log += s));
  child.stderr?.setEncoding("utf8").on("data", (s: string) => (log += s));
  return { child, log: () => log };
}

/** dnsmasq on `listen`, each record `names…,v4,v6` one --host-record, TTL 60. */
export function startDnsmasq(topo: Topology, listen: string, records: string[]): Started {
  const exe = which("dnsmasq");
  if (!exe) return { skip: "dnsmasq is not installed (Debian: dnsmasq-base)" };
  return started(topo.spawnInServer(exe, dnsmasqArgs(listen, records)));
}

/** dnsmasq on 127.0.0.1:`port` in this namespace (names of loopback addresses), as startDnsmasq. */
export function startDnsmasqOnLoopback(port: number, records: string[]): Started {
  const exe = which("dnsmasq");
  if (!exe) return { skip: "dnsmasq is not installed (Debian: dnsmasq-base)" };
  if (process.getuid?.() !== 0) return { skip: "needs root (dnsmasq is run as root, without its user switch)" };
  return started(spawn(exe, [...dnsmasqArgs("127.0.0.1", records), `--port=${port}`], { stdio: ["ignore", "pipe", "pipe"] }));
}

/** Resolves once the DNS server on 127.0.0.1:`port` answers a question for `name`, whatever the answer (a started dnsmasq takes a moment on a loaded machine); throws after `ms`. */
export async function untilDnsAnswers(port: number, name: string, ms = 10_000): Promise<void> {
  const resolver = new dnsPromises.Resolver({ timeout: 200, tries: 1 });
  resolver.setServers([`127.0.0.1:${port}`]);
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      await resolver.resolve4(name);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENODATA" || code === "ENOTFOUND") return; // an answer, without A records
      if (Date.now() > deadline) throw new Error(`dnsmasq on port ${port} did not answer for ${name} within ${ms} ms: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function dnsmasqArgs(listen: string, records: string[]): string[] {
  return ["--keep-in-foreground", "--log-facility=-", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--user=root", "--pid-file=", "--bind-interfaces", `--listen-address=${listen}`, "--local-ttl=60", ...records.map((r) => `--host-record=${r}`)];
}

/** llmnrd answering `name` on `iface` (IPv4 and IPv6). */
export function startLlmnrd(topo: Topology, name: string, iface: string): Started {
  const exe = which("llmnrd");
  if (!exe) return { skip: "llmnrd is not installed (Debian: llmnrd)" };
  return started(topo.spawnInServer(exe, ["-H", name, "-i", iface, "-6"]));
}

/** nmbd answering `name` and `alias` on `iface`, in its own mount namespace with a private /run. */
export function startNmbd(topo: Topology, dir: string, name: string, alias: string, iface: string): Started {
  const exe = which("nmbd");
  if (!exe) return { skip: "nmbd is not installed (Debian: samba, --no-install-recommends)" };
  if (!which("unshare")) return { skip: "unshare (util-linux) is not installed: nmbd needs a private /run" };
  for (const d of ["lock", "state", "cache", "pid", "private", "log"]) mkdirSync(path.join(dir, d), { recursive: true });
  const conf = path.join(dir, "smb.conf");
  writeFileSync(
    conf,
    [
      "[global]",
      `netbios name = ${name}`,
      `netbios aliases = ${alias}`,
      `interfaces = ${iface}`,
      "bind interfaces only = yes",
      "workgroup = PERILINK",
      "local master = no",
      "dns proxy = no",
      `lock directory = ${dir}/lock`,
      `state directory = ${dir}/state`,
      `cache directory = ${dir}/cache`,
      `pid directory = ${dir}/pid`,
      `private dir = ${dir}/private`,
      `log file = ${dir}/log/nmbd.log`,
      "",
    ].join("\n"),
  );
  const script = `mount -t tmpfs none /run && mkdir -p /run/samba && exec ${exe} --foreground --no-process-group --debug-stdout --configfile=${conf}`;
  return started(topo.spawnInServer("unshare", ["-m", "sh", "-c", script]));
}

/** A python3-zeroconf responder for `host`.local with these addresses, bound to `bind`. */
export function startZeroconf(topo: Topology, host: string, addresses: string[], bind: string): Started {
  const py = zeroconfPython();
  if (typeof py !== "string") return py;
  const script = `
import socket, sys, time
from zeroconf import Zeroconf, ServiceInfo, IPVersion
addrs = ${JSON.stringify(addresses)}
zc = Zeroconf(interfaces=[${JSON.stringify(bind)}], ip_version=IPVersion.V4Only)
info = ServiceInfo("_perilink._tcp.local.", "perilink test._perilink._tcp.local.", port=1, server=${JSON.stringify(host + ".")},
                   parsed_addresses=addrs)
zc.register_service(info)
print("ready", flush=True)
while True:
    time.sleep(60)
`;
  return started(topo.spawnInServer(py, ["-u", "-c", script]));
}

/** python3 with the zeroconf module, or a reason to skip. */
export function zeroconfPython(): string | { skip: string } {
  const py = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : which("python3");
  if (!py) return { skip: "python3 is not installed" };
  try {
    execFileSync(py, ["-c", "import zeroconf"], { stdio: "ignore" });
  } catch {
    return { skip: "python3-zeroconf is not installed" };
  }
  return py;
}

export interface ZeroconfService {
  /** The instance label (`zc-good`). */
  instance: string;
  host: string;
  address: string;
  port: number;
  txt: Record<string, string>;
}

/** A python3-zeroconf responder in the server namespace registering DNS-SD `_perilink._tcp` services, bound to `bind`. */
export function startZeroconfServices(topo: Topology, bind: string, services: ZeroconfService[]): Started {
  const py = zeroconfPython();
  if (typeof py !== "string") return py;
  const script = `
import json, time
from zeroconf import Zeroconf, ServiceInfo, IPVersion
zc = Zeroconf(interfaces=[${JSON.stringify(bind)}], ip_version=IPVersion.V4Only)
for s in json.loads(${JSON.stringify(JSON.stringify(services))}):
    zc.register_service(ServiceInfo("_perilink._tcp.local.", s["instance"] + "._perilink._tcp.local.", port=s["port"],
                        server=s["host"] + ".", parsed_addresses=[s["address"]], properties=s["txt"]))
print("ready", flush=True)
while True:
    time.sleep(60)
`;
  return started(topo.spawnInServer(py, ["-u", "-c", script]));
}

/**
 * A python3-zeroconf ServiceBrowser in this namespace on `bind` only, for
 * `seconds`: the `_perilink._tcp` services it resolved, by name, with port,
 * TXT and addresses. Rejects when python fails.
 */
export function zeroconfBrowse(py: string, bind: string, seconds: number): Promise<Record<string, { port: number; txt: Record<string, string>; addresses: string[] }>> {
  const script = `
import json, time
from zeroconf import Zeroconf, ServiceBrowser, IPVersion
zc = Zeroconf(interfaces=[${JSON.stringify(bind)}], ip_version=IPVersion.V4Only)
found = {}
class Listener:
    def add_service(self, zc, type_, name):
        info = zc.get_service_info(type_, name, timeout=2000)
        if info:
            found[name] = {"port": info.port, "addresses": info.parsed_addresses(),
                           "txt": {k.decode(): (v or b"").decode() for k, v in info.properties.items()}}
    def update_service(self, zc, type_, name):
        self.add_service(zc, type_, name)
    def remove_service(self, zc, type_, name):
        found.pop(name, None)
ServiceBrowser(zc, "_perilink._tcp.local.", Listener())
time.sleep(${seconds})
print(json.dumps(found), flush=True)
zc.close()
`;
  return new Promise((resolve, reject) => {
    execFile(py, ["-u", "-c", script], { timeout: (seconds + 10) * 1000, killSignal: "SIGKILL" }, (err, stdout, stderr) => {
      if (err) reject(new Error(`zeroconf browser: ${String(stderr).trim() || err.message}`));
      else resolve(JSON.parse(String(stdout).trim().split("\n").pop() ?? "{}"));
    });
  });
}
