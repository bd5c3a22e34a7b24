import { fork, spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

export type Message = { type: string } & Record<string, unknown>;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One process as /proc/<pid>/stat tells it: its parent, whether it has exited unreaped, user+system CPU (µs) and resident size (KiB). */
export interface ProcRow {
  ppid: number;
  zombie: boolean;
  cpuUs: number;
  rssKiB: number;
}

const TICK_US = 1_000_000 / 100; // USER_HZ is 100 on Linux
const PAGE_KIB = 4;

/** Every process now (Linux /proc). */
export function procTable(): Map<number, ProcRow> {
  const out = new Map<number, ProcRow>();
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out.set(Number(e), { ppid: Number(f[1]), zombie: f[0] === "Z", cpuUs: (Number(f[11]) + Number(f[12])) * TICK_US, rssKiB: Number(f[21]) * PAGE_KIB });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** VmRSS of a running process, KiB, from /proc/<pid>/status. */
export function readRssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

/** Resident memory of a process, KiB: now (VmRSS) and its peak so far (VmHWM, kept by the kernel). */
export interface MemKiB {
  rss: number;
  hwm: number;
}

/** VmRSS and VmHWM of `pid` from /proc/<pid>/status; null when the process is gone (or a zombie). */
export function readMemKiB(pid: number): MemKiB | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, "utf8");
  } catch {
    return null;
  }
  const rss = /^VmRSS:\s+(\d+)\s+kB$/m.exec(text);
  const hwm = /^VmHWM:\s+(\d+)\s+kB$/m.exec(text);
  if (!rss || !hwm) return null;
  return { rss: Number(rss[1]), hwm: Number(hwm[1]) };
}

/**
 * Stops `child`: lets it exit by itself for up to `graceMs`, then sends
 * SIGTERM, then SIGKILL 5 s later.
 */
export async function stopProcess(child: ChildProcess, graceMs = 0): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  if (graceMs > 0) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const gone = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), graceMs)))]);
    clearTimeout(timer);
    if (gone) return;
  }
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}

/** Starts a plain (non-IPC) process with stdio ignored, e.g. an idle server. */
export function spawnQuiet(command: string, args: string[]): ChildProcess {
  return spawn(command, args, { stdio: "ignore" });
}

/**
 * A TypeScript child process with an IPC channel. Messages are queued by
 * type, so none is lost between two `next()` calls.
 */
export class Child {
  readonly process: ChildProcess;
  #queue: Message[] = [];
  #waiters: { type: string; resolve(m: Message): void }[] = [];
  #exited: Promise<never>;

  constructor(file: string, args: string[] = [], execArgv: string[] = []) {
    this.process = fork(file, args, { execArgv: ["--import", "tsx", ...execArgv], stdio: ["ignore", "inherit", "inherit", "ipc"] });
    this.process.on("message", (raw) => {
      const m = raw as Message;
      const i = this.#waiters.findIndex((w) => w.type === m.type);
      if (i >= 0) this.#waiters.splice(i, 1)[0]!.resolve(m);
      else this.#queue.push(m);
    });
    // "close" comes after every message the child sent has been emitted.
    this.#exited = new Promise((_, reject) => {
      this.process.once("close", (code, signal) => reject(new Error(`${file} exited (${signal ?? code}) before answering`)));
    });
    this.#exited.catch(() => {});
  }

  get pid(): number {
    return this.process.pid ?? -1;
  }

  /** Sends `m` if the child is still connected. */
  send(m: Message): void {
    if (this.process.connected) this.process.send(m);
  }

  /** The next message of `type`; rejects if the child exits or `timeoutMs` passes first. */
  async next<T extends Message = Message>(type: string, timeoutMs: number): Promise<T> {
    const i = this.#queue.findIndex((m) => m.type === type);
    if (i >= 0) return this.#queue.splice(i, 1)[0] as T;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const waiter = { type, resolve: (_m: Message) => {} };
    const got = new Promise<Message>((resolve) => (waiter.resolve = resolve));
    this.#waiters.push(waiter);
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no "${type}" message from pid ${this.pid} within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return (await Promise.race([got, late, this.#exited])) as T;
    } finally {
      clearTimeout(timer);
      const w = this.#waiters.indexOf(waiter);
      if (w >= 0) this.#waiters.splice(w, 1);
    }
  }

  /** Waits up to `graceMs` for the child to exit by itself, then ends it. */
  stop(graceMs = 3000): Promise<void> {
    return stopProcess(this.process, graceMs);
  }
}

/** In a child: sends a message to the parent; resolves once it is handed over. */
export function tell(m: Message): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) resolve();
    else process.send(m, undefined, {}, () => resolve());
  });
}
