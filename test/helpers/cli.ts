import { spawn, type ChildProcess, type StdioOptions } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { detectRuntime } from "../../src/runtime/runtime.ts";

/** The repository root (where package.json and node_modules are). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** The CLI entry point, absolute so the child's cwd does not matter. */
export const CLI_MAIN = path.join(REPO_ROOT, "src/cli/main.ts");

/**
 * The command line that runs `perilink ARGS` from source on the runtime
 * running the tests: `node --import tsx src/cli/main.ts …` on Node.js,
 * `deno run -A src/cli/main.ts …` on Deno (whose `process.execPath` is the
 * deno binary).
 */
export function cliCommand(args: string[]): { cmd: string; args: string[] } {
  if (detectRuntime().name === "deno") return { cmd: process.execPath, args: ["run", "-A", CLI_MAIN, ...args] };
  return { cmd: process.execPath, args: ["--import", "tsx", CLI_MAIN, ...args] };
}

export interface CliOptions {
  /** Working directory of the child (default: the repository root). */
  cwd?: string;
  /** Environment of the child (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** A command that runs the CLI, e.g. `["ip", "netns", "exec", "ns1"]`. */
  prefix?: string[];
  /** Default: stdin ignored, stdout and stderr piped. */
  stdio?: StdioOptions;
}

/** Starts `perilink ARGS` and returns the child; the caller ends it. */
export function spawnCli(args: string[], options: CliOptions = {}): ChildProcess {
  const { cmd, args: cmdArgs } = cliCommand(args);
  const [exe, ...argv] = [...(options.prefix ?? []), cmd, ...cmdArgs] as [string, ...string[]];
  return spawn(exe, argv, {
    cwd: options.cwd ?? REPO_ROOT,
    env: options.env ?? process.env,
    stdio: options.stdio ?? ["ignore", "pipe", "pipe"],
  });
}

export interface CliResult {
  /** Exit code, or null when a signal ended the child. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `perilink ARGS` to completion. Rejects when it has not exited within
 * `timeoutMs` (default 20 s; the child is killed) or cannot be started.
 */
export function runCli(args: string[], options: CliOptions & { timeoutMs?: number; input?: string } = {}): Promise<CliResult> {
  const timeoutMs = options.timeoutMs ?? 20_000;
  const child = spawnCli(args, { ...options, stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr?.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  if (options.input !== undefined) child.stdin?.end(options.input);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`perilink ${args.join(" ")}: still running after ${timeoutMs} ms (killed)\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/**
 * Ends a child: SIGTERM, then SIGKILL if it has not exited after `graceMs`.
 * Resolves once it has exited (or at once if it already had).
 */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = await Promise.race([exited.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), graceMs)))]);
  clearTimeout(timer);
  if (late) {
    child.kill("SIGKILL");
    let t2: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([exited, new Promise<void>((r) => (t2 = setTimeout(r, graceMs)))]);
    clearTimeout(t2);
  }
}
