import assert from "node:assert/strict";
import { fork } from "node:child_process";
import { test } from "node:test";
import v8 from "node:v8";
import vm from "node:vm";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { portOf, sleep, testServer, waitFor } from "../helpers/fixtures.ts";

/** V8's full collection, reachable at run time; null where the runtime does not allow it. */
function fullCollection(): (() => void) | null {
  try {
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc") as unknown;
    return typeof gc === "function" ? (gc as () => void) : null;
  } catch {
    return null;
  }
}

const CLIENT = new URL("../fixtures/session_memory_client.ts", import.meta.url);

/** Opens `count` sessions from another process (so that only the server's objects are in this heap) and holds them. */
async function holdSessions(port: number, count: number): Promise<{ release: () => Promise<void> }> {
  const child = fork(CLIENT, [String(port), String(count)], { execArgv: ["--import", "tsx"], stdio: ["ignore", "ignore", "inherit", "ipc"] });
  await new Promise<void>((resolve, reject) => {
    child.once("message", () => resolve());
    child.once("exit", (code) => reject(new Error(`the client process exited (${code}) before opening its sessions`)));
  });
  return {
    release: () =>
      new Promise<void>((resolve) => {
        child.once("exit", () => resolve());
        child.send("release");
      }),
  };
}

const gc = fullCollection();

test("an idle sealed session costs the server about 1 KiB of JS heap more than a plaintext one did, and at most 3.5 KiB (4 KiB on Deno) (socket, session, flow control, writer, decoder, the record layer's keys and counters)", { skip: gc === null && "no run-time garbage collection here" }, async (t) => {
  const server = await testServer({ limits: { maxSessions: 1200, maxSessionsPerPeer: 1200, sessionRatePerPeer: 0, sessionRateGlobal: 0 } });
  const port = portOf(server);
  // What every session shares (compiled code, pools) is warmed up by the first ones.
  const warm = await holdSessions(port, 50);
  await waitFor(() => server.status().sessions === 50, "the server to hold the first sessions", 20_000);
  await sleep(500);
  gc!();
  gc!();
  const before = process.memoryUsage().heapUsed;
  const n = 1000;
  const held = await holdSessions(port, n);
  // Measured once the server has every session and has finished with their handshakes (on a loaded machine
  // the client may report before the server's side settled: 3,636 bytes were seen so, against 3,320 idle).
  await waitFor(() => server.status().sessions === 50 + n, "the server to hold every session", 20_000);
  await sleep(500);
  gc!();
  gc!();
  const perSession = (process.memoryUsage().heapUsed - before) / n;
  await held.release();
  await warm.release();
  t.diagnostic(`${Math.round(perSession)} bytes of JS heap per idle session`);
  // Plaintext v1 sessions measured 2,350 bytes on Node and 2,941 on Deno (its sockets cost more);
  // sealed ones 3,106-3,330 on Node and 3,587 on Deno (the figure varies by ~200 bytes from run to
  // run). The bound is each runtime's plaintext figure plus 1 KiB, plus that noise, rounded.
  const bound = detectRuntime().name === "deno" ? 4096 : 3584;
  assert.ok(perSession <= bound, `${Math.round(perSession)} bytes of JS heap per idle session (bound ${bound})`);
});
