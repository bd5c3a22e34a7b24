import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { controlRequest } from "../../../src/server/control_server.ts";
import type { ServerStatus } from "../../../src/server/server.ts";
import { readMemKiB } from "../proc.ts";

/** Memory of one server process over its life, KiB. */
export interface PidMemory {
  pid: number;
  /** Largest VmRSS sampled. */
  peakRssKiB: number;
  /** Largest VmHWM read: the kernel's own peak, which also catches spikes between samples. */
  hwmKiB: number;
  samples: number;
}

export interface WatchSummary {
  pids: PidMemory[];
  peakRssKiB: number;
  peakHwmKiB: number;
  /** Largest sum of the sampled VmRSS of the server processes alive at the same instant (old and new during a handover). */
  peakSumKiB: number;
  /**
   * The server's counters: the serving process's last `status` answer. A new
   * process continues its predecessor's totals and adds what that one
   * counted while it drained, so summing processes would count upgrades twice.
   */
  counters: Record<string, number>;
  statusAnswered: number;
  statusFailed: number;
  /** What each server process was doing when the serving one left status unanswered twice in a row (one entry per stall). */
  stalls: StallDump[];
}

/** One look at the server processes while the serving one does not answer: the kernel's view of each. */
export interface StallDump {
  at: string;
  servingPid: number;
  procs: { pid: number; state: string; cpuTicks: number; wchan: string; threads: number; stack?: string }[];
}

/**
 * Watches the processes of one perilink server from the outside: every
 * `memEveryMs` reads VmRSS/VmHWM of each known server process from
 * /proc/<pid>/status; every `statusEveryMs` asks the serving process for its
 * status over the control socket, which names the serving pid and the older
 * generations still draining (so processes started by upgrades are found too).
 */
export class ServerWatch {
  #stateDir: string;
  #mem = new Map<number, PidMemory>();
  #counters: Record<string, number> = {};
  #memTimer: ReturnType<typeof setInterval> | null = null;
  #statusTimer: ReturnType<typeof setInterval> | null = null;
  #asking = false;
  #peakSum = 0;
  #answered = 0;
  #failed = 0;
  #failedInRow = 0;
  #stalls: StallDump[] = [];
  /** The serving pid in the last status answer. */
  servingPid = 0;

  constructor(stateDir: string) {
    this.#stateDir = stateDir;
  }

  /** Asks the serving process for its status; learns its pid and the draining ones. Null when it does not answer in `timeoutMs`. */
  async status(timeoutMs = 2000): Promise<ServerStatus | null> {
    try {
      const s = (await controlRequest(this.#stateDir, { op: "status" }, timeoutMs)) as ServerStatus;
      this.#answered++;
      this.adopt(s.pid);
      for (const d of s.draining) this.adopt(d.pid);
      this.#counters = s.counters;
      this.servingPid = s.pid;
      this.#failedInRow = 0;
      return s;
    } catch {
      this.#failed++;
      if (++this.#failedInRow === 2) this.#dumpStall();
      return null;
    }
  }

  /**
   * The serving process left two status requests in a row unanswered: notes
   * each known process's state, CPU ticks, wait channel and threads from
   * /proc, and for one that is running (state R: a busy event loop) its JS
   * stack, through the inspector (SIGUSR1, `node inspect -p`, pause, bt),
   * so that a stall can be explained afterwards.
   */
  #dumpStall(): void {
    const procs: StallDump["procs"] = [];
    for (const pid of this.#mem.keys()) {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        let wchan = "";
        try {
          wchan = readFileSync(`/proc/${pid}/wchan`, "utf8");
        } catch {
          // not readable here
        }
        const proc: StallDump["procs"][number] = { pid, state: f[0] ?? "?", cpuTicks: Number(f[11]) + Number(f[12]), wchan, threads: Number(f[17]) };
        procs.push(proc);
        if (proc.state === "R") jsStack(pid).then((t) => (proc.stack = t), () => {});
        else nativeStacks(pid).then((file) => (proc.stack = `native stacks of every thread in ${file}`), () => {});
      } catch {
        // gone
      }
    }
    this.#stalls.push({ at: new Date().toISOString(), servingPid: this.servingPid, procs });
  }

  /** Starts watching `pid` (a server process found some other way). */
  adopt(pid: number): void {
    if (!this.#mem.has(pid)) this.#mem.set(pid, { pid, peakRssKiB: 0, hwmKiB: 0, samples: 0 });
  }

  /** Reads the memory of every known process that still runs; returns the sum of their VmRSS. */
  sample(): number {
    let sum = 0;
    for (const m of this.#mem.values()) {
      const now = readMemKiB(m.pid);
      if (now === null) continue;
      m.samples++;
      m.peakRssKiB = Math.max(m.peakRssKiB, now.rss);
      m.hwmKiB = Math.max(m.hwmKiB, now.hwm);
      sum += now.rss;
    }
    this.#peakSum = Math.max(this.#peakSum, sum);
    return sum;
  }

  start(memEveryMs: number, statusEveryMs: number): void {
    this.stop();
    this.sample();
    this.#memTimer = setInterval(() => this.sample(), memEveryMs);
    this.#statusTimer = setInterval(() => {
      if (this.#asking) return;
      this.#asking = true;
      void this.status(Math.max(statusEveryMs, 2000)).finally(() => (this.#asking = false));
    }, statusEveryMs);
  }

  stop(): void {
    if (this.#memTimer) clearInterval(this.#memTimer);
    if (this.#statusTimer) clearInterval(this.#statusTimer);
    this.#memTimer = this.#statusTimer = null;
  }

  /** Every server process seen, for the clean-up. */
  pids(): number[] {
    return [...this.#mem.keys()];
  }

  /** The processes `pid` started that still run (from /proc/<pid>/task/<pid>/children); null when the kernel does not say. */
  static children(pid: number): number[] | null {
    try {
      return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return null;
    }
  }

  summary(): WatchSummary {
    const pids = [...this.#mem.values()];
    const counters = { ...this.#counters };
    return {
      pids,
      peakRssKiB: Math.max(0, ...pids.map((p) => p.peakRssKiB)),
      peakHwmKiB: Math.max(0, ...pids.map((p) => p.hwmKiB)),
      peakSumKiB: this.#peakSum,
      counters,
      statusAnswered: this.#answered,
      statusFailed: this.#failed,
      stalls: this.#stalls,
    };
  }
}

/** Every thread's native stack of `pid` (gdb, when installed), written to a file in the temporary directory; its path. */
function nativeStacks(pid: number): Promise<string> {
  const file = path.join(os.tmpdir(), `perilink-stall-${pid}.txt`);
  return new Promise((resolve, reject) => {
    const child = spawn("gdb", ["-p", String(pid), "-batch", "-ex", "thread apply all bt"], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout!.setEncoding("utf8").on("data", (s: string) => (out += s));
    child.stderr!.setEncoding("utf8").on("data", (s: string) => (out += s));
    const guard = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.once("error", reject);
    child.once("close", () => {
      clearTimeout(guard);
      writeFileSync(file, out);
      resolve(file);
    });
  });
}

/** The JS stack of a busy node process `pid`, read through its inspector (bounded: 10 s). */
function jsStack(pid: number): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["inspect", "-p", String(pid)], { stdio: ["pipe", "pipe", "ignore"] });
    let out = "";
    child.stdout!.setEncoding("utf8").on("data", (s: string) => (out += s));
    const say = (line: string, ms: number) => setTimeout(() => child.stdin!.write(line + "\n", () => {}), ms);
    say("pause", 2000);
    say("bt", 3000);
    say(".exit", 4000);
    const guard = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("close", () => {
      clearTimeout(guard);
      resolve(out.split("\n").filter((l) => /#\d+ /.test(l)).join("\n"));
    });
    child.stdin!.on("error", () => {});
  });
}
