import assert from "node:assert/strict";
import crypto from "node:crypto";
import { mkdirSync } from "node:fs";
import { once } from "node:events";
import net from "node:net";
import path from "node:path";
import { after, test } from "node:test";
import { HostAgent } from "../../src/agent/host_agent.ts";
import { HostClient } from "../../src/agent/host_client.ts";
import { encodeFrame, FrameReader } from "../../src/agent/agent_wire.ts";
import { silentLogger } from "../../src/logger.ts";
import type { RequestContext, SessionApp } from "../../src/server/app.ts";
import type { PerilinkServer } from "../../src/server/server.ts";
import { tempDir, testServer, waitFor } from "../helpers/fixtures.ts";
import { freePort } from "../helpers/free_port.ts";

/** Messages the app was sent; "len" answers a body's length (streamed or whole), else an echo. */
const messages: string[] = [];
const app: SessionApp = {
  streams: true,
  async request(payload: Uint8Array, ctx: RequestContext) {
    if (!ctx.body.streamed) return payload;
    let n = 0;
    for await (const chunk of ctx.body) n += chunk.length;
    return `streamed ${n}`;
  },
  message(payload: Uint8Array) {
    messages.push(Buffer.from(payload).toString());
  },
};

async function setup(): Promise<{ agent: HostAgent; client: HostClient; port: number; server: PerilinkServer }> {
  const port = await freePort();
  const server = await testServer({ listen: [`127.0.0.1:${port}`], appObject: app });
  const agent = await HostAgent.start({ socketPath: path.join(tempDir(), "a", "agent.sock"), client: { stateDir: false, lingerMs: 0 }, log: silentLogger });
  after(() => agent.close());
  const client = new HostClient({ agent: true, agentSocket: agent.socketPath });
  after(() => client.close());
  return { agent, client, port, server };
}

test("a connect to a server this process reached through the agent returns before the agent answers; what is sent at once waits in the agent for the link", async () => {
  const { agent, client, port } = await setup();
  const first = await client.connect({ host: "127.0.0.1", port, app: "a" });
  assert.equal(first.state, "ready", "the first connect to a server waits for the agent's answer");
  first.close();

  const link = await client.connect({ host: "127.0.0.1", port, app: "a" });
  assert.equal(link.state, "connecting", "opened ahead: the agent has not answered yet");
  const states: string[] = [];
  link.on("statechange", (s: string) => states.push(s));
  const sent = link.send("hello");
  const answer = await link.request("ping");
  await sent;
  assert.equal(answer.toString(), "ping");
  assert.equal(link.state, "ready");
  assert.deepEqual(states, ["ready"]);
  assert.ok(link.sessionNumber !== null && client.sessions().every((r) => r.serverId !== ""), "the agent's answer filled in where the link is");
  await waitFor(() => messages.includes("hello"), "the message sent right behind the connect");
  assert.equal(agent.table().links.length, 1);
  // A second link to the same server the same way, while the first is open: both ride one session.
  const other = await client.connect({ host: "127.0.0.1", port, app: "b" });
  assert.equal((await other.request("two")).toString(), "two");
  assert.equal(other.sessionNumber, link.sessionNumber);
  link.close();
  other.close();
  await waitFor(() => agent.table().links.length === 0, "no link left in the agent");
});

test("an ahead connect that fails closes the link, and its first request fails with the connect's error code; the next connect waits for the agent again", async () => {
  const { agent, client, port, server } = await setup();
  (await client.connect({ host: "127.0.0.1", port, app: "print" })).close();
  // The device is replaced: another identity on the same address and port, which the agent's record refuses.
  await server.drain(1000);
  const replacement = await testServer({ listen: [`127.0.0.1:${port}`], appObject: app });
  assert.notEqual(replacement.serverId, server.serverId);

  const link = await client.connect({ host: "127.0.0.1", port, app: "print" });
  assert.equal(link.state, "connecting", "opened ahead: this process reached 127.0.0.1 through the agent before");
  let closed = false;
  link.once("close", () => (closed = true));
  await assert.rejects(link.request("job"), { code: "PERILINK_SERVER_CHANGED" });
  assert.equal(link.state, "closed");
  assert.ok(closed, "the link emitted close");
  await assert.rejects(link.send("more"), { code: "PERILINK_SERVER_CHANGED" }, "every later use fails the same way");
  assert.equal(replacement.status().counters.channelsOpen, 0, "nothing reached the replacement");
  // Not reached any more: the next connect waits for the agent's answer and fails itself, as a connect in this process does.
  await assert.rejects(client.connect({ host: "127.0.0.1", port, app: "print" }), { code: "PERILINK_SERVER_CHANGED" });
  assert.equal(agent.table().links.length, 0, "nothing left in the agent");
});

test("links closed right after their ahead connect leave nothing in the agent, 200 times over", async () => {
  const { agent, client, port } = await setup();
  (await client.connect({ host: "127.0.0.1", port, app: "loop" })).close();
  for (let i = 0; i < 200; i++) {
    const link = await client.connect({ host: "127.0.0.1", port, app: "loop" });
    if (i % 2 === 0) void link.request("x").catch(() => {}); // half with a request behind the connect, not waited for
    link.close();
  }
  await waitFor(() => agent.table().links.length === 0, "every link closed in the agent too");
  const last = await client.connect({ host: "127.0.0.1", port, app: "loop" });
  assert.equal((await last.request("after")).toString(), "after");
});

test("a streamed body on a link opened ahead waits for the agent's answer, then streams", async () => {
  const { client, port } = await setup();
  (await client.connect({ host: "127.0.0.1", port, app: "up" })).close();
  const link = await client.connect({ host: "127.0.0.1", port, app: "up" });
  assert.equal(link.state, "connecting");
  async function* body(): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < 64; i++) yield crypto.randomBytes(16384);
  }
  const answer = await link.request(body());
  assert.equal(answer.toString(), `streamed ${64 * 16384}`);
  link.close();
});

test("a request behind an ahead open that hangs keeps its deadline and its abort, and a process that goes away lets go of what waited", async () => {
  const { agent, client, port, server } = await setup();
  (await client.connect({ host: "127.0.0.1", port, app: "slow" })).close();
  // The device goes silent: its port takes connections and never answers, so the agent's connect hangs (seconds).
  await server.drain(1000);
  const silent = net.createServer(() => {}).listen(port, "127.0.0.1");
  after(() => silent.close());
  await once(silent, "listening");

  const link = await client.connect({ host: "127.0.0.1", port, app: "slow", trustNew: false });
  let t = performance.now();
  await assert.rejects(link.request("x", { timeoutMs: 300 }), { code: "PERILINK_REQUEST_TIMEOUT" });
  const timedOut = performance.now() - t;
  assert.ok(timedOut < 1500, `the request's own deadline, not the connect's: ${timedOut.toFixed(0)} ms`);
  const ac = new AbortController();
  t = performance.now();
  setTimeout(() => ac.abort(), 100);
  await assert.rejects(link.request("y", { signal: ac.signal }));
  const aborted = performance.now() - t;
  assert.ok(aborted < 1000, `the abort takes effect at once: ${aborted.toFixed(0)} ms`);

  // A process gone while its requests wait: the agent holds no process, no link.
  const other = new HostClient({ agent: true, agentSocket: agent.socketPath });
  (await other.connect({ host: "127.0.0.1", port, app: "slow" }).catch(() => null))?.close();
  void (await other.connect({ host: "127.0.0.1", port, app: "slow" }).catch(() => null))?.request("z").catch(() => {});
  await other.close();
  link.close();
  await waitFor(() => agent.processes === 1 && agent.table().links.length === 0, "only this test's client left, no link");
});

test("links closed before their ahead open was answered still count against the agent's bound: the link the application keeps is not refused", async () => {
  const port = await freePort();
  await testServer({ listen: [`127.0.0.1:${port}`], appObject: app });
  const agent = await HostAgent.start({ socketPath: path.join(tempDir(), "l", "agent.sock"), client: { stateDir: false }, limits: { maxLinksPerProcess: 8 }, log: silentLogger });
  after(() => agent.close());
  const client = new HostClient({ agent: true, agentSocket: agent.socketPath });
  after(() => client.close());
  const held = [];
  for (let i = 0; i < 4; i++) held.push(await client.connect({ host: "127.0.0.1", port, app: `h${i}` }));
  await Promise.all(held.map((l) => l.request("x")));
  for (let i = 0; i < 4; i++) (await client.connect({ host: "127.0.0.1", port, app: "brief" })).close();
  const kept = await client.connect({ host: "127.0.0.1", port, app: "kept" });
  assert.equal((await kept.request("mine")).toString(), "mine", "the fifth link the process holds works");
  assert.equal(kept.state, "ready");
});

test("a stream on a link closed before its ahead open was answered fails CLIENT_CLOSED and reads nothing of its body", async () => {
  const { client, port } = await setup();
  (await client.connect({ host: "127.0.0.1", port, app: "up" })).close();
  const link = await client.connect({ host: "127.0.0.1", port, app: "up" });
  let read = 0;
  async function* body(): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < 64; i++) {
      read++;
      yield Buffer.alloc(16384);
    }
  }
  const streamed = link.stream(body());
  queueMicrotask(() => link.close());
  await assert.rejects(streamed, { code: "PERILINK_CLIENT_CLOSED" });
  assert.equal(read, 0, "the source was not read");
});

test("what an agent that handed over did not read before its bye goes to the next agent, a request not marked idempotent too, and runs once", async () => {
  const port = await freePort();
  let runs = 0;
  await testServer({ listen: [`127.0.0.1:${port}`], appObject: { request: (p: Uint8Array) => (runs++, p) } });
  const dir = path.join(tempDir(), "h");
  mkdirSync(dir, { mode: 0o700 });
  const socketPath = path.join(dir, "agent.sock");
  // The old agent, by hand: it opens the link, and hands over as the request arrives — a goaway, its bye, the end.
  let next: HostAgent | null = null;
  after(() => next?.close());
  const old = net.createServer((s) => {
    const reader = new FrameReader(1 << 20, (h) => {
      if (h.t === "hello") s.write(Buffer.concat(encodeFrame({ t: "hello", id: h.id, pid: 1, ahead: true, maxLinks: 8 })));
      else if (h.t === "connect") s.write(Buffer.concat(encodeFrame({ t: "connected", id: h.id, managementNumber: 1, serverId: "old", state: "ready", sessionNumber: 1, place: null })));
      else if (h.t === "request") {
        s.end(Buffer.concat([...encodeFrame({ t: "goaway" }), ...encodeFrame({ t: "bye" })]));
        old.close();
        void HostAgent.start({ socketPath, client: { stateDir: false }, log: silentLogger }).then((a) => (next = a));
      }
    });
    s.on("data", (d: Buffer) => reader.push(d));
  });
  await new Promise<void>((r) => old.listen(socketPath, r));
  const client = new HostClient({ agent: true, agentSocket: socketPath });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port, app: "job" });
  assert.equal((await link.request("print once")).toString(), "print once");
  assert.equal(runs, 1);
  assert.equal(link.state, "ready");
});

test("a process that opens and closes links to a server that never answers is held to its bound: past maxLinksPerProcess closed-while-opening links, connects are refused at once", async () => {
  // A device that takes connections and never answers: every connect the agent makes for the process hangs (seconds).
  const silent = net.createServer(() => {}).listen(0, "127.0.0.1");
  after(() => silent.close());
  await once(silent, "listening");
  const port = (silent.address() as net.AddressInfo).port;
  const agent = await HostAgent.start({ socketPath: path.join(tempDir(), "b", "agent.sock"), client: { stateDir: false }, limits: { maxLinksPerProcess: 4 }, log: silentLogger });
  after(() => agent.close());
  const peer = net.connect(agent.socketPath);
  after(() => peer.destroy());
  await once(peer, "connect");
  const answers = new Map<number, string>();
  const reader = new FrameReader(1 << 20, (h) => {
    if (typeof h.id === "number") answers.set(h.id, h.t === "error" ? String(h.code) : h.t);
  });
  peer.on("data", (d: Buffer) => reader.push(d));
  peer.write(Buffer.concat(encodeFrame({ t: "hello", id: 1, pid: process.pid })));
  // Each connect closed at once, before the agent could open it: 40 of them in one write.
  const frames: Buffer[] = [];
  for (let i = 1; i <= 40; i++) frames.push(...encodeFrame({ t: "connect", id: 100 + i, linkId: i, host: "127.0.0.1", port, app: "churn" }), ...encodeFrame({ t: "close", link: i }));
  peer.write(Buffer.concat(frames));
  await waitFor(() => [...answers.values()].filter((a) => a === "PERILINK_AGENT_LIMIT").length >= 36, "36 connects refused at once", 2000);
  assert.equal([...answers.keys()].filter((id) => id > 100 && id <= 104).length, 0, "the first 4 are still opening (their connects hang), unanswered");
  assert.equal(agent.table().links.length, 0, "no link in the shared table");
});
