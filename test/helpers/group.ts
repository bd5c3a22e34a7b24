import assert from "node:assert/strict";
import http from "node:http";
import { after } from "node:test";
import { controlRequest } from "../../src/server/control_server.ts";
import type { ServerStatus } from "../../src/server/server.ts";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { runCli, spawnCli, stopChild } from "./cli.ts";
import { freePort } from "./free_port.ts";
import { pidsKilledAfterFile } from "./pid_alive.ts";
import { tempDir, waitFor } from "./fixtures.ts";

export interface ServedGroup {
  stateDir: string;
  port: number;
  pid: number;
  log(): string;
  status(): Promise<ServerStatus>;
  stop(): Promise<void>;
}

/** Every pid a test saw serving: killed after the file (later generations are not our children). */
export const seenPids = pidsKilledAfterFile();

/** `perilink serve ARGS` on 127.0.0.1 at a free port; ready once the manager logged server_started. */
export async function serveGroup(args: string[], env: NodeJS.ProcessEnv = {}, listen?: string[]): Promise<ServedGroup> {
  const stateDir = tempDir();
  const port = await freePort();
  const listenArgs = (listen ?? [`127.0.0.1:${port}`]).flatMap((l) => ["--listen", l.replace("PORT", String(port))]);
  const child = spawnCli(["serve", "--access", "open", "--state-dir", stateDir, ...listenArgs, ...args], { env: { ...process.env, ...env } });
  let log = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (log += s));
  after(() => stopChild(child));
  await waitFor(() => /"server_started"(?![^\n]*"worker")/.test(log) || child.exitCode !== null, "the manager to start", 30_000);
  assert.equal(child.exitCode, null, log);
  seenPids.add(child.pid!);
  const status = async (): Promise<ServerStatus> => {
    const s = (await controlRequest(stateDir, { op: "status" })) as ServerStatus;
    seenPids.add(s.pid);
    for (const w of s.workers) if (w.pid) seenPids.add(w.pid);
    return s;
  };
  return { stateDir, port, pid: child.pid!, log: () => log, status, stop: () => stopChild(child) };
}

/** One HTTP GET on a new connection; resolves with the body. */
export function httpGet(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path, agent: false, headers: { connection: "close" }, timeout: 10_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve(body));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

/** Counts by key. */
export function tally<T>(items: T[]): Map<T, number> {
  const m = new Map<T, number>();
  for (const i of items) m.set(i, (m.get(i) ?? 0) + 1);
  return m;
}

/** Skips a test of service processes where the runtime cannot pass sockets between processes; true when skipped. */
export function nodeOnly(t: { skip(m?: string): void }): boolean {
  if (detectRuntime().canInheritSockets) return false;
  t.skip("service processes need a runtime that passes sockets between processes (Node.js)");
  return true;
}

/** `perilink upgrade --json` of the group; asserts it succeeded and returns the new generation and pid. */
export async function upgradeGroup(g: ServedGroup): Promise<{ generation: number; pid: number }> {
  const r = await runCli(["upgrade", "--state-dir", g.stateDir, "--json", "--timeout", "30000"], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, `upgrade failed: ${r.stderr}`);
  const out = JSON.parse(r.stdout) as { generation: number; pid: number };
  seenPids.add(out.pid);
  return out;
}
