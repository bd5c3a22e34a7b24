import { setTimeout as later } from "node:timers";
import { UsageError } from "../errors.ts";
import { createLogger, isLogFormat, type LogFields, type Logger, type LogLevel } from "../logger.ts";
import { stderrIsJournal } from "../systemd/journal_stream.ts";
import { readConfigFile, type ServerConfigInput } from "../server/config.ts";
import type { PerilinkServer } from "../server/server.ts";
import type { HeapBudget } from "../runtime/heap_budget.ts";
import { reexecWithHeapBudget } from "../runtime/heap_reexec.ts";
import { detectRuntime } from "../runtime/runtime.ts";
import { readNotifyEnv, SystemdNotifier } from "../systemd/systemd_notifier.ts";
import { GENERATION_ENV, HANDOFF_ENV } from "../handoff/handoff_protocol.ts";
import { WORKER_ENV } from "../group/group_protocol.ts";
import { serveForManager, serviceProcessHandoff } from "../group/service_process.ts";
import { startServiceProcess, startServing } from "../serve/start_serving.ts";
import { TARGET } from "../target.ts";
import { parse } from "./args.ts";

/**
 * `perilink serve`: runs a server until SIGINT/SIGTERM, then drains. SIGHUP
 * re-scans the device's addresses; SIGUSR2 replaces the process with the
 * program now in place (as `perilink upgrade` does). Logs one line per event
 * to stderr: text at a terminal, JSON otherwise (`--log-format`), each with
 * the pid and generation, and under journald with its syslog priority. A process that handed over exits once it has drained.
 * Started without the target's heap budget, it starts itself again with it
 * (runtime/heap_reexec.ts) and passes signals and the exit code through.
 */
export async function runServe(args: string[]): Promise<number> {
  const { values } = parse(args, {
    config: { type: "string" },
    listen: { type: "string", multiple: true },
    app: { type: "string" },
    "state-dir": { type: "string" },
    "log-level": { type: "string" },
    "log-format": { type: "string" },
    workers: { type: "string" },
    dispatch: { type: "string" },
    access: { type: "string" },
  });
  // The target's heap budget needs a start of the runtime with the flag: stand in for that one.
  const restarted = reexecWithHeapBudget({ budget: TARGET.memory as HeapBudget, args: ["serve", ...args], startedByUpgrade: process.env[HANDOFF_ENV] !== undefined });
  if (restarted) return restarted;
  const input: ServerConfigInput = values.config ? await readConfigFile(values.config as string) : {};
  if (values.listen) input.listen = values.listen as string[];
  if (values.app) input.app = values.app as string;
  if (values["state-dir"]) input.stateDir = values["state-dir"] as string;
  if (values["log-level"]) input.logLevel = values["log-level"] as ServerConfigInput["logLevel"];
  if (values.workers) input.workers = values.workers as string;
  if (values.access) input.access = values.access as ServerConfigInput["access"];
  if (values.dispatch) input.dispatch = values.dispatch as ServerConfigInput["dispatch"];
  const format = values["log-format"] as string | undefined;
  if (format !== undefined && !isLogFormat(format)) throw new UsageError(`Cannot read arguments: --log-format is text or json, not "${format}"`);
  const logTo = (base: LogFields): Logger => serveLogger(input.logLevel ?? "info", format, base);
  const slot = process.env[WORKER_ENV];
  if (slot !== undefined) return runServiceProcess(input, Number(slot), logTo);
  const log = logTo({ pid: process.pid, generation: generationOf(process.env[GENERATION_ENV]) });
  // Whether it served or failed to start, it exits soon after (exitSoon).
  try {
    // Under systemd (NOTIFY_SOCKET): readiness, reload, stop and watchdog notifications.
    const notifyEnv = readNotifyEnv(process.env, process.pid, process.ppid, process.env[HANDOFF_ENV] !== undefined);
    let server!: PerilinkServer;
    const notifier = notifyEnv ? new SystemdNotifier(notifyEnv, () => server, log) : null;
    try {
      server = await startServing(input, {
        log,
        respawn: { execPath: process.execPath, execArgv: detectRuntime().scriptArgs, script: process.argv[1]!, args: ["serve", ...args] },
        ...(notifier ? { events: notifier } : {}),
      });
    } catch (err) {
      notifier?.close();
      throw err;
    }
    notifier?.accepting();

    const onHup = (): void => void server.rescan();
    const onUsr2 = (): void => {
      server.log.info("signal", { signal: "SIGUSR2" });
      server.upgrade().catch((err: unknown) => server.log.warn("upgrade_refused", { error: err }));
    };
    process.on("SIGHUP", onHup);
    if (process.platform !== "win32") process.on("SIGUSR2", onUsr2);
    let stop!: (signal: string) => void;
    const signalled = new Promise<void>((resolve) => {
      stop = (signal: string): void => {
        server.log.info("signal", { signal });
        resolve();
      };
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
    });
    // `retired` rejects when a failed upgrade could not bind the ports again: finish what
    // runs, then exit with the error so that a supervisor starts the service again.
    let fatal: unknown;
    await Promise.race([signalled, server.retired]).catch((err: unknown) => (fatal = err));
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    process.off("SIGHUP", onHup);
    process.off("SIGUSR2", onUsr2);
    await server.drain();
    // A handed-over process must not exit before systemd has taken MAINPID= of the new one.
    notifier?.close();
    await notifier?.flush();
    if (fatal) throw fatal;
    return 0;
  } finally {
    exitSoon(log);
  }
}

/** How long the process may take to exit by itself once its drain is over. */
const EXIT_GRACE_MS = 1000;
const EXIT_FLUSH_MS = 5000;

/**
 * The drain is over, and the process exits: by itself once nothing is left
 * to run, else after EXIT_GRACE_MS, however much the app left running (a
 * `drain()` hook past the deadline, its timers, a socket or a server it
 * opened), with the exit code main() set.
 */
function exitSoon(log: Logger): void {
  later(() => {
    // stderr's backlog (a busy journald, a slow pipe) goes out first, for up to EXIT_FLUSH_MS: process.exit() drops it.
    log.warn("exit_forced", { graceMs: EXIT_GRACE_MS, stderrQueued: process.stderr.writableLength }); // docs/apps.md
    const exit = (): never => process.exit();
    if (process.stderr.writableLength === 0) exit();
    process.stderr.once("drain", exit);
    later(exit, EXIT_FLUSH_MS).unref();
  }, EXIT_GRACE_MS).unref();
}

/**
 * A service process of a group (S5), started by its manager with the same
 * arguments: no listener, no control socket; it serves what the manager
 * gives it and exits once told to drain (or once the manager is gone).
 */
async function runServiceProcess(input: ServerConfigInput, slot: number, logTo: (base: LogFields) => Logger): Promise<number> {
  const generation = generationOf(process.env[GENERATION_ENV]);
  delete process.env[GENERATION_ENV];
  const log = logTo({ pid: process.pid, generation, worker: slot });
  try {
    return await serveService(input, log, generation);
  } finally {
    exitSoon(log);
  }
}

async function serveService(input: ServerConfigInput, log: Logger, generation: number): Promise<number> {
  const handoff = serviceProcessHandoff(log);
  const server = await startServiceProcess(input, log, generation, handoff);
  // The app saw which slot it runs in while it loaded; processes it starts are not service processes.
  delete process.env[WORKER_ENV];
  // SIGINT/SIGTERM reach the whole process group: the manager decides when this process drains.
  const ignore = (): void => {};
  process.on("SIGINT", ignore);
  process.on("SIGTERM", ignore);
  process.on("SIGHUP", ignore);
  await serveForManager(server, log, process, handoff);
  process.off("SIGINT", ignore);
  process.off("SIGTERM", ignore);
  process.off("SIGHUP", ignore);
  process.disconnect?.();
  return 0;
}

/** The generation an upgrade gave this process (`PERILINK_GENERATION`), 1 for a fresh start. */
function generationOf(text: string | undefined): number {
  const n = Number(text ?? "1");
  return Number.isInteger(n) && n > 0 ? n : 1;
}

/**
 * serve's logger: text when stderr is a terminal and JSON otherwise, unless
 * `--log-format` says; lines carry `base` (pid, generation: an old and a new
 * process tell apart after an upgrade), and a syslog priority prefix when
 * stderr is journald's stream.
 */
function serveLogger(level: LogLevel, format: string | undefined, base: LogFields): Logger {
  const chosen = format === "text" || format === "json" ? format : process.stderr.isTTY ? "text" : "json";
  return createLogger(level, undefined, base, { format: chosen, priorityPrefix: stderrIsJournal() });
}

