import assert from "node:assert/strict";
import { readdirSync, readlinkSync } from "node:fs";
import dgram from "node:dgram";
import net from "node:net";
import path from "node:path";
import { test } from "node:test";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { REPO_ROOT, runCli } from "../helpers/cli.ts";
import { tempDir, waitFor } from "../helpers/fixtures.ts";
import { freeTcpUdpPort } from "../helpers/free_port.ts";
import { SKIP_NO_SOCKET_ACTIVATE, socketActivated, stopPidAfter, type Activated } from "../helpers/socket_activate.ts";

const skip = SKIP_NO_SOCKET_ACTIVATE;
const node = detectRuntime().canInheritSockets;
const ENV_APP = path.join(REPO_ROOT, "test/fixtures/env_app.ts");

/** The socket inodes process `pid` holds (Linux /proc), or only those of descriptors `only`. */
function socketInodes(pid: number, only?: number[]): Set<string> {
  const out = new Set<string>();
  for (const fd of only?.map(String) ?? readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) out.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

async function id(target: string, tcp: boolean, sa: Activated): Promise<{ serverId: string; generation: number; transport: string }> {
  const r = await runCli(["id", target, "--json", "--timeout", "20000", ...(tcp ? ["--tcp"] : [])], { timeoutMs: 30_000 });
  assert.equal(r.code, 0, `id ${target}${tcp ? " --tcp" : ""}: ${r.stderr}\nserver: ${sa.stderr()}`);
  return JSON.parse(r.stdout);
}

async function status(stateDir: string): Promise<{ pid: number; generation: number; serverId: string; listeners: { address: string; port: number; transport: string }[] }> {
  const r = await runCli(["status", "--state-dir", stateDir, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** Deno: the server refuses clearly (exit 1, PERILINK_SOCKET_ACTIVATION) once something wakes it. */
async function assertDenoRefuses(sa: Activated, port: number): Promise<void> {
  await sa.listening();
  const c = net.connect(port, "127.0.0.1");
  c.on("error", () => {});
  const u = dgram.createSocket("udp4");
  u.on("error", () => {});
  u.send("wake", port, "127.0.0.1");
  await waitFor(() => sa.child.exitCode !== null, "the server to exit", 20_000).catch((err: Error) => assert.fail(`${err.message}: ${sa.stderr()}`));
  c.destroy();
  u.close();
  assert.equal(sa.child.exitCode, 1, sa.stderr());
  assert.match(sa.stderr(), /Cannot use the sockets systemd passed.*Deno cannot adopt a listening socket.*\[PERILINK_SOCKET_ACTIVATION\]/);
}

test("serve under systemd-socket-activate adopts the passed TCP socket instead of binding it again (was PERILINK_ADDRESS_IN_USE); Deno refuses with PERILINK_SOCKET_ACTIVATION", { skip }, async () => {
  const port = await freeTcpUdpPort();
  const stateDir = tempDir();
  const sa = socketActivated([{ listen: [`127.0.0.1:${port}`] }], ["--listen", `127.0.0.1:${port}`, "--state-dir", stateDir]);
  if (!node) return assertDenoRefuses(sa, port);
  // The first connection starts the server, as systemd does; it waits in the passed socket's backlog.
  const viaTcp = await id(`127.0.0.1:${port}`, true, sa);
  const viaUdp = await id(`127.0.0.1:${port}`, false, sa);
  assert.equal(viaUdp.serverId, viaTcp.serverId, "the UDP responder was bound as usual beside the adopted TCP listener");
  assert.match(sa.stderr(), /"event":"listener_adopted".*"transports":\["tcp"\]/, sa.stderr());
  const st = await status(stateDir);
  assert.equal(st.pid, sa.child.pid, "the server is the process systemd-socket-activate became (LISTEN_PID)");
  await sa.stop();
  assert.match(sa.stderr(), /"drain_finished"/);
});

test("a --datagram socket serves the UDP identify responder and the probe that woke the server is answered", { skip }, async () => {
  const port = await freeTcpUdpPort();
  const stateDir = tempDir();
  const sa = socketActivated([{ listen: [`127.0.0.1:${port}`], datagram: true }], ["--listen", `127.0.0.1:${port}`, "--state-dir", stateDir]);
  if (!node) return assertDenoRefuses(sa, port);
  const viaUdp = await id(`127.0.0.1:${port}`, false, sa);
  const viaTcp = await id(`127.0.0.1:${port}`, true, sa);
  assert.equal(viaTcp.serverId, viaUdp.serverId);
  assert.match(sa.stderr(), /"event":"listener_adopted".*"transports":\["udp"\]/, sa.stderr());
  await sa.stop();
});

test("named fds: TCP and UDP sockets are matched to their --listen entries; an entry with no passed socket is bound as usual; children see no LISTEN_ variables", { skip }, async () => {
  const [p1, p2, p3] = [await freeTcpUdpPort(), await freeTcpUdpPort(), await freeTcpUdpPort()];
  const stateDir = tempDir();
  // fd 3: TCP 127.0.0.1:p1 (outer layer); fds 4, 5: UDP 127.0.0.1:p1 and UDP 0.0.0.0:p2.
  // Names: systemd's kind (matched by the socket's own address), and perilink's `udp@ADDR@PORT` form,
  // which names the entry it serves (here a wildcard socket, which no address would match).
  const sa = socketActivated(
    [
      { listen: [`127.0.0.1:${p1}`] },
      { listen: [`127.0.0.1:${p1}`, `0.0.0.0:${p2}`], datagram: true, fdnames: ["perilink.socket", "probe", `udp@127.0.0.1@${p2}`] },
    ],
    ["--listen", `127.0.0.1:${p1}`, "--listen", `127.0.0.1:${p2}`, "--listen", `127.0.0.1:${p3}`, "--app", ENV_APP, "--state-dir", stateDir],
  );
  if (!node) return assertDenoRefuses(sa, p1);
  const first = await id(`127.0.0.1:${p1}`, true, sa);
  const st = await status(stateDir);
  const adopted = sa.stderr().split("\n").filter((l) => l.includes('"listener_adopted"')).map((l) => JSON.parse(l) as { port: number; transports: string[] });
  assert.deepEqual(
    adopted.map((a) => `${a.port}:${a.transports.join("+")}`).sort(),
    [`${p1}:tcp+udp`, `${p2}:udp`].sort(),
  );
  assert.equal(st.listeners.length, 6, "three entries, TCP and UDP each");
  for (const p of [p1, p2, p3]) {
    assert.equal((await id(`127.0.0.1:${p}`, false, sa)).serverId, first.serverId, `UDP 127.0.0.1:${p}`);
    assert.equal((await id(`127.0.0.1:${p}`, true, sa)).serverId, first.serverId, `TCP 127.0.0.1:${p}`);
  }
  const call = await runCli(["call", `127.0.0.1:${p3}`, "--json"], { env: { ...process.env, PERILINK_STATE_DIR: tempDir() } });
  assert.equal(call.code, 0, call.stderr);
  const seen = JSON.parse(JSON.parse(call.stdout).responses[0].response);
  assert.deepEqual(seen, { pid: sa.child.pid, LISTEN_FDS: null, LISTEN_PID: null, LISTEN_FDNAMES: null });
  await sa.stop();
});

test("an upgrade of a socket-activated server hands the same sockets on", { skip }, async () => {
  const port = await freeTcpUdpPort();
  const stateDir = tempDir();
  const sa = socketActivated(
    [{ listen: [`127.0.0.1:${port}`] }, { listen: [`127.0.0.1:${port}`], datagram: true }],
    ["--listen", `127.0.0.1:${port}`, "--state-dir", stateDir],
  );
  if (!node) return assertDenoRefuses(sa, port);
  const before = await id(`127.0.0.1:${port}`, true, sa);
  const passed = socketInodes(sa.child.pid!, [3, 4]); // LISTEN_FDS=2 from fd 3
  const up = await runCli(["upgrade", "--state-dir", stateDir, "--json"], { timeoutMs: 60_000 });
  assert.equal(up.code, 0, up.stderr + sa.stderr());
  const result = JSON.parse(up.stdout) as { pid: number; previousPid: number; generation: number };
  stopPidAfter(result.pid);
  assert.equal(result.previousPid, sa.child.pid);
  const held = socketInodes(result.pid);
  assert.equal(passed.size, 2);
  for (const inode of passed) assert.ok(held.has(inode), `the new process holds socket:[${inode}] that systemd passed`);
  const after = await id(`127.0.0.1:${port}`, true, sa);
  assert.equal(after.serverId, before.serverId);
  assert.equal(after.generation, 2);
  assert.equal((await id(`127.0.0.1:${port}`, false, sa)).generation, 2);
  await waitFor(() => sa.child.exitCode !== null, "the old process to drain and exit", 20_000);
  process.kill(result.pid, "SIGTERM");
  await waitFor(() => {
    try {
      process.kill(result.pid, 0);
      return false;
    } catch {
      return true;
    }
  }, "the new process to exit", 20_000);
});
