/**
 * Streams (docs/protocol.md §4.7), side by side in one run:
 *
 * 1. One upload of --mib MiB (default 256) over loopback, both ends in this
 *    process, each contender's receiver counting the bytes and answering
 *    with the count: a raw TCP pipe (`net` + `pipeline`), a chunked upload
 *    through `node:https` (TLS 1.3, the self-signed bench certificate), and
 *    a perilink sealed session (`link.request(asyncIterable)` to a
 *    `streams: true` app), and the same through a host agent (one more hop,
 *    over its Unix socket). --rounds rounds, order rotated; medians of MB/s.
 *    Then the same with the receivers in a process of their own
 *    (lib/children/stream_receivers.ts), as a real peer is: each end has a
 *    core, so what one side seals the other opens meanwhile.
 * 2. 8 concurrent 64 MiB uploads (--concurrent-mib) to a pi-zero-2w server
 *    process (the device bundle), one of whose readers is 100× slower: the
 *    fast ones' rate, and the server's peak RSS against its idle RSS.
 *
 * Targets (issue): perilink ≥ 0.5× raw TCP, ≥ 1.0× https; the fast streams
 * finish at their rate; server RSS ≤ idle + 16 MiB.
 */
import { spawn, spawnSync } from "node:child_process";
import https from "node:https";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import { existsSync, mkdtempSync } from "node:fs";
import { HostAgent } from "../src/agent/host_agent.ts";
import { HostClient } from "../src/agent/host_client.ts";
import { createClient } from "../src/client/client.ts";
import { silentLogger } from "../src/logger.ts";
import { Child, readRssKiB, sleep } from "./lib/proc.ts";
import { startReceivers } from "./lib/streams/receivers.ts";
import { machineLine, startRun } from "./lib/result_file.ts";
import { servedPort } from "./lib/served_port.ts";
import { median } from "./lib/stats.ts";
import { num } from "./lib/table.ts";
import { makeSelfSignedCert } from "./lib/tls_cert.ts";

const CHUNK = 64 * 1024;
const ROOT = fileURLToPath(new URL("../", import.meta.url));
const RECEIVERS = fileURLToPath(new URL("./lib/children/stream_receivers.ts", import.meta.url));

/** dist/<target>/perilink.mjs, built first when missing. */
function ensureBundleOf(target: string): string {
  const bundle = path.join(ROOT, "dist", target, "perilink.mjs");
  if (!existsSync(bundle)) spawnSync("npm", ["run", "build"], { cwd: ROOT, stdio: "inherit" });
  if (!existsSync(bundle)) throw new Error(`npm run build failed; ${bundle} is missing`);
  return bundle;
}

function flag(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
}

/** `total` bytes in 64 KiB chunks of one reused buffer (the senders copy or seal it). */
async function* source(total: number): AsyncGenerator<Uint8Array> {
  const buf = Buffer.alloc(CHUNK, 0x5a);
  for (let left = total; left > 0; left -= CHUNK) yield left >= CHUNK ? buf : buf.subarray(0, left);
}

async function rawTcp(total: number, port: number): Promise<number> {
  const t0 = performance.now();
  const sock = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
  let answer = "";
  sock.setEncoding("utf8").on("data", (s: string) => (answer += s));
  const closed = new Promise<void>((r) => sock.once("close", () => r()));
  await pipeline(source(total), sock);
  await closed;
  const ms = performance.now() - t0;
  if (Number(answer) !== total) throw new Error(`raw TCP counted ${answer}`);
  return ms;
}

async function httpsUpload(total: number, port: number, ca: string): Promise<number> {
  const t0 = performance.now();
  const answer = await new Promise<string>((resolve, reject) => {
    const req = https.request({ host: "127.0.0.1", port, method: "POST", path: "/", ca, agent: false }, (res) => {
      let s = "";
      res.setEncoding("utf8").on("data", (d: string) => (s += d));
      res.on("end", () => resolve(s));
    });
    req.on("error", reject);
    pipeline(source(total), req).catch(reject);
  });
  const ms = performance.now() - t0;
  if (Number(answer) !== total) throw new Error(`https counted ${answer}`);
  return ms;
}

async function perilinkUpload(total: number, port: number, throughAgent = false): Promise<number> {
  // Through the agent: a host agent in this process too, the application's link crossing its Unix socket.
  const agent = throughAgent ? await HostAgent.start({ socketPath: path.join(mkdtempSync(path.join(os.tmpdir(), "perilink-bench-agent-")), "a", "agent.sock"), client: { stateDir: false, requestTimeoutMs: 600_000 }, log: silentLogger }) : null;
  const client = agent ? new HostClient({ agent: true, agentSocket: agent.socketPath }) : createClient({ lingerMs: 0, stateDir: false, requestTimeoutMs: 600_000 });
  try {
    const link = await client.connect({ host: "127.0.0.1", port, app: "bench" });
    await link.request("warm");
    const t0 = performance.now();
    const answer = (await link.request(source(total))).toString();
    const ms = performance.now() - t0;
    if (Number(answer) !== total) throw new Error(`perilink counted ${answer}`);
    return ms;
  } finally {
    await client.close();
    await agent?.close();
  }
}

const ORDER = ["raw", "https", "perilink", "perilink via agent"] as const;

/** Part 1: one upload per contender and round, order rotated, to `receivers` (in this process, or in another). */
async function oneUploads(total: number, rounds: number, receivers: { raw: number; https: number; perilink: number }, ca: string): Promise<Record<string, number[]>> {
  const times: Record<string, number[]> = { raw: [], https: [], perilink: [], "perilink via agent": [] };
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < ORDER.length; k++) {
      const name = ORDER[(k + r) % ORDER.length]!;
      const ms = name === "raw" ? await rawTcp(total, receivers.raw) : name === "https" ? await httpsUpload(total, receivers.https, ca) : await perilinkUpload(total, receivers.perilink, name !== "perilink");
      times[name]!.push(ms);
    }
  }
  return times;
}

/** Part 2: 8 concurrent uploads to the device bundle, one reader slow. */
async function concurrent(mib: number): Promise<{ fastMBps: number[]; slowMiBDone: number; idleKiB: number; peakKiB: number; serverPid: number; launcherPid: number }> {
  const bundle = ensureBundleOf("pi-zero-2w");
  const work = mkdtempSync(path.join(os.tmpdir(), "perilink-bench-streams-"));
  const appPath = fileURLToPath(new URL("./lib/streams/sink_app.mjs", import.meta.url));
  let serving: number | null = null;
  const child = spawn(process.execPath, [bundle, "serve", "--access", "open", "--state-dir", work, "--listen", "127.0.0.1:0", "--app", appPath, "--log-format", "json"], { stdio: ["ignore", "ignore", "pipe"] });
  try {
    let log = "";
    child.stderr!.on("data", (d: Buffer) => (log += d.toString("utf8")));
    const port = await servedPort(child, "the pi-zero-2w server", 30_000);
    // The serving process, not the launcher: the device bundle may start node again with its heap budget.
    const pid = Number(/"event":"server_started"[^\n]*"pid":(\d+)|"pid":(\d+)[^\n]*"event":"server_started"/.exec(log)?.slice(1).find(Boolean) ?? child.pid);
    serving = pid;
    await sleep(1000);
    const idleKiB = readRssKiB(pid);
    let peakKiB = idleKiB;
    const poll = setInterval(() => (peakKiB = Math.max(peakKiB, readRssKiB(pid))), 50);
    const total = mib * 1024 * 1024;
    const clients = Array.from({ length: 8 }, () => createClient({ lingerMs: 0, stateDir: false, requestTimeoutMs: 600_000 }));
    let slowDone = 0;
    const fastMBps: number[] = [];
    try {
      const runs = clients.map(async (c, i) => {
        const link = await c.connect({ host: "127.0.0.1", port, app: i === 0 ? "slow" : "fast" });
        const t0 = performance.now();
        if (i === 0) {
          // The slow one: counted while the fast ones run, then cancelled.
          const ac = new AbortController();
          const counting = (async function* () {
            for await (const chunk of source(total)) {
              slowDone += chunk.length;
              yield chunk;
            }
          })();
          const p = link.request(counting, { signal: ac.signal }).catch(() => "");
          return { ac, p };
        }
        await link.request(source(total));
        fastMBps.push(total / 1e6 / ((performance.now() - t0) / 1000));
        return null;
      });
      const results = await Promise.all(runs.slice(1));
      void results;
      const slow = await runs[0]!;
      slow!.ac.abort();
      await slow!.p;
    } finally {
      clearInterval(poll);
      await Promise.all(clients.map((c) => c.close()));
    }
    return { fastMBps, slowMiBDone: slowDone / 1048576, idleKiB, peakKiB, serverPid: pid, launcherPid: child.pid! };
  } finally {
    // The serving process too: the device bundle may have started it apart from its launcher.
    if (serving !== null && serving !== child.pid) {
      try {
        process.kill(serving, "SIGKILL");
      } catch {
        // gone already
      }
    }
    child.kill("SIGKILL");
  }
}

export async function main(args: string[]): Promise<void> {
  const mib = flag(args, "mib", 256);
  const rounds = flag(args, "rounds", 3);
  const cmib = flag(args, "concurrent-mib", 64);
  const run = startRun("streams", args);
  console.log(`streams: ${mib} MiB over loopback x ${rounds} rounds (raw TCP, https, perilink, perilink via the host agent); 8 x ${cmib} MiB to a pi-zero-2w server, one reader 100x slower`);
  const total = mib * 1024 * 1024;
  const tls = makeSelfSignedCert();
  const stateDir = mkdtempSync(path.join(os.tmpdir(), "perilink-bench-streams-"));
  // The receivers in this process (both ends share one thread), then in a process of their own (each end its own core).
  const here = await startReceivers(tls, stateDir);
  const times = await oneUploads(total, rounds, here, tls.cert);
  await here.close();
  const peer = new Child(RECEIVERS);
  let apart: Record<string, number[]>;
  try {
    peer.send({ type: "start", tls, stateDir: mkdtempSync(path.join(os.tmpdir(), "perilink-bench-streams-")) });
    const ports = await peer.next<{ type: string; raw: number; https: number; perilink: number }>("ports", 30_000);
    apart = await oneUploads(total, rounds, ports, tls.cert);
  } finally {
    peer.send({ type: "stop" });
    await peer.stop(3000);
  }
  const mbpsOf = (t: Record<string, number[]>, name: string): number => total / 1e6 / (median(t[name]!) / 1000);
  const mbps = (name: string): number => mbpsOf(times, name);
  const rowsOf = (t: Record<string, number[]>): string[][] => ORDER.map((n) => [n, num(median(t[n]!)), num(mbpsOf(t, n), 1), t[n]!.map((x) => num(x)).join(" ")]);
  const vsRaw = mbps("perilink") / mbps("raw");
  const vsHttps = mbps("perilink") / mbps("https");
  const apartVsRaw = mbpsOf(apart, "perilink") / mbpsOf(apart, "raw");
  const apartVsHttps = mbpsOf(apart, "perilink") / mbpsOf(apart, "https");
  console.log(machineLine(run.machine));
  run.report.table(["one upload, both ends in one process", "median ms", "MB/s", "runs (ms)"], rowsOf(times));
  run.report.line(`perilink / raw TCP = ${vsRaw.toFixed(2)} (target >= 0.50: ${vsRaw >= 0.5 ? "met" : "MISSED"})`);
  run.report.line(`perilink / https = ${vsHttps.toFixed(2)} (target >= 1.00: ${vsHttps >= 1 ? "met" : "MISSED"})`);
  const viaAgent = mbps("perilink via agent") / mbps("perilink");
  run.report.line(`perilink via the host agent / in-process = ${viaAgent.toFixed(2)} (the same upload, one more hop over a Unix socket)`);
  run.report.table(["one upload, the receiver in a process of its own", "median ms", "MB/s", "runs (ms)"], rowsOf(apart));
  run.report.line(`perilink / raw TCP = ${apartVsRaw.toFixed(2)} (target >= 0.50: ${apartVsRaw >= 0.5 ? "met" : "MISSED"})`);
  run.report.line(`perilink / https = ${apartVsHttps.toFixed(2)} (target >= 1.00: ${apartVsHttps >= 1 ? "met" : "MISSED"})`);
  const c = await concurrent(cmib);
  const grew = (c.peakKiB - c.idleKiB) / 1024;
  run.report.table(
    ["8 concurrent uploads (pi-zero-2w server)", "value"],
    [
      ["fast streams, median MB/s", num(median(c.fastMBps), 1)],
      ["fast streams, slowest MB/s", num(Math.min(...c.fastMBps), 1)],
      ["slow stream, MiB sent meanwhile", num(c.slowMiBDone, 1)],
      [`server idle RSS, MiB (pid ${c.serverPid}${c.serverPid === c.launcherPid ? "" : `, started by ${c.launcherPid}`})`, num(c.idleKiB / 1024, 1)],
      ["server peak RSS, MiB", num(c.peakKiB / 1024, 1)],
    ],
  );
  run.report.line(`server RSS grew ${grew.toFixed(1)} MiB (target <= 16: ${grew <= 16 ? "met" : "MISSED"})`);
  console.log("\n" + run.report.toString());
  const file = run.write({
    settings: { mib, rounds, concurrentMiB: cmib },
    timesMs: times,
    mbps: { raw: mbps("raw"), https: mbps("https"), perilink: mbps("perilink"), viaAgent: mbps("perilink via agent") },
    ratios: { vsRaw, vsHttps, viaAgent },
    apart: { timesMs: apart, ratios: { vsRaw: apartVsRaw, vsHttps: apartVsHttps } },
    concurrent: c,
  });
  console.log(`wrote ${file}`);
}
