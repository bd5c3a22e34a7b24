import { spawn, spawnSync } from "node:child_process";
import path from "node:path";
import { after } from "node:test";
import { REPO_ROOT, stopChild } from "./cli.ts";
import { tempDir, waitFor } from "./fixtures.ts";

export interface Notification {
  /** The sender's pid as the kernel reports it (as root, systemd-notify sends with its parent's). */
  pid: number;
  /** The message's lines. */
  lines: string[];
  /** CLOCK_MONOTONIC when it arrived, in µs. */
  monoUsec: number;
}

export const SKIP_NO_NOTIFY_TOOLS = (() => {
  for (const tool of ["python3", "systemd-notify"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) return `${tool} is not installed`;
  }
  return false;
})();

/**
 * A real Unix datagram socket standing in for systemd's NOTIFY_SOCKET
 * (test/fixtures/notify_receiver.py). BARRIER=1 datagrams, which only tell
 * systemd-notify that the message before was processed, are left out.
 */
export async function notifyReceiver(): Promise<{ socket: string; received(): Notification[]; waitFor(pred: (n: Notification[]) => boolean, what: string, ms?: number): Promise<void> }> {
  const socket = path.join(tempDir("perilink-notify-"), "notify.sock");
  const child = spawn("python3", [path.join(REPO_ROOT, "test/fixtures/notify_receiver.py"), socket], { stdio: ["ignore", "pipe", "inherit"] });
  after(() => stopChild(child, 1000));
  const got: Notification[] = [];
  let listening = false;
  let buf = "";
  child.stdout!.setEncoding("utf8").on("data", (s: string) => {
    buf += s;
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const rec = JSON.parse(buf.slice(0, nl)) as { listening?: string; pid: number; msg: string; monoUsec: number };
      buf = buf.slice(nl + 1);
      if (rec.listening) listening = true;
      else if (rec.msg !== "BARRIER=1") got.push({ pid: rec.pid, lines: rec.msg.split("\n"), monoUsec: rec.monoUsec });
    }
  });
  await waitFor(() => listening || child.exitCode !== null, "the notification receiver", 10_000);
  if (!listening) throw new Error("the notification receiver did not start");
  return {
    socket,
    received: () => got,
    waitFor: (pred, what, ms = 20_000) => waitFor(() => pred(got), `${what}; received so far: ${JSON.stringify(got.map((n) => n.lines))}`, ms),
  };
}
