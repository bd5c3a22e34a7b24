import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";
import { createClient } from "../../src/client/client.ts";
import { REPO_ROOT, runCli, spawnCli, stopChild } from "../helpers/cli.ts";
import { tempDir, waitFor } from "../helpers/fixtures.ts";
import { notifyReceiver, SKIP_NO_NOTIFY_TOOLS, type Notification } from "../helpers/notify_receiver.ts";
import { pidAlive } from "../helpers/pid_alive.ts";
import { freeTcpUdpPort } from "../helpers/free_port.ts";
import { stopPidAfter } from "../helpers/socket_activate.ts";

const skip = SKIP_NO_NOTIFY_TOOLS;
const APP = path.join(REPO_ROOT, "test/fixtures/recording_app.ts");
/** As root, systemd-notify sends with its parent's pid: the perilink process that asked. */
const root = process.getuid?.() === 0;

const has = (n: Notification[], line: string): boolean => n.some((m) => m.lines.includes(line));

test("serve → upgrade → stop notifies READY, RELOADING with MONOTONIC_USEC, MAINPID and READY in one datagram before the old process exits, STOPPING, EXTEND_TIMEOUT_USEC", { skip }, async () => {
  const rx = await notifyReceiver();
  const port = await freeTcpUdpPort();
  const stateDir = tempDir();
  const old = spawnCli(["serve", "--access", "open", "--listen", `127.0.0.1:${port}`, "--state-dir", stateDir, "--app", APP], { env: { ...process.env, NOTIFY_SOCKET: rx.socket } });
  let log = "";
  old.stderr!.setEncoding("utf8").on("data", (s: string) => (log += s));
  let oldExited = false;
  let mainPidBeforeExit = false;
  old.once("exit", () => {
    oldExited = true;
    mainPidBeforeExit = rx.received().some((n) => n.lines[0]!.startsWith("MAINPID="));
  });
  await rx.waitFor((n) => has(n, "READY=1"), "READY=1 from the fresh server");

  const client = createClient({ lingerMs: 0 });
  const link = await client.connect({ host: "127.0.0.1", port, app: "t" });
  // A request still running on the old process keeps it draining well after the handover.
  const long = link.request("sleep:3000:a", { timeoutMs: 20_000 });
  await new Promise((r) => setTimeout(r, 100));
  const up = await runCli(["upgrade", "--state-dir", stateDir, "--json"], { timeoutMs: 60_000 });
  assert.equal(up.code, 0, up.stderr + log);
  const { pid: newPid } = JSON.parse(up.stdout) as { pid: number };
  stopPidAfter(newPid);
  await rx.waitFor((n) => has(n, `MAINPID=${newPid}`), "MAINPID of the new process");
  assert.equal(oldExited, false, "the old process still runs when MAINPID= arrives");
  assert.match((await long).toString(), /^sleep:3000:a\|gen=1/);
  await waitFor(() => oldExited, "the old process to drain and exit", 20_000);
  assert.ok(mainPidBeforeExit, "MAINPID= was taken before the old process exited");

  // Stop the new process while a request runs: STOPPING=1, then more time asked while it drains.
  const longer = link.request("sleep:2500:b", { timeoutMs: 20_000 });
  await new Promise((r) => setTimeout(r, 200));
  process.kill(newPid, "SIGTERM");
  await rx.waitFor((n) => n.some((m) => m.lines[0]!.startsWith("EXTEND_TIMEOUT_USEC=")), "EXTEND_TIMEOUT_USEC while the drain runs");
  assert.match((await longer).toString(), /^sleep:2500:b\|gen=2/);
  await waitFor(() => !pidAlive(newPid), "the new process to exit", 20_000);
  link.close();
  await client.close();
  await stopChild(old);

  const got = rx.received();
  assert.deepEqual(got.map((n) => n.lines.map((l) => l.split("=")[0]).join("+")), [
    "READY+STATUS",
    "RELOADING+MONOTONIC_USEC+STATUS",
    "MAINPID+READY+STATUS",
    "STOPPING+STATUS",
    "EXTEND_TIMEOUT_USEC",
  ], JSON.stringify(got));
  const [ready, reloading, handed, stopping, extend] = got as [Notification, Notification, Notification, Notification, Notification];
  assert.match(ready.lines[1]!, /^STATUS=Serving [0-9a-f-]{36} on 1 address\(es\), generation 1, pid \d+$/);
  assert.equal(reloading.lines[0], "RELOADING=1");
  const mono = Number(reloading.lines[1]!.slice("MONOTONIC_USEC=".length));
  assert.ok(mono <= reloading.monoUsec + 20_000 && mono > reloading.monoUsec - 5_000_000, `MONOTONIC_USEC=${mono} is CLOCK_MONOTONIC (received at ${reloading.monoUsec})`);
  assert.equal(reloading.lines[2], "STATUS=Upgrading: starting generation 2");
  assert.deepEqual(handed.lines, [`MAINPID=${newPid}`, "READY=1", `STATUS=Upgraded: generation 2 (pid ${newPid}) serves; generation 1 drains`]);
  assert.deepEqual(stopping.lines, ["STOPPING=1", "STATUS=Stopping: finishing 1 request(s) on 1 connection(s), for up to 30 s"]);
  const extendUsec = Number(extend.lines[0]!.split("=")[1]);
  assert.ok(extendUsec > 25_000_000 && extendUsec <= 35_000_000, `EXTEND_TIMEOUT_USEC=${extendUsec}: the drain's time left plus 5 s`);
  if (root) {
    assert.deepEqual(got.map((n) => n.pid), [old.pid, old.pid, old.pid, newPid, newPid], "who sent each message");
  }
});

test("WATCHDOG=1 every half WATCHDOG_USEC, and the upgraded process re-arms it after the old one exits", { skip }, async () => {
  const rx = await notifyReceiver();
  const port = await freeTcpUdpPort();
  const stateDir = tempDir();
  // systemd sets WATCHDOG_PID to the main process: the shell execs into perilink, keeping its pid.
  const old = spawnCli(["serve", "--access", "open", "--listen", `127.0.0.1:${port}`, "--state-dir", stateDir], {
    env: { ...process.env, NOTIFY_SOCKET: rx.socket, WATCHDOG_USEC: "600000" },
    prefix: ["sh", "-c", 'WATCHDOG_PID=$$ exec "$0" "$@"'],
  });
  const pings = (n: Notification[]): Notification[] => n.filter((m) => m.lines.join() === "WATCHDOG=1");
  await rx.waitFor((n) => pings(n).length >= 2, "two WATCHDOG=1 from the first process");
  const up = await runCli(["upgrade", "--state-dir", stateDir, "--json"], { timeoutMs: 60_000 });
  assert.equal(up.code, 0, up.stderr);
  const { pid: newPid } = JSON.parse(up.stdout) as { pid: number };
  stopPidAfter(newPid);
  await waitFor(() => old.exitCode !== null || old.signalCode !== null, "the old process to exit", 20_000);
  const before = pings(rx.received()).length;
  const t0 = Date.now();
  await rx.waitFor((n) => pings(n).length >= before + 3, "WATCHDOG=1 from the upgraded process");
  const elapsed = Date.now() - t0;
  assert.ok(elapsed < 3000, `three pings in ${elapsed} ms (every 300 ms expected)`);
  if (root) {
    const pids = new Set(pings(rx.received()).map((n) => n.pid));
    assert.deepEqual([...pids].sort(), [old.pid, newPid].sort(), "both processes pinged, each its own");
  }
  process.kill(newPid, "SIGTERM");
  await waitFor(() => !pidAlive(newPid), "the new process to exit", 20_000);
});

test("a failed upgrade ends its RELOADING=1 with READY=1 and a STATUS that says why, and the server keeps serving", { skip }, async () => {
  const rx = await notifyReceiver();
  const port = await freeTcpUdpPort();
  const stateDir = tempDir();
  const srv = spawnCli(["serve", "--access", "open", "--listen", `127.0.0.1:${port}`, "--state-dir", stateDir], { env: { ...process.env, NOTIFY_SOCKET: rx.socket } });
  await rx.waitFor((n) => has(n, "READY=1"), "READY=1");
  const up = await runCli(["upgrade", "--state-dir", stateDir, "--program", path.join(stateDir, "missing.mjs")]);
  assert.equal(up.code, 1);
  await rx.waitFor((n) => n.length >= 3, "the end of the failed upgrade");
  const got = rx.received().map((n) => n.lines);
  assert.equal(got[1]![0], "RELOADING=1");
  assert.equal(got[2]![0], "READY=1");
  assert.match(got[2]![1]!, /^STATUS=Upgrade failed: Cannot upgrade: program .*missing\.mjs does not exist; nothing was changed\. Serving [0-9a-f-]{36} on 1 address\(es\), generation 1, pid \d+$/);
  assert.equal(got.length, 3);
  const id = await runCli(["id", `127.0.0.1:${port}`, "--json"]);
  assert.equal(id.code, 0, id.stderr);
  await stopChild(srv);
});
