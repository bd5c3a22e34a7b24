import assert from "node:assert/strict";
import { fork, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { HostAgent } from "../../src/agent/host_agent.ts";
import { HostClient } from "../../src/agent/host_client.ts";
import { encodeFrame } from "../../src/agent/agent_wire.ts";
import { silentLogger } from "../../src/logger.ts";
import { cliCommand, REPO_ROOT, runCli, spawnCli, stopChild } from "../helpers/cli.ts";
import { SKIP_NO_SOCKET_ACTIVATE, SOCKET_ACTIVATE } from "../helpers/socket_activate.ts";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { portOf, sleep, tempDir, testServer, waitFor } from "../helpers/fixtures.ts";
import { rssOf, serverProcess } from "../helpers/server_process.ts";
import { openMetricsParserMissing, parseOpenMetrics, sampleValue } from "../helpers/open_metrics_parser.ts";

const APP = path.join(path.dirname(fileURLToPath(import.meta.url)), "../fixtures/agent_app.ts");

/** A host agent in its own process (`perilink agent`), on a socket in a fresh private directory. */
async function agentProcess(): Promise<{ socket: string; child: ChildProcess; stderr: () => string }> {
  const dir = tempDir();
  const socket = path.join(dir, "run", "agent.sock");
  const child = spawnCli(["agent", "--socket", socket, "--state-dir", path.join(dir, "state")]);
  let err = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (err += s));
  after(() => stopChild(child));
  await waitFor(() => err.includes('"agent_started"') || child.exitCode !== null, "the agent to start", 20000);
  assert.equal(child.exitCode, null, err);
  return { socket, child, stderr: () => err };
}

interface AppProcess {
  child: ChildProcess;
  ready: { ready: number[]; usesAgent: boolean };
  ask(what: "report" | "stop"): Promise<{ ok: number; failures: string[]; moves: string[] }>;
}

async function appProcess(socket: string, port: number, apps: string): Promise<AppProcess> {
  const child = fork(APP, [socket, String(port), apps], { execArgv: ["--import", "tsx"], stdio: ["ignore", "ignore", "inherit", "ipc"] });
  after(() => {
    if (child.exitCode === null) child.kill("SIGKILL");
  });
  const ready = await new Promise<AppProcess["ready"]>((resolve, reject) => {
    child.once("message", (m) => resolve(m as AppProcess["ready"]));
    child.once("exit", (code) => reject(new Error(`the app process exited with ${code} before it was ready`)));
  });
  return {
    child,
    ready,
    ask: (what) =>
      new Promise((resolve) => {
        child.once("message", (m) => resolve(m as { ok: number; failures: string[]; moves: string[] }));
        child.send(what);
      }),
  };
}

test("two processes share one session through the agent; kill -9 of one frees its links at once and the other goes on with 0 failures", async () => {
  const server = await testServer();
  const agent = await agentProcess();
  const a = await appProcess(agent.socket, portOf(server), "spooler,monitor");
  const b = await appProcess(agent.socket, portOf(server), "scanner");
  assert.equal(a.ready.usesAgent, true);
  await waitFor(() => server.status().sessions === 1 && server.status().counters.channelsOpen === 3, "3 channels on 1 session");
  await sleep(200);
  assert.equal(server.status().sessions, 1, "the device sees one session for both processes");
  const table = JSON.parse((await runCli(["sessions", "--socket", agent.socket, "--json"])).stdout) as { links: Record<string, unknown>[]; sessions: unknown[] };
  assert.equal(table.links.length, 3);
  assert.equal(table.sessions.length, 1);
  assert.deepEqual(new Set(table.links.map((l) => l.pid)), new Set([a.child.pid, b.child.pid]));
  for (const l of table.links) {
    for (const k of ["pid", "app", "requestedHost", "address", "serverId", "sessionNumber", "state"]) assert.ok(k in l, `link row has ${k}`);
    assert.equal(l.serverId, server.serverId);
    assert.equal(l.refCount, 3, "the session is counted by every process's links");
  }
  const human = await runCli(["sessions", "--socket", agent.socket]);
  assert.match(human.stdout, /MGMT +PID +COMMAND +APP/);
  const before = (await b.ask("report")).ok;
  a.child.kill("SIGKILL");
  const killedAt = Date.now();
  await waitFor(() => server.status().counters.channelsOpen === 1, "the killed process's channels to close", 3000);
  assert.ok(Date.now() - killedAt < 1000, `its links went in ${Date.now() - killedAt} ms`);
  await sleep(300);
  const end = await b.ask("stop");
  assert.deepEqual(end.failures, []);
  assert.ok(end.ok > before, `the other process's requests went on: ${before} → ${end.ok}`);
  assert.equal(server.status().sessions, 1);
});

test('agent: "auto" works in-process when no agent answers; true says how to start one', async () => {
  const server = await testServer();
  const socket = path.join(tempDir(), "none", "agent.sock");
  const auto = new HostClient({ agentSocket: socket, stateDir: false, lingerMs: 0 });
  after(() => auto.close());
  const link = await auto.connect({ host: "127.0.0.1", port: portOf(server), app: "a" });
  assert.equal(auto.usesAgent, false);
  assert.equal((await link.request("x")).toString(), "x");
  const must = new HostClient({ agent: true, agentSocket: socket });
  await assert.rejects(must.connect({ host: "127.0.0.1", port: portOf(server), app: "a" }), { code: "PERILINK_AGENT", message: /perilink agent/ });
});

test("an agent socket in a directory others may write is never talked to: agent: true refuses, auto works in-process and warns", async () => {
  const server = await testServer();
  const dir = path.join(tempDir(), "shared");
  mkdirSync(dir, { mode: 0o700 });
  const agent = await HostAgent.start({ socketPath: path.join(dir, "agent.sock"), client: { stateDir: false }, log: silentLogger });
  after(() => agent.close());
  chmodSync(dir, 0o777);
  const strict = new HostClient({ agent: true, agentSocket: agent.socketPath });
  await assert.rejects(strict.connect({ host: "127.0.0.1", port: portOf(server), app: "a" }), { code: "PERILINK_AGENT", message: /someone else may have put it there/ });
  const warned = new Promise<Error>((r) => process.once("warning", r));
  const auto = new HostClient({ agentSocket: agent.socketPath, stateDir: false });
  after(() => auto.close());
  const link = await auto.connect({ host: "127.0.0.1", port: portOf(server), app: "a" });
  assert.equal(auto.usesAgent, false);
  assert.equal((await link.request("x")).toString(), "x");
  assert.match((await warned).message, /someone else may have put it there/);
  assert.equal(agent.processes, 0, "nothing was sent to it");
  chmodSync(dir, 0o700);
});

test("the agent refuses a socket directory that is not its user's alone, and a path that is not a socket, and changes neither", async () => {
  const open = path.join(tempDir(), "open");
  mkdirSync(open, { mode: 0o755 });
  chmodSync(open, 0o755);
  await assert.rejects(HostAgent.start({ socketPath: path.join(open, "agent.sock"), client: { stateDir: false }, log: silentLogger }), { code: "PERILINK_STATE_DIR_UNSAFE" });
  assert.equal(statSync(open).mode & 0o777, 0o755, "its mode is left as it was");
  const dir = path.join(tempDir(), "mine");
  mkdirSync(dir, { mode: 0o700 });
  writeFileSync(path.join(dir, "agent.sock"), "not a socket");
  await assert.rejects(HostAgent.start({ socketPath: path.join(dir, "agent.sock"), client: { stateDir: false }, log: silentLogger }), { code: "PERILINK_AGENT", message: /not a socket/ });
  assert.equal(readFileSync(path.join(dir, "agent.sock"), "utf8"), "not a socket");
});

test("a process's links and requests in flight are bounded; errors cross with their code", async () => {
  const server = await testServer({ appObject: { request: (p: Buffer) => (p.toString() === "slow" ? new Promise((r) => setTimeout(() => r("late"), 400)) : p) } });
  const agent = await HostAgent.start({ socketPath: path.join(tempDir(), "a", "agent.sock"), client: { stateDir: false }, limits: { maxLinksPerProcess: 2, maxInflightPerProcess: 3 }, log: silentLogger });
  after(() => agent.close());
  const client = new HostClient({ agent: true, agentSocket: agent.socketPath });
  after(() => client.close());
  const port = portOf(server);
  const l1 = await client.connect({ host: "127.0.0.1", port, app: "a" });
  await client.connect({ host: "127.0.0.1", port, app: "b" });
  await assert.rejects(client.connect({ host: "127.0.0.1", port, app: "c" }), { code: "PERILINK_AGENT_LIMIT", message: /maxLinksPerProcess/ });
  const slow = Array.from({ length: 5 }, () => l1.request("slow").then(() => "ok", (e: { code: string }) => e.code));
  const results = await Promise.all(slow);
  assert.equal(results.filter((r) => r === "ok").length, 3);
  assert.equal(results.filter((r) => r === "PERILINK_AGENT_LIMIT").length, 2);
  await assert.rejects(client.connect({ host: "127.0.0.1", port: 1, app: "x" }), (err: Error & { code: string }) => err.code === "PERILINK_AGENT_LIMIT" || err.code === "PERILINK_UNREACHABLE");
});

test("a process that floods the agent and never reads is held (it reads nothing more from it); the agent stays small and serves the others", async () => {
  const server = await testServer();
  const agent = await agentProcess();
  const pid = agent.child.pid!;
  const good = await appProcess(agent.socket, portOf(server), "good");
  const idle = rssOf(pid);
  const flood = net.connect(agent.socket);
  flood.on("error", () => {});
  await new Promise((r) => flood.once("connect", r));
  flood.pause(); // never reads
  const write = (h: Record<string, unknown> & { t: string }, p?: Buffer): boolean => encodeFrame(h, p).map((b) => flood.write(b)).every(Boolean);
  write({ t: "hello", id: 1, pid: process.pid });
  write({ t: "connect", id: 2, linkId: 1, host: "127.0.0.1", port: portOf(server), app: "flood" });
  await sleep(300);
  const body = Buffer.alloc(60_000, 1);
  let sent = 0;
  const until = Date.now() + 8000;
  let peak = idle;
  while (!flood.destroyed && Date.now() < until && sent < 20_000) {
    // As fast as the agent takes them; what it does not take stays here (bounded: 1 MiB unsent).
    if (flood.writableLength < 1048576) for (let i = 0; i < 50; i++) write({ t: "request", id: 10 + sent++, link: 1 }, body);
    await sleep(10);
    peak = Math.max(peak, rssOf(pid));
  }
  await sleep(500);
  peak = Math.max(peak, rssOf(pid));
  const end = await good.ask("stop");
  assert.deepEqual(end.failures, [], "the well-behaved process was served throughout");
  assert.ok(end.ok > 0);
  const grew = (peak - idle) / 1048576;
  assert.ok(grew < 64, `agent RSS grew ${grew.toFixed(1)} MiB while ${sent} requests of 60 KB went unread`);
  assert.match(agent.stderr(), /"agent_peer_held"/, "the agent stopped reading the flooding process");
  flood.destroy();
});

test("under socket activation the agent serves the socket systemd passes, started by the first application", { skip: SKIP_NO_SOCKET_ACTIVATE || (detectRuntime().name === "deno" ? "Deno cannot listen on a passed descriptor" : false) }, async () => {
  const server = await testServer();
  const dir = tempDir();
  mkdirSync(path.join(dir, "run"), { mode: 0o700 });
  const socket = path.join(dir, "run", "agent.sock");
  const { cmd, args } = cliCommand(["agent", "--state-dir", path.join(dir, "state")]);
  const child = spawn(SOCKET_ACTIVATE!, ["-l", socket, "--", cmd, ...args], { cwd: REPO_ROOT, env: { ...process.env, PERILINK_AGENT_SOCKET: socket }, stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (err += s));
  after(() => stopChild(child, 3000));
  await waitFor(() => /Listening on /.test(err), "systemd-socket-activate to listen", 10_000);
  assert.doesNotMatch(err, /"agent_started"/, "nothing runs before an application connects");
  const client = new HostClient({ agent: true, agentSocket: socket });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port: portOf(server), app: "a" });
  assert.equal((await link.request("through the passed socket")).toString(), "through the passed socket");
  assert.match(err, /"agent_started".*"fromSystemd":true/);
});

test("when the agent is replaced, links open again through the new one at their next use; a request in flight fails OUTCOME_UNKNOWN unless idempotent", async () => {
  const server = await testServer({ appObject: { request: (p: Buffer) => (p.toString() === "slow" ? new Promise((r) => setTimeout(() => r("late"), 300)) : p) } });
  const socketPath = path.join(tempDir(), "a", "agent.sock");
  const stateDir = tempDir();
  let agent = await HostAgent.start({ socketPath, client: { stateDir }, log: silentLogger });
  after(() => agent.close());
  const client = new HostClient({ agent: true, agentSocket: socketPath });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port: portOf(server), app: "a" });
  const states: string[] = [];
  link.on("statechange", (s: string) => states.push(s));
  assert.equal((await link.request("one")).toString(), "one");
  const inflight = link.request("slow").then(() => "answered", (e: { code: string }) => e.code);
  const again = link.request("slow", { idempotent: true }).then((b) => b.toString(), (e: { code: string }) => e.code);
  await sleep(50);
  await agent.close();
  agent = await HostAgent.start({ socketPath, client: { stateDir }, log: silentLogger });
  assert.equal(await inflight, "PERILINK_OUTCOME_UNKNOWN");
  assert.equal(await again, "late", "the idempotent one was sent again through the new agent");
  assert.equal((await link.request("two")).toString(), "two");
  assert.ok(states.includes("moving"), states.join(" → "));
  assert.equal(link.state, "ready");
});

test("perilink agent upgrade replaces the agent under load from 4 processes: its socket stays open, 0 requests fail, links move (reason upgrade)", { skip: detectRuntime().name === "deno" ? "Deno cannot pass the listening socket to a new process" : false }, async () => {
  const server = await testServer();
  const agent = await agentProcess();
  const apps = await Promise.all([1, 2, 3, 4].map((i) => appProcess(agent.socket, portOf(server), `app${i}`)));
  await sleep(300);
  const before = await Promise.all(apps.map((a) => a.ask("report")));
  const up = await runCli(["agent", "upgrade", "--socket", agent.socket, "--json"]);
  assert.equal(up.code, 0, up.stderr);
  const newPid = (JSON.parse(up.stdout) as { pid: number }).pid;
  assert.ok(newPid > 0 && newPid !== agent.child.pid);
  after(() => {
    try {
      process.kill(newPid, "SIGTERM");
    } catch {
      // gone already
    }
  });
  await waitFor(() => agent.child.exitCode !== null, "the old agent to exit once its processes moved", 15_000);
  await sleep(300);
  const ends = await Promise.all(apps.map((a) => a.ask("stop")));
  ends.forEach((e, i) => {
    assert.deepEqual(e.failures, [], `process ${i + 1}`);
    assert.ok(e.ok > before[i]!.ok, `process ${i + 1} went on: ${before[i]!.ok} → ${e.ok}`);
    assert.deepEqual(e.moves, ["upgrade"], `process ${i + 1}'s link moved once, reason upgrade`);
  });
  assert.match(agent.stderr(), /"agent_handed_over"/);
  const table = JSON.parse((await runCli(["sessions", "--socket", agent.socket, "--json"])).stdout) as { links: { pid: number }[] };
  assert.equal(table.links.length, 0, "the apps closed their links on the new agent");
});

test("perilink agent metrics: the agent's processes and links and its session table's counters, as OpenMetrics", { skip: openMetricsParserMissing() ?? false }, async () => {
  const server = await testServer();
  const agent = await HostAgent.start({ socketPath: path.join(tempDir(), "m", "agent.sock"), client: { stateDir: false }, log: silentLogger });
  after(() => agent.close());
  const client = new HostClient({ agent: true, agentSocket: agent.socketPath });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port: portOf(server), app: "a" });
  for (let i = 0; i < 3; i++) await link.request("x");
  const r = await runCli(["agent", "metrics", "--socket", agent.socketPath]);
  assert.equal(r.code, 0, r.stderr);
  const m = parseOpenMetrics(r.stdout);
  assert.equal(sampleValue(m, "perilink_agent_links", "perilink_agent_links"), 1);
  assert.ok((sampleValue(m, "perilink_agent_processes", "perilink_agent_processes") ?? 0) >= 1);
  assert.equal(sampleValue(m, "perilink_client_requests", "perilink_client_requests_total"), 3);
  assert.equal(sampleValue(m, "perilink_client_sessions_opened", "perilink_client_sessions_opened_total"), 1);
});

test("an agent socket owned by another user is refused", { skip: process.getuid?.() === 0 ? false : "needs root (to give the socket to another user)" }, async () => {
  const server = await testServer();
  const dir = path.join(tempDir(), "own");
  mkdirSync(dir, { mode: 0o700 });
  const socket = path.join(dir, "agent.sock");
  const impostor = net.createServer((s) => s.destroy());
  await new Promise<void>((r) => impostor.listen(socket, () => r()));
  after(() => impostor.close());
  chownSync(socket, 65534, 65534);
  const client = new HostClient({ agent: true, agentSocket: socket });
  await assert.rejects(client.connect({ host: "127.0.0.1", port: portOf(server), app: "a" }), { code: "PERILINK_AGENT", message: /owned by uid 65534/ });
});

test("one-way messages to a server that stopped reading wait, count against the process's bounds, and do not grow the agent", { skip: detectRuntime().name === "deno" ? "SIGSTOP of the server child: Node's process handling" : false }, async () => {
  const srv = await serverProcess({ listen: ["127.0.0.1:0"] });
  const agent = await agentProcess();
  const client = new HostClient({ agent: true, agentSocket: agent.socket });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port: srv.port, app: "telemetry" });
  await link.request("x");
  const idle = rssOf(agent.child.pid!);
  process.kill(srv.pid, "SIGSTOP");
  after(() => {
    try {
      process.kill(srv.pid, "SIGCONT");
    } catch {
      // gone already
    }
  });
  const body = Buffer.alloc(512 * 1024, 3);
  const results: string[] = [];
  const sends: Promise<void>[] = [];
  for (let i = 0; i < 150; i++) sends.push(link.send(body).then(() => void results.push("sent"), (e: { code: string }) => void results.push(e.code)));
  await waitFor(() => results.filter((r) => r === "PERILINK_AGENT_LIMIT").length > 0, "the process's bound to refuse sends", 10_000);
  await sleep(500);
  const grew = (rssOf(agent.child.pid!) - idle) / 1048576;
  assert.ok(grew < 48, `the agent grew ${grew.toFixed(1)} MiB for 75 MiB of messages to a stopped server`);
  assert.ok(results.filter((r) => r === "sent").length < 40, `${results.filter((r) => r === "sent").length} were taken before the bound`);
  process.kill(srv.pid, "SIGCONT");
  await Promise.all(sends);
  assert.equal((await link.request("after")).toString(), "after", "the link carries on once the server reads again");
});

test("through the agent: a body too large is refused in the process alone, the table holds many links, a silent process is let go", async () => {
  const server = await testServer();
  const agent = await HostAgent.start({ socketPath: path.join(tempDir(), "t", "agent.sock"), client: { stateDir: false }, log: silentLogger });
  after(() => agent.close());
  const client = new HostClient({ agent: true, agentSocket: agent.socketPath });
  after(() => client.close());
  const port = portOf(server);
  const links = await Promise.all(Array.from({ length: 60 }, (_, i) => client.connect({ host: "127.0.0.1", port, app: `app-with-a-long-name-${i}` })));
  await assert.rejects(links[0]!.request(Buffer.alloc(17 * 1024 * 1024)), { code: "PERILINK_BODY_TOO_LARGE" });
  assert.equal((await links[1]!.request("still here")).toString(), "still here", "the other links' connection was not touched");
  const table = await client.agentTable();
  assert.equal(table.links.length, 60, "a table larger than a frame header");
  const silent = net.connect(agent.socketPath);
  silent.on("error", () => {});
  await new Promise((r) => silent.once("connect", r));
  await waitFor(() => agent.processes === 2, "the silent process to count", 1000);
  await waitFor(() => silent.destroyed || silent.readableEnded, "the agent to let a process that says no hello go", 4000);
  silent.destroy(); // this side of it: an open handle would keep the test process alive
});

test("a link that only listens opens again on its own when the agent comes back", async () => {
  const server = await testServer();
  const socketPath = path.join(tempDir(), "l", "agent.sock");
  let agent = await HostAgent.start({ socketPath, client: { stateDir: false }, log: silentLogger });
  after(() => agent.close());
  const client = new HostClient({ agent: true, agentSocket: socketPath });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port: portOf(server), app: "monitor" });
  await agent.close();
  agent = await HostAgent.start({ socketPath, client: { stateDir: false }, log: silentLogger });
  await waitFor(() => agent.table().links.length === 1 && link.state === "ready", "the link to be open on the new agent without a request", 6000);
});

test("when the agent is gone for good, a process's links wait for a new one together and go offline; closing the client does not wait", async () => {
  const server = await testServer();
  const agent = await HostAgent.start({ socketPath: path.join(tempDir(), "g", "agent.sock"), client: { stateDir: false }, log: silentLogger });
  after(() => agent.close());
  const clients = [new HostClient({ agent: true, agentSocket: agent.socketPath }), new HostClient({ agent: true, agentSocket: agent.socketPath })];
  const [waits, closes] = clients;
  const links = await Promise.all(Array.from({ length: 30 }, (_, i) => waits!.connect({ host: "127.0.0.1", port: portOf(server), app: `w${i}` })));
  await Promise.all(Array.from({ length: 30 }, (_, i) => closes!.connect({ host: "127.0.0.1", port: portOf(server), app: `c${i}` })));
  const gone = Date.now();
  await agent.close();
  const started = Date.now();
  await closes!.close();
  assert.ok(Date.now() - started < 500, `close took ${Date.now() - started} ms with its links waiting for an agent`);
  // One shared wait of 5 s (AGENT_BACK_MS), not thirty in a row.
  await waitFor(() => links.every((l) => l.state === "offline"), "every link to give up on the agent", 9000);
  assert.ok(Date.now() - gone < 8000, `the links gave up after ${Date.now() - gone} ms`);
  await assert.rejects(links[0]!.request("x"), { code: "PERILINK_AGENT" });
  await waits!.close();
});

test("the table lists lingering sessions too; sessions --watch draws it again, --count times", async () => {
  const server = await testServer();
  const agent = await HostAgent.start({ socketPath: path.join(tempDir(), "w", "agent.sock"), client: { stateDir: false, lingerMs: 10_000 }, log: silentLogger });
  after(() => agent.close());
  const client = new HostClient({ agent: true, agentSocket: agent.socketPath });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port: portOf(server), app: "a" });
  await link.request("x");
  link.close();
  await waitFor(() => agent.table().links.length === 0, "the link to close");
  const table = agent.table();
  assert.deepEqual(table.sessions.map((s) => (s as { state: string; links: number }).state), ["lingering"]);
  assert.equal(server.status().sessions, 1, "kept for lingerMs");
  const watch = await runCli(["sessions", "--socket", agent.socketPath, "--watch", "--count", "2", "--interval", "100"]);
  assert.equal(watch.code, 0, watch.stderr);
  assert.equal(watch.stdout.match(/^no links: /gm)?.length, 2, watch.stdout);
  assert.equal(watch.stdout.match(/^SESSION +SERVER +ADDRESS +LINKS +STATE$/gm)?.length, 2);
  assert.match(watch.stdout, /lingering/);
});
