/**
 * A server host reachable on two lines, for tests of names and line choice
 * (C6–C8). The test process is the client host ("A", its own namespace);
 * two namespaces are created:
 *
 *     A (this namespace) ──direct veth, MTU 1500──────────────────── B (server)
 *     A ──veth, MTU 1400── R (router, tbf-shaped) ──veth, MTU 1400── B
 *
 * Every address is per run: IPv4 from 198.18.0.0/15 (the benchmarking range,
 * never routed), IPv6 from a random fd77::/16 ULA; A gets routes to B's routed
 * addresses through R and blackholes under every range of the run, so traffic
 * goes only to the namespaces made here, even while a line is down. `destroy()` removes all of it (the veths in this
 * namespace, the routes, the namespaces, their /etc/netns directories).
 *
 * Needs root, Linux and `ip`; `createTopology()` returns a reason to skip
 * otherwise. `tc` shaping is applied when tc is there (`shaped` says so).
 */
import { execFile, spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export interface Line {
  /** B's address on this line (IPv4, IPv6). */
  server: { v4: string; v6: string };
  /** A's own address on this line (the source A uses). */
  client: { v4: string; v6: string };
  /** A's interface for this line (in A, the test's namespace). */
  clientIf: string;
  mtu: number;
  /** Routers between A and B on this line. */
  routers: number;
}

export interface Topology {
  /** The server host's namespace. */
  serverNs: string;
  /** The router's namespace. */
  routerNs: string;
  direct: Line;
  routed: Line;
  /** True when the routed line is shaped with tc tbf to `routedRateMbit`. */
  shaped: boolean;
  routedRateMbit: number;
  /** `ip ARGS` in this namespace (or `-n NS`), bounded; rejects with stderr. */
  ip(args: string[]): Promise<string>;
  /** Any command, bounded; rejects with stderr. */
  run(cmd: string, args: string[], timeoutMs?: number): Promise<string>;
  /** Starts a long-running command in the server's namespace (`ip netns exec`). */
  spawnInServer(cmd: string, args: string[], options?: SpawnOptions): ChildProcess;
  /** `/etc/netns/<ns>/…` for a namespace made here (bind-mounted over /etc by `ip netns exec`). */
  etcFile(ns: string, name: string, content: string): void;
  /** Takes a line down at A's end (a pulled cable) or back up. */
  setLineUp(line: Line, up: boolean): Promise<void>;
  /** Silently discards a line's traffic both ways (blackhole routes in A and B), or restores it. */
  setBlackhole(line: Line, on: boolean): Promise<void>;
  destroy(): Promise<void>;
}

const EXEC_TIMEOUT_MS = 10_000;

function run(cmd: string, args: string[], timeoutMs = EXEC_TIMEOUT_MS): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: "SIGKILL" }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(" ")}: ${String(stderr).trim() || err.message}`, { cause: err }));
      else resolve(String(stdout));
    });
  });
}

/**
 * Claims three /24s of 198.18.0.0/15 for this process with a lock file in the
 * temporary directory, so that topologies of test files running at the same
 * time never share addresses or routes. A lock whose process is gone is taken over.
 */
function claimRange(): { o2: number; o3: number; release(): void } | null {
  for (let attempt = 0; attempt < 400; attempt++) {
    const o2 = randomInt(18, 20);
    const o3 = randomInt(0, 84) * 3;
    const lock = path.join(os.tmpdir(), `perilink-netns-198.${o2}.${o3}.lock`);
    try {
      const fd = openSync(lock, "wx");
      writeFileSync(fd, String(process.pid));
      closeSync(fd);
    } catch {
      const text = readLock(lock);
      const holder = Number(text);
      // Empty: its holder is writing its pid right now.
      if (text === "" || (Number.isInteger(holder) && holder > 0 && alive(holder))) continue;
      rmSync(lock, { force: true }); // its process is gone: take it over next round
      continue;
    }
    let released = false;
    return {
      o2,
      o3,
      release() {
        if (released) return;
        released = true;
        try {
          unlinkSync(lock);
        } catch {
          // already gone
        }
      },
    };
  }
  return null;
}

function readLock(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Creates the topology, or returns why it cannot be made here. */
export async function createTopology(): Promise<Topology | { skip: string }> {
  if (process.platform !== "linux" || typeof process.getuid !== "function" || process.getuid() !== 0) {
    return { skip: "needs root and ip netns: not running as root on Linux" };
  }
  try {
    await run("ip", ["-V"]);
  } catch (err) {
    return { skip: `needs ip (iproute2): ${(err as Error).message}` };
  }
  const id = `${process.pid.toString(36).slice(-3)}${randomBytes(2).toString("hex")}`; // ≤ 7 chars
  const serverNs = `plkB${id}`;
  const routerNs = `plkR${id}`;
  // IPv4: three /24s in 198.18.0.0/15, held for this run (test files run concurrently);
  // IPv6: three /64s in a random fd77:XXXX::/32.
  const range = claimRange();
  if (range === null) return { skip: "no free 198.18.0.0/15 range: every one is held by a running test" };
  const { o2, o3 } = range;
  const v4 = (k: number, host: number): string => `198.${o2}.${o3 + k}.${host}`;
  const net6 = `fd77:${(randomBytes(2).readUInt16BE(0) | 0x1000).toString(16)}`;
  const v6 = (k: number, host: number): string => `${net6}:${k + 1}::${host}`;
  const ifs = { ad: `pa${id}d`, bd: `pb${id}d`, ar: `pa${id}r`, ra: `pr${id}a`, rb: `pr${id}b`, br: `pb${id}r` };
  const made = { ns: [] as string[], links: [] as string[], routes: [] as string[][], etc: [] as string[] };
  const ip = (args: string[]): Promise<string> => run("ip", args);
  const inNs = (ns: string, args: string[]): Promise<string> => ip(["-n", ns, ...args]);

  const direct: Line = {
    server: { v4: v4(0, 2), v6: v6(0, 2) },
    client: { v4: v4(0, 1), v6: v6(0, 1) },
    clientIf: ifs.ad,
    mtu: 1500,
    routers: 0,
  };
  const routed: Line = {
    server: { v4: v4(2, 2), v6: v6(2, 2) },
    client: { v4: v4(1, 1), v6: v6(1, 1) },
    clientIf: ifs.ar,
    mtu: 1400,
    routers: 1,
  };
  const routedRateMbit = 20;
  let shaped = false;

  const destroy = async (): Promise<void> => {
    for (const r of made.routes.reverse()) await ip(["route", "del", ...r]).catch(() => {});
    made.routes = [];
    for (const l of made.links) await ip(["link", "del", l]).catch(() => {});
    made.links = [];
    for (const ns of made.ns) await ip(["netns", "del", ns]).catch((err: Error) => console.error(`cleanup: ${err.message}`));
    made.ns = [];
    for (const d of made.etc) rmSync(d, { recursive: true, force: true });
    made.etc = [];
    range.release();
  };

  const veth = async (a: string, aNs: string | null, b: string, bNs: string, mtu: number): Promise<void> => {
    await ip(["link", "add", a, "mtu", String(mtu), "type", "veth", "peer", "name", b, "mtu", String(mtu)]);
    made.links.push(a);
    await ip(["link", "set", b, "netns", bNs]);
    if (aNs !== null) await ip(["link", "set", a, "netns", aNs]);
    // Fixed link-local addresses without DAD (neighbour discovery needs one; none is tentative).
    for (const [ns, name, ll] of [[aNs, a, "fe80::1"], [bNs, b, "fe80::2"]] as const) {
      const pre = ns === null ? [] : ["-n", ns];
      // A link set down keeps its IPv6 addresses (the kernel flushes them by default), so setLineUp(…, true) restores the line.
      const sysctl = ["sysctl", "-qw", `net.ipv6.conf.${name}.keep_addr_on_down=1`];
      await (ns === null ? run(sysctl[0]!, sysctl.slice(1)) : run("ip", ["netns", "exec", ns, ...sysctl]));
      await ip([...pre, "link", "set", name, "addrgenmode", "none"]);
      await ip([...pre, "link", "set", name, "up"]);
      await ip([...pre, "-6", "addr", "add", `${ll}/64`, "dev", name, "nodad"]);
    }
  };
  const addr = async (ns: string | null, dev: string, a4: string, a6: string): Promise<void> => {
    const pre = ns === null ? [] : ["-n", ns];
    await ip([...pre, "addr", "add", `${a4}/24`, "dev", dev]);
    await ip([...pre, "-6", "addr", "add", `${a6}/64`, "dev", dev, "nodad"]);
  };

  try {
    for (const ns of [serverNs, routerNs]) {
      await ip(["netns", "add", ns]);
      made.ns.push(ns);
      await inNs(ns, ["link", "set", "lo", "up"]);
    }
    // Direct line A–B.
    await veth(ifs.ad, null, ifs.bd, serverNs, 1500);
    await addr(null, ifs.ad, direct.client.v4, direct.client.v6);
    await addr(serverNs, ifs.bd, direct.server.v4, direct.server.v6);
    // Routed line A–R–B.
    await veth(ifs.ar, null, ifs.ra, routerNs, 1400);
    await addr(null, ifs.ar, routed.client.v4, routed.client.v6);
    await addr(routerNs, ifs.ra, v4(1, 2), v6(1, 2));
    await veth(ifs.rb, routerNs, ifs.br, serverNs, 1400);
    made.links.pop(); // that pair lives in R and B: it goes with the namespaces
    await addr(routerNs, ifs.rb, v4(2, 1), v6(2, 1));
    await addr(serverNs, ifs.br, routed.server.v4, routed.server.v6);
    await run("ip", ["netns", "exec", routerNs, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
    // A reaches B's routed addresses through R; B answers A's routed addresses through R.
    // Below them, at a worse metric, blackholes for every range of the run: a line taken down
    // removes its routes, and its traffic must then go nowhere, never to this host's default route.
    for (const r of [
      [`${v4(2, 0)}/24`, "via", v4(1, 2)],
      [`${net6}:3::/64`, "via", v6(1, 2)],
      ...[0, 1, 2].map((k) => ["blackhole", `${v4(k, 0)}/24`, "metric", "4000"]),
      ["blackhole", `${net6}::/32`, "metric", "4000"],
    ]) {
      await ip(["route", "add", ...r]);
      made.routes.push(r);
    }
    await inNs(serverNs, ["route", "add", `${v4(1, 0)}/24`, "via", v4(2, 1)]);
    await inNs(serverNs, ["-6", "route", "add", `${net6}:2::/64`, "via", v6(2, 1)]);
    try {
      for (const dev of [ifs.ra, ifs.rb]) {
        await run("tc", ["-n", routerNs, "qdisc", "add", "dev", dev, "root", "tbf", "rate", `${routedRateMbit}mbit`, "burst", "32kbit", "latency", "50ms"]);
      }
      shaped = true;
    } catch {
      shaped = false;
    }
  } catch (err) {
    await destroy();
    return { skip: `cannot build the namespaces: ${(err as Error).message}` };
  }

  return {
    serverNs,
    routerNs,
    direct,
    routed,
    shaped,
    routedRateMbit,
    ip,
    run,
    spawnInServer(cmd, args, options = {}) {
      return spawn("ip", ["netns", "exec", serverNs, cmd, ...args], { stdio: ["ignore", "pipe", "pipe"], ...options });
    },
    etcFile(ns, name, content) {
      const dir = path.join("/etc/netns", ns);
      mkdirSync(dir, { recursive: true });
      if (!made.etc.includes(dir)) made.etc.push(dir);
      writeFileSync(path.join(dir, name), content);
    },
    async setLineUp(line, up) {
      await ip(["link", "set", line.clientIf, up ? "up" : "down"]);
      if (up) {
        // A link that comes back loses the routes through it: put the routed line's back.
        if (line === routed) for (const r of made.routes) await ip(["route", "replace", ...r]).catch(() => {});
      }
    },
    async setBlackhole(line, on) {
      const verb = on ? "add" : "del";
      for (const a of [line.server.v4, line.server.v6]) await ip(["route", verb, "blackhole", a]).catch((e: Error) => { if (on) throw e; });
      for (const a of [line.client.v4, line.client.v6]) await inNs(serverNs, ["route", verb, "blackhole", a]).catch((e: Error) => { if (on) throw e; });
    },
    destroy,
  };
}
