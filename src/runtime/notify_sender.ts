import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { readFileSync } from "node:fs";
import { detectRuntime } from "./runtime.ts";

/**
 * Sends sd_notify(3) messages: one datagram each, `KEY=VALUE` lines, to the
 * Unix datagram socket named by NOTIFY_SOCKET. Messages are sent in the
 * order given; `send()` resolves once the service manager has taken the
 * message (or it was dropped: notifications never fail the server).
 */
export interface NotifySender {
  send(lines: string[]): Promise<void>;
}

export type SpawnFn = (cmd: string, args: string[], options: SpawnOptions) => ChildProcess;

/**
 * Neither Node.js nor Deno (without `--unstable-net`) has Unix datagram
 * sockets, so the message goes through `systemd-notify` (package systemd,
 * present wherever systemd is), one short process per message. It waits
 * until systemd has processed the message (BARRIER=1), so the message is
 * never lost to a sender that exited too early. As root it sends with this
 * process's pid; any other user sends with its own pid, so the unit needs
 * `NotifyAccess=all`.
 */
export function systemdNotifySender(socket: string, onError: (err: Error) => void, spawnFn: SpawnFn = spawn): NotifySender {
  let tail: Promise<void> = Promise.resolve();
  let broken = false;
  const one = (lines: string[]): Promise<void> =>
    new Promise((resolve) => {
      if (broken) return resolve();
      let child: ChildProcess;
      try {
        child = spawnFn("systemd-notify", lines, { stdio: "ignore", env: { ...process.env, NOTIFY_SOCKET: socket } });
      } catch (err) {
        broken = true;
        onError(err as Error);
        return resolve();
      }
      child.once("error", (err) => {
        // ENOENT: systemd-notify is not installed; say so once and stop trying.
        broken = true;
        onError(err);
        resolve();
      });
      child.once("exit", (code) => {
        if (code !== 0) onError(new Error(`systemd-notify exited with code ${code}`));
        resolve();
      });
    });
  return {
    send(lines) {
      tail = tail.then(() => one(lines));
      return tail;
    },
  };
}

/**
 * CLOCK_MONOTONIC in microseconds, as systemd wants it in MONOTONIC_USEC.
 * Node's hrtime is CLOCK_MONOTONIC. Deno's counts from its own start, so
 * there the time comes from /proc/uptime (CLOCK_BOOTTIME: the same on a
 * device that has not been suspended), rounded up past its 10 ms steps.
 */
export function monotonicUsec(): bigint {
  if (detectRuntime().name === "node") return process.hrtime.bigint() / 1000n;
  const uptime = readFileSync("/proc/uptime", "utf8").split(" ")[0]!;
  const [s, frac = "0"] = uptime.split(".") as [string, string?];
  return BigInt(s) * 1_000_000n + BigInt(frac.padEnd(6, "0").slice(0, 6)) + 10_000n;
}
