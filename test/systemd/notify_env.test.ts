import assert from "node:assert/strict";
import { test } from "node:test";
import { readNotifyEnv } from "../../src/systemd/systemd_notifier.ts";

test("readNotifyEnv: no NOTIFY_SOCKET means no notifier", () => {
  assert.equal(readNotifyEnv({ WATCHDOG_USEC: "1000000" }, 10, 1), null);
});

test("readNotifyEnv: the watchdog is armed only for the process WATCHDOG_PID names, or for an upgraded process whose parent it names", () => {
  assert.deepEqual(readNotifyEnv({ NOTIFY_SOCKET: "/run/n", WATCHDOG_USEC: "1000000" }, 10, 1), { socket: "/run/n", watchdogUsec: 1_000_000 });
  assert.deepEqual(readNotifyEnv({ NOTIFY_SOCKET: "/run/n", WATCHDOG_USEC: "1000000", WATCHDOG_PID: "99" }, 10, 1), { socket: "/run/n", watchdogUsec: null });
  assert.deepEqual(readNotifyEnv({ NOTIFY_SOCKET: "/run/n", WATCHDOG_USEC: "1000000", WATCHDOG_PID: "1" }, 10, 1, false), { socket: "/run/n", watchdogUsec: null });
  const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: "@abstract", WATCHDOG_USEC: "500000", WATCHDOG_PID: "1" };
  assert.deepEqual(readNotifyEnv(env, 10, 1, true), { socket: "@abstract", watchdogUsec: 500_000 });
  assert.equal(env.WATCHDOG_PID, "10", "so that the next upgrade's process finds its parent there");
  assert.equal(env.NOTIFY_SOCKET, "@abstract", "kept for the process an upgrade starts");
  assert.deepEqual(readNotifyEnv({ NOTIFY_SOCKET: "/run/n", WATCHDOG_USEC: "nonsense" }, 10, 1), { socket: "/run/n", watchdogUsec: null });
});
