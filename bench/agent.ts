import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { Endpoint } from "./lib/children/sessions_server.ts";
import { Child, readRssKiB, sleep, stopProcess } from "./lib/proc.ts";
import { startRun } from "./lib/result_file.ts";
import { median } from "./lib/stats.ts";
import { num } from "./lib/table.ts";

/**
 * The host agent (C11, src/agent/): the session table shared by every
 * process of a user, against a session table in each process.
 *
 * 1. load — one link, 64 requests of 64 B in flight, for a few seconds:
 *    through the agent against in-process, alternating, medians of rounds.
 * 2. connect — client.connect() to a server whose session is open (a cached
 *    connect), and until the first request's answer: through the agent
 *    against in-process. Both return the link before the server (or the
 *    agent) answered the open, so the second figure is the one a use pays.
 * 3. fanout — 8 processes × 8 links over 3 addresses of one server: TCP
 *    connections the server has (counted from the OS side), through the agent
 *    against 8 in-process clients.
 * 4. memory — the agent's RSS idle against a bare node process, and per link
 *    held: by RSS, and by the JS heap after full collections (an agent in a
 *    process of its own with --expose-gc, lib/children/agent_heap.ts).
 *
 * Server, agent and applications are separate processes; traffic on 127.0.0.0/8 and ::1.
 */

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const SERVER = fileURLToPath(new URL("./lib/children/sessions_server.ts", import.meta.url));
const CLIENT = fileURLToPath(new URL("./lib/children/agent_client.ts", import.meta.url));
const HEAP_AGENT = fileURLToPath(new URL("./lib/children/agent_heap.ts", import.meta.url));

/** ESTABLISHED TCP connections whose local port is one of `ports` (the server's side), from /proc/net/tcp{,6}. */
function establishedTo(ports: Set<number>): number {
  let n = 0;
  for (const f of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of readFileSync(f, "utf8").split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 4 || cols[3] !== "01") continue;
      if (ports.has(parseInt(cols[1]!.split(":")[1]!, 16))) n++;
    }
  }
  return n;
}

async function startAgent(dir: string): Promise<{ child: ChildProcess; socket: string }> {
  const socket = path.join(dir, "run", "agent.sock");
  mkdirSync(path.dirname(socket), { recursive: true, mode: 0o700 });
  // The agent as users run it: the node20 bundle, built now from the working tree.
  const built = spawnSync("npx", ["tsx", "build/build.ts", "--quiet", "--target", "node20"], { cwd: ROOT, stdio: "inherit" });
  if (built.status !== 0) throw new Error("npm run build failed");
  const child = spawn(process.execPath, [path.join(ROOT, "dist/node20/perilink.mjs"), "agent", "--socket", socket, "--state-dir", path.join(dir, "state"), "--log-level", "warn"], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
  for (let i = 0; i < 200; i++) {
    try {
      readFileSync(socket); // a socket: EOPNOTSUPP/ENXIO once it exists
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") return { child, socket };
    }
    await sleep(50);
  }
  throw new Error("the agent did not start");
}

async function client<T>(socket: string, mode: string, o: object, wait: string, timeoutMs: number): Promise<{ child: Child; msg: T }> {
  const child = new Child(CLIENT, [socket, mode, JSON.stringify(o)]);
  return { child, msg: (await child.next(wait, timeoutMs)) as T };
}

export async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { rounds: { type: "string" }, seconds: { type: "string" }, connects: { type: "string" } } });
  const rounds = Number(values.rounds ?? 3);
  const seconds = Number(values.seconds ?? 3);
  const connects = Number(values.connects ?? 2000);
  const run = startRun("agent", args);
  console.log(`host agent: load ${rounds} rounds × ${seconds} s (64 in flight, 64 B), ${connects} cached connects, 8 processes × 8 links × 3 addresses`);
  const dir = mkdtempSync(path.join(os.tmpdir(), "perilink-bench-agent-"));
  const server = new Child(SERVER, ["perilink", JSON.stringify(["127.0.0.1", "127.0.0.2", "::1"]), JSON.stringify({ ratePerSecond: 1_000_000, burst: 1_000_000 })]);
  const endpoints = (await server.next<{ type: string; endpoints: Endpoint[] }>("ready", 30_000)).endpoints;
  const ep = endpoints[0]!;
  const ports = new Set(endpoints.map((e) => e.port));
  const agent = await startAgent(dir);
  try {
    await sleep(500);
    const bare = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
    await sleep(500);
    const idle = { agentKiB: readRssKiB(agent.child.pid!), bareKiB: readRssKiB(bare.pid!) };
    await stopProcess(bare);

    const hold = async (socket: string, processes: number, links: number): Promise<Child[]> =>
      (await Promise.all(Array.from({ length: processes }, () => client(socket, "hold", { endpoints, links }, "ready", 60_000)))).map((a) => a.child);
    const release = async (apps: Child[]): Promise<void> => {
      for (const a of apps) a.send({ type: "stop" });
      await Promise.all(apps.map((a) => a.stop()));
      await sleep(2500); // the agent's session lingers (lingerMs), then closes
    };
    // 4. memory per link, measured before the load (after it, the agent's heap shrinks for a while, which would hide
    // what links add): 8 processes × 30 links through the agent (one session: the server allows 256 channels on it), against
    // its RSS with one link held.
    // RSS rises and falls with the agent's garbage collections: each side is the least of 10 samples over a second.
    const settledRss = async (pid: number): Promise<number> => {
      let least = Infinity;
      for (let i = 0; i < 10; i++) {
        await sleep(100);
        least = Math.min(least, readRssKiB(pid));
      }
      return least;
    };
    // Once before measuring, so that what the first links cost once (compiled code, the heap's first growth) is not counted per link.
    await release(await hold(agent.socket, 8, 30));
    const one = await hold(agent.socket, 1, 1);
    const base = await settledRss(agent.child.pid!);
    const many = await hold(agent.socket, 8, 30);
    const heldKiB = (await settledRss(agent.child.pid!)) - base;
    await release([...many, ...one]);
    // The same links held through an agent whose JS heap can be read after full collections (agent_heap.ts).
    const heapSocket = path.join(dir, "heap", "agent.sock");
    mkdirSync(path.dirname(heapSocket), { recursive: true, mode: 0o700 });
    const heapAgent = new Child(HEAP_AGENT, [heapSocket, path.join(dir, "heap-state")], ["--expose-gc"]);
    let heapPerLinkKiB = 0;
    try {
      await heapAgent.next("ready", 30_000);
      const heapOf = async (): Promise<number> => {
        heapAgent.send({ type: "heap" });
        return (await heapAgent.next<{ type: string; bytes: number }>("heap", 20_000)).bytes;
      };
      await release(await hold(heapSocket, 8, 30));
      const oneH = await hold(heapSocket, 1, 1);
      const h0 = await heapOf();
      const manyH = await hold(heapSocket, 8, 30);
      heapPerLinkKiB = ((await heapOf()) - h0) / 240 / 1024;
      await release([...manyH, ...oneH]);
    } finally {
      heapAgent.send({ type: "stop" });
      await heapAgent.stop();
    }
    // 1. load
    const rates: Record<"agent" | "inProcess", number[]> = { agent: [], inProcess: [] };
    for (let r = 0; r < rounds; r++) {
      for (const [name, socket] of [["inProcess", "none"], ["agent", agent.socket]] as const) {
        const { child, msg } = await client<{ requests: number; ms: number }>(socket, "load", { host: ep.host, port: ep.port, seconds, inflight: 64, bytes: 64 }, "done", (seconds + 30) * 1000);
        rates[name].push(msg.requests / (msg.ms / 1000));
        await child.stop();
      }
    }
    // 2. connect
    const us: Record<"agent" | "inProcess", number> = { agent: 0, inProcess: 0 };
    const firstUs: Record<"agent" | "inProcess", number> = { agent: 0, inProcess: 0 };
    for (const [name, socket] of [["inProcess", "none"], ["agent", agent.socket]] as const) {
      const { child, msg } = await client<{ us: number[]; firstUs: number[] }>(socket, "connect", { host: ep.host, port: ep.port, count: connects }, "done", 120_000);
      us[name] = median(msg.us.slice(Math.floor(connects / 10)));
      firstUs[name] = median(msg.firstUs.slice(Math.floor(connects / 10)));
      await child.stop();
    }
    // 3. fanout
    const fan: Record<"agent" | "inProcess", number> = { agent: 0, inProcess: 0 };
    for (const [name, socket] of [["agent", agent.socket], ["inProcess", "none"]] as const) {
      const apps = await hold(socket, 8, 8);
      await sleep(300);
      fan[name] = establishedTo(ports);
      await release(apps);
    }
    const m = { agent: median(rates.agent), inProcess: median(rates.inProcess) };
    run.report.table(
      ["64 in flight, 64 B, one link", "req/s (median)", "rounds"],
      [
        ["in-process client (agent: false)", num(m.inProcess), rates.inProcess.map((x) => num(x)).join(" ")],
        ["through the host agent", num(m.agent), rates.agent.map((x) => num(x)).join(" ")],
      ],
    );
    // Each round runs in-process then through the agent, one after the other: their ratio is taken per round (the machine's
    // speed drifts between rounds), and its median is the figure the target is read from.
    const paired = median(rates.agent.map((a, i) => a / rates.inProcess[i]!));
    run.report.line(
      `agent / in-process = ${paired.toFixed(2)}, the median of the rounds' ratios ${rates.agent.map((a, i) => (a / rates.inProcess[i]!).toFixed(2)).join(" ")} (target >= 0.60: ${paired >= 0.6 ? "met" : "MISSED"}); of the medians ${(m.agent / m.inProcess).toFixed(2)}`,
      "",
    );
    run.report.table(
      ["cached connect (session open)", "connect() median µs", "connect + first answer median µs"],
      [
        ["in-process", num(us.inProcess, 1), num(firstUs.inProcess, 1)],
        ["through the host agent", num(us.agent, 1), num(firstUs.agent, 1)],
      ],
    );
    run.report.line(
      `through the agent: connect() ${num(us.agent, 1)} µs (target <= 100: ${us.agent <= 100 ? "met" : "MISSED"}); with its first request's answer ${num(firstUs.agent, 1)} µs, ${(firstUs.agent / firstUs.inProcess).toFixed(2)}× in-process`,
      "",
    );
    run.report.table(
      ["8 processes × 8 links × 3 addresses", "TCP connections at the server (OS)"],
      [
        ["through the host agent", String(fan.agent)],
        ["8 in-process clients", String(fan.inProcess)],
      ],
    );
    run.report.line(
      "",
      `agent idle RSS ${num(idle.agentKiB / 1024, 1)} MiB, bare node ${num(idle.bareKiB / 1024, 1)} MiB: ${(idle.agentKiB / idle.bareKiB).toFixed(2)}× (target <= 1.3: ${idle.agentKiB / idle.bareKiB <= 1.3 ? "met" : "MISSED"})`,
      heldKiB > 0
        ? `agent RSS with 240 more links held (8 processes × 30): +${num(heldKiB)} KiB (least RSS of 10 samples each), ${(heldKiB / 240).toFixed(2)} KiB per link (target <= 4: ${heldKiB / 240 <= 4 ? "met" : "MISSED"})`
        : `agent RSS with 240 more links held (8 processes × 30): ${num(heldKiB)} KiB, within the RSS noise: no per-link figure this run`,
      `agent JS heap per link held (240 links, after full collections, the agent in a process of its own with --expose-gc): ${heapPerLinkKiB.toFixed(2)} KiB (target <= 4: ${heapPerLinkKiB <= 4 ? "met" : "MISSED"})`,
    );
    console.log(run.report.toString());
    run.write({ settings: { rounds, seconds, connects }, load: { rates, medians: m, pairedRatio: paired }, connectUs: us, connectFirstAnswerUs: firstUs, fanout: fan, memory: { ...idle, heldKiB, perLinkKiB: heldKiB / 240, heapPerLinkKiB } });
  } finally {
    await stopProcess(agent.child, 3000);
    server.send({ type: "stop" });
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
