import { spawn as nodeSpawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import os from "node:os";
import v8 from "node:v8";
import { mallocTuningEnv } from "./malloc_tuning.ts";
import { heapBudgetFlags, minorGcRuntimeFlag, withNodeOptions, youngGenerationRuntimeFlag, type HeapBudget } from "./heap_budget.ts";
import { detectRuntime } from "./runtime.ts";

/** Set in the environment of a process started with the budget applied, so it never starts another. */
export const HEAP_BUDGET_ENV = "PERILINK_HEAP_BUDGET";

/** Signals a supervisor or a terminal sends to `perilink serve`, passed on to the process that serves. */
const FORWARDED: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP", "SIGUSR2"];

export type SpawnFn = (cmd: string, args: readonly string[], options: SpawnOptions) => ChildProcess;

export interface ReexecOptions {
  budget: HeapBudget;
  /** Arguments after the script, e.g. `["serve", "--listen", …]`. */
  args: string[];
  env?: NodeJS.ProcessEnv;
  execArgv?: readonly string[];
  script?: string;
  spawn?: SpawnFn;
  /** Where run-time V8 flags go (v8.setFlagsFromString). */
  setFlags?: (flag: string) => void;
  /**
   * This process was started by a perilink upgrade (the caller knows from its
   * environment): its inherited descriptors and IPC channel are its own, so
   * it serves itself.
   */
  startedByUpgrade?: boolean;
}

/**
 * Starts this program again with the heap budget when the process was started
 * without it, and stands in for it: signals are passed on, and the exit code
 * (or signal) is the new process's. Returns null when this process should serve
 * itself: no budget (0), the user chose a limit, it is not Node.js, it was
 * started by a perilink upgrade or by systemd socket activation (its inherited
 * descriptors and IPC channel belong to this process), or it already is the
 * restarted one. The cost is one more start of the runtime at a fresh start;
 * an upgrade's new process inherits the budget in NODE_OPTIONS and starts once.
 * A Node.js process that serves itself and has no semi-space limit of its own
 * gets the budget's young-generation cap at run time, and every one its
 * earlier young-generation collections (heap_budget.ts).
 */
export function reexecWithHeapBudget(options: ReexecOptions): Promise<number> | null {
  const env = options.env ?? process.env;
  if (detectRuntime().name !== "node") return null;
  const execArgv = options.execArgv ?? process.execArgv;
  const serveHere = (): null => {
    for (const flag of [youngGenerationRuntimeFlag(options.budget, execArgv, env.NODE_OPTIONS), minorGcRuntimeFlag(options.budget, execArgv)]) {
      if (flag !== null) (options.setFlags ?? v8.setFlagsFromString)(flag);
    }
    return null;
  };
  if (env[HEAP_BUDGET_ENV] !== undefined || options.startedByUpgrade === true || env.LISTEN_FDS !== undefined) return serveHere();
  const flags = heapBudgetFlags(options.budget, execArgv, env.NODE_OPTIONS);
  if (flags.length === 0) return serveHere();
  const script = options.script ?? process.argv[1];
  if (script === undefined) return serveHere();
  const spawn = options.spawn ?? nodeSpawn;
  const child = spawn(process.execPath, [...execArgv, script, ...options.args], {
    stdio: "inherit",
    env: {
      ...env,
      ...mallocTuningEnv(options.budget.mallocMmapThresholdBytes, env),
      NODE_OPTIONS: withNodeOptions(env.NODE_OPTIONS, flags),
      [HEAP_BUDGET_ENV]: flags.join(" "),
    },
    // Its own process group: a terminal's Ctrl-C reaches it once, through us, not twice.
    detached: true,
  });
  const pass = (signal: NodeJS.Signals): void => void child.kill(signal);
  for (const s of FORWARDED) process.on(s, pass);
  return new Promise((resolve, reject) => {
    const done = (): void => {
      for (const s of FORWARDED) process.off(s, pass);
    };
    child.once("error", (err) => {
      done();
      reject(err);
    });
    child.once("exit", (code, signal) => {
      done();
      resolve(code ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0));
    });
  });
}

