import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import type { ChildProcess } from "node:child_process";
import { test } from "node:test";
import { silentLogger } from "../../src/logger.ts";
import { systemdNotifySender } from "../../src/runtime/notify_sender.ts";
import { SystemdNotifier } from "../../src/systemd/systemd_notifier.ts";

function recorder(): { sent: string[][]; send(lines: string[]): Promise<void> } {
  const sent: string[][] = [];
  return { sent, send: async (lines) => void sent.push(lines) };
}

const server = (generation: number) => () => ({ generation, serverId: "00000000-0000-4000-8000-000000000000", endpoints: () => [1, 2] });

test("after handing over, a process tells systemd nothing more: its drain is not the service stopping", async () => {
  const rec = recorder();
  const n = new SystemdNotifier({ socket: "/x", watchdogUsec: null }, server(1), silentLogger, rec);
  n.accepting();
  n.upgradeStarted({ generation: 2 });
  n.upgradeFinished({ generation: 2, pid: 4242 });
  n.drainStarted({ sessions: 3, inflight: 1, timeoutMs: 30_000, handedOver: true });
  n.drainFinished();
  await n.flush();
  assert.deepEqual(rec.sent.map((l) => l[0]), ["READY=1", "RELOADING=1", "MAINPID=4242"]);
  assert.equal(rec.sent[2]![1], "READY=1");
  n.close();
});

test("a process started by an upgrade sends no READY=1 of its own (the old one names it MAINPID)", async () => {
  const rec = recorder();
  const n = new SystemdNotifier({ socket: "/x", watchdogUsec: null }, server(2), silentLogger, rec);
  n.accepting();
  await n.flush();
  assert.deepEqual(rec.sent, []);
  n.close();
});

test("systemdNotifySender: a missing systemd-notify is reported once, later messages are dropped without spawning", async () => {
  let spawned = 0;
  const errors: Error[] = [];
  const fakeSpawn = (): ChildProcess => {
    spawned++;
    const child = new EventEmitter() as ChildProcess;
    queueMicrotask(() => child.emit("error", Object.assign(new Error("spawn systemd-notify ENOENT"), { code: "ENOENT" })));
    return child;
  };
  const sender = systemdNotifySender("/run/notify", (err) => errors.push(err), fakeSpawn);
  await sender.send(["READY=1"]);
  await sender.send(["WATCHDOG=1"]);
  assert.equal(spawned, 1);
  assert.deepEqual(errors.map((e) => (e as NodeJS.ErrnoException).code), ["ENOENT"]);
});

test("systemdNotifySender passes the lines as arguments and NOTIFY_SOCKET in the environment, one message at a time in order", async () => {
  const calls: { args: string[]; socket: string | undefined }[] = [];
  let running = 0;
  const fakeSpawn = (_cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv }): ChildProcess => {
    assert.equal(running, 0, "never two at once");
    running++;
    calls.push({ args, socket: options.env?.NOTIFY_SOCKET });
    const child = new EventEmitter() as ChildProcess;
    setTimeout(() => {
      running--;
      child.emit("exit", 0);
    }, 5);
    return child;
  };
  const sender = systemdNotifySender("@sd", () => assert.fail("no error expected"), fakeSpawn);
  void sender.send(["RELOADING=1", "MONOTONIC_USEC=1"]);
  await sender.send(["MAINPID=7", "READY=1"]);
  assert.deepEqual(calls, [
    { args: ["RELOADING=1", "MONOTONIC_USEC=1"], socket: "@sd" },
    { args: ["MAINPID=7", "READY=1"], socket: "@sd" },
  ]);
});
