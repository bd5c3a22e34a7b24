import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after } from "node:test";
import type { StartServerOptions } from "../../src/server/start_server.ts";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { REPO_ROOT, stopChild } from "./cli.ts";
import { tempDir } from "./fixtures.ts";

export interface ServerProcess {
  readonly port: number;
  readonly pid: number;
  /** What the server logged so far (JSON lines). */
  log(): string;
  /** The server process's resident set size now, in bytes (Linux /proc). */
  rss(): number;
  stop(): Promise<void>;
}

/** Resident set size of process `pid` in bytes, from /proc/PID/status. */
export function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : 0;
}

/**
 * Starts a server in a child process on the runtime running the tests (so
 * its memory can be measured apart from the test's own peers); stopped after
 * the test file.
 */
export async function serverProcess(options: Omit<StartServerOptions, "appObject" | "logger">): Promise<ServerProcess> {
  const script = path.join(REPO_ROOT, "test/fixtures/serve_child.ts");
  const json = JSON.stringify({ stateDir: tempDir(), access: "open", ...options });
  const argv = detectRuntime().name === "deno" ? ["run", "-A", script, json] : ["--import", "tsx", script, json];
  const child: ChildProcess = spawn(process.execPath, argv, { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
  after(() => stopChild(child, 2000));
  let log = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (log += s));
  const first = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout!.setEncoding("utf8").on("data", (s: string) => {
      out += s;
      if (out.includes("\n")) resolve(out.split("\n")[0]!);
    });
    child.once("exit", (code) => reject(new Error(`server exited with ${code} before it accepted: ${log}`)));
  });
  const { port, pid } = JSON.parse(first) as { port: number; pid: number };
  return { port, pid, log: () => log, rss: () => rssOf(pid), stop: () => stopChild(child, 2000) };
}
