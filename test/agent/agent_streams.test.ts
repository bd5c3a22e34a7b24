import assert from "node:assert/strict";
import crypto from "node:crypto";
import { chmodSync, mkdirSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { after, test } from "node:test";
import { HostAgent } from "../../src/agent/host_agent.ts";
import { HostClient } from "../../src/agent/host_client.ts";
import { CONNECTION_WINDOW, encodeFrame, FrameReader, STREAM_WINDOW } from "../../src/agent/agent_wire.ts";
import { silentLogger } from "../../src/logger.ts";
import type { RequestContext, SessionApp } from "../../src/server/app.ts";
import { portOf, sleep, tempDir, testServer, waitFor } from "../helpers/fixtures.ts";

/** What the app did, for the tests to read. */
const seen = { generated: 0, generatorsClosed: 0 };

/** "gen:N" streams N bytes of a pattern; "fail:N" N bytes then an error; app "hash" answers the body's length and SHA-256; else an echo. */
const app: SessionApp = {
  streams: true,
  request(payload: Uint8Array, ctx: RequestContext) {
    const text = ctx.body.streamed ? "" : Buffer.from(payload).toString();
    if (text.startsWith("gen:")) return generate(Number(text.slice(4)));
    if (text.startsWith("fail:")) return failing(Number(text.slice(5)));
    if (ctx.app === "hash") return hash(ctx.body);
    if (ctx.app === "hold") return sleep(3000).then(() => "held"); // reads nothing of its body
    return echo(ctx.body);
  },
};

async function hash(body: AsyncIterable<Uint8Array>): Promise<string> {
  const h = crypto.createHash("sha256");
  let n = 0;
  for await (const chunk of body) {
    h.update(chunk);
    n += chunk.length;
  }
  return `${n} ${h.digest("hex")}`;
}

async function* echo(body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  for await (const chunk of body) yield chunk;
}

async function* failing(n: number): AsyncGenerator<Uint8Array> {
  yield Buffer.alloc(n, 1);
  throw Object.assign(new Error("the scanner jammed"), { expose: true });
}

async function* generate(total: number): AsyncGenerator<Uint8Array> {
  try {
    for (let left = total; left > 0; left -= 16384) {
      const n = Math.min(16384, left);
      seen.generated += n;
      yield pattern(n);
    }
  } finally {
    seen.generatorsClosed++;
  }
}

const PATTERN = Buffer.from(Array.from({ length: 16384 }, (_, i) => i & 0xff));
const pattern = (n: number): Buffer => PATTERN.subarray(0, n);

/** `count` chunks of 64 KiB of random bytes, and their SHA-256. */
function randomSource(count: number): { source: AsyncIterable<Uint8Array>; digest: string; size: number } {
  const chunks = Array.from({ length: count }, () => crypto.randomBytes(64 * 1024));
  const h = crypto.createHash("sha256");
  for (const c of chunks) h.update(c);
  return {
    source: (async function* () {
      for (const c of chunks) yield c;
    })(),
    digest: h.digest("hex"),
    size: count * 64 * 1024,
  };
}

async function setup(): Promise<{ port: number; agent: HostAgent; client: HostClient }> {
  const server = await testServer({ appObject: app });
  const agent = await HostAgent.start({ socketPath: path.join(tempDir(), "s", "agent.sock"), client: { stateDir: false }, log: silentLogger });
  after(() => agent.close());
  const client = new HostClient({ agent: true, agentSocket: agent.socketPath });
  after(() => client.close());
  return { port: portOf(server), agent, client };
}

test("through the agent a 24 MiB request body streams up and an echo streams back: the bytes arrive whole, past the 16-frame limit of whole bodies", async () => {
  const { port, client } = await setup();
  const link = await client.connect({ host: "127.0.0.1", port, app: "echo" });
  const up = randomSource(384);
  const body = await link.stream(up.source);
  assert.equal(body.streamed, true);
  const h = crypto.createHash("sha256");
  let n = 0;
  for await (const chunk of body) {
    h.update(chunk);
    n += chunk.length;
  }
  assert.equal(n, up.size);
  assert.equal(h.digest("hex"), up.digest);
  // request() with a stream source streams it too (it was gathered, up to 16 frames, before).
  const again = randomSource(300);
  const hashLink = await client.connect({ host: "127.0.0.1", port, app: "hash" });
  assert.equal((await hashLink.request(again.source)).toString(), `${again.size} ${again.digest}`);
  // Small bodies still go whole, and a whole answer reads through the same interface.
  assert.equal(await (await hashLink.stream("abc")).text(), `3 ${crypto.createHash("sha256").update("abc").digest("hex")}`);
});

test("a process that does not read holds the server's stream: the agent and the server produce only their windows' worth", async (t) => {
  const { port, client } = await setup();
  const link = await client.connect({ host: "127.0.0.1", port, app: "gen" });
  const before = seen.generated;
  const body = await link.stream(`gen:${64 * 1024 * 1024}`);
  const it = body[Symbol.asyncIterator]();
  const first = await it.next();
  assert.equal(first.done, false);
  await sleep(500);
  const produced = seen.generated - before;
  // The server's stream window (its maxFrame, 1 MiB on node20), the agent's own stream window, socket buffers.
  t.diagnostic(`produced for a reader that read one chunk: ${produced} bytes`);
  assert.ok(produced < 6 * 1024 * 1024, `the server produced ${produced} bytes for a reader that read one chunk`);
  let total = first.value!.length;
  for (let r = await it.next(); !r.done; r = await it.next()) total += r.value.length;
  assert.equal(total, 64 * 1024 * 1024, "then the whole body, once it reads");
});

test("through the agent: a reader that stops early cancels the server's stream; an error mid-body comes after the bytes that came, typed; an abort stops a body under way", async () => {
  const { port, client, agent } = await setup();
  const link = await client.connect({ host: "127.0.0.1", port, app: "gen" });
  const closed = seen.generatorsClosed;
  for await (const _ of await link.stream(`gen:${256 * 1024 * 1024}`)) break;
  await waitFor(() => seen.generatorsClosed === closed + 1, "the server's generator to be closed", 5000);

  const failed = await link.stream("fail:5000");
  let got = 0;
  await assert.rejects(
    (async () => {
      for await (const chunk of failed) got += chunk.length;
    })(),
    (err: { code?: string; message: string }) => /PERILINK_REMOTE/.test(err.code ?? "") && /scanner jammed/.test(err.message),
  );
  assert.equal(got, 5000, "the bytes before the error");

  const ac = new AbortController();
  const aborted = await link.stream(`gen:${256 * 1024 * 1024}`, { signal: ac.signal });
  const it = aborted[Symbol.asyncIterator]();
  await it.next();
  ac.abort(new Error("the user pressed stop"));
  await assert.rejects(async () => {
    for (let r = await it.next(); !r.done; r = await it.next());
  }, /pressed stop/);
  await waitFor(() => seen.generatorsClosed === closed + 2, "the aborted stream's generator to be closed at the server", 5000);
  await waitFor(() => agent.table().links.every((l) => l.state !== "closed") && agent.processes === 1, "the agent to settle", 2000);
  assert.equal((await link.request("still fine")).toString(), "still fine", "the link carries on");
});

interface RawProcess {
  socket: net.Socket;
  write(h: Record<string, unknown> & { t: string }, p?: Uint8Array): void;
  /** The kinds of the frames the agent sent it, in order. */
  heard: string[];
  closed: Promise<void>;
}

/** A process that speaks the agent's wire by hand (a hello offering credit first), reading what the agent sends. */
async function rawProcess(socketPath: string): Promise<RawProcess> {
  const socket = net.connect(socketPath);
  socket.on("error", () => {});
  await new Promise((r) => socket.once("connect", r));
  const heard: string[] = [];
  const reader = new FrameReader(1 << 24, (h) => heard.push(String(h.t)));
  // Read, so that the close after what the agent sent before a cut-off is seen.
  socket.on("data", (c: Buffer) => {
    try {
      reader.push(c);
    } catch {
      // a frame cut short by the cut-off
    }
  });
  const closed = new Promise<void>((r) => socket.once("close", () => r()));
  const write = (h: Record<string, unknown> & { t: string }, p?: Uint8Array): void => {
    for (const b of encodeFrame(h, p)) socket.write(b);
  };
  write({ t: "hello", id: 1, pid: process.pid, window: [STREAM_WINDOW, CONNECTION_WINDOW] });
  return { socket, write, heard, closed };
}

test("a process that sends a body past the agent's credit, data for a body it never began, or a stream id twice, is cut off (a refused stream's body is let go of); the agent holds no more than its window and serves the others", async () => {
  const { port, client, agent } = await setup();
  const good = await client.connect({ host: "127.0.0.1", port, app: "echo" });
  const chunk = Buffer.alloc(16 * 1024, 7);
  const cutOff = (p: RawProcess, what: string): Promise<void> => Promise.race([p.closed, sleep(5000).then(() => assert.fail(`the agent did not cut off a process ${what}`))]);

  const attacker = await rawProcess(agent.socketPath);
  attacker.write({ t: "connect", id: 2, linkId: 3, host: "127.0.0.1", port, app: "hold" });
  await sleep(300);
  attacker.write({ t: "stream", id: 4, link: 3, body: true });
  // The server reads none of it: the agent's link sends the server its window (maxFrame), then the
  // agent's own STREAM_WINDOW is all the process may send. 8 MiB without waiting for a window is past both.
  for (let i = 0; i < (8 * 1024 * 1024) / chunk.length; i++) attacker.write({ t: "data", id: 4 }, chunk);
  await cutOff(attacker, "sending past its credit");

  // Data for a body that never began ends the connection too.
  const second = await rawProcess(agent.socketPath);
  second.write({ t: "data", id: 99 }, chunk);
  await cutOff(second, "sending data for no stream");

  // A stream id used twice (the first exchange could no longer be cancelled) ends the connection too.
  const third = await rawProcess(agent.socketPath);
  third.write({ t: "connect", id: 2, linkId: 3, host: "127.0.0.1", port, app: "gen" });
  await sleep(300);
  for (let i = 0; i < 2; i++) third.write({ t: "stream", id: 4, link: 3 }, Buffer.from(`gen:${64 * 1024 * 1024}`));
  await cutOff(third, "that used a stream id twice");

  // A stream refused before it began (its link is not open) is an error answer, not a cut-off: the body sent meanwhile is let go of.
  const fourth = await rawProcess(agent.socketPath);
  fourth.write({ t: "stream", id: 2, link: 99, body: true });
  fourth.write({ t: "data", id: 2, end: true }, chunk);
  fourth.write({ t: "sessions", id: 3 });
  await waitFor(() => fourth.heard.includes("sessions"), "the agent to answer after the refused stream", 5000);
  assert.deepEqual(fourth.heard, ["hello", "error", "sessions"]);
  assert.equal(fourth.socket.destroyed, false);
  fourth.socket.destroy();
  assert.equal((await good.request("others carry on")).toString(), "others carry on");
  await waitFor(() => agent.processes === 1, "the cut-off process to be gone from the agent", 2000);
});

test("a process that leaves streamed bodies unread stalls only its own streams: another process's stream to the same server goes on; past maxStreamsPerProcess it is refused", async (t) => {
  // Regression: the agent's shared session gave its credit back only as bodies were read, so five
  // unread 64 MiB bodies of one process held the whole session window and every other process's
  // stream (and an echoed request) to that server waited until its deadline.
  const { port, client: idle, agent } = await setup();
  const busy = new HostClient({ agent: true, agentSocket: agent.socketPath });
  after(() => busy.close());
  const hog = await idle.connect({ host: "127.0.0.1", port, app: "gen" });
  const held = [];
  for (let i = 0; i < 8; i++) {
    const body = await hog.stream(`gen:${64 * 1024 * 1024}`);
    const it = body[Symbol.asyncIterator]();
    await it.next(); // one chunk, then nothing more is read
    held.push(it);
  }
  await assert.rejects(hog.stream("gen:10"), { code: "PERILINK_AGENT_LIMIT" });
  const other = await busy.connect({ host: "127.0.0.1", port, app: "gen" });
  const t0 = performance.now();
  assert.equal((await (await other.stream(`gen:${4 * 1024 * 1024}`)).bytes()).length, 4 * 1024 * 1024);
  assert.equal((await other.request("ping")).toString(), "ping");
  t.diagnostic(`another process's 4 MiB stream beside 8 unread ones: ${Math.round(performance.now() - t0)} ms`);
  for (const it of held) await it.return?.();
});

/** A stand-in agent on a Unix socket of this user's: `answer(h, reply)` for each frame after the hello (whose `window` it chooses). */
async function fakeAgent(name: string, window: unknown, answer: (h: Record<string, unknown> & { t: string }, p: Buffer, reply: (a: Record<string, unknown> & { t: string }, payload?: Uint8Array) => void) => void): Promise<string> {
  const dir = path.join(tempDir(), name);
  mkdirSync(dir, { mode: 0o700 });
  const socketPath = path.join(dir, "agent.sock");
  const fake = net.createServer((s) => {
    s.on("error", () => {});
    const reader = new FrameReader(1 << 26, (h, p) => {
      const reply = (a: Record<string, unknown> & { t: string }, payload?: Uint8Array): void => {
        for (const b of encodeFrame({ id: h.id, ...a }, payload)) s.write(b);
      };
      if (h.t === "hello") reply({ t: "hello", pid: process.pid, wire: 2, ...(window ? { window } : {}) });
      else if (h.t === "connect") reply({ t: "connected", managementNumber: 1, serverId: name, state: "ready", sessionNumber: 1, place: null });
      else answer(h, p, reply);
    });
    s.on("data", (c: Buffer) => reader.push(c));
  });
  await new Promise<void>((r) => fake.listen(socketPath, r));
  chmodSync(socketPath, 0o600);
  after(() => fake.close());
  return socketPath;
}

test("an abort that crosses the agent's answer: the caller hears the abort, never an empty body", async () => {
  // Regression: cancelled as the response began, the exchange was gone when the answer came, and
  // link.stream() resolved with an empty body (request() with "").
  let streamId: unknown = null;
  const socketPath = await fakeAgent("race", [STREAM_WINDOW, CONNECTION_WINDOW], (h, _p, reply) => {
    if (h.t === "stream") streamId = h.id;
    if (h.t === "cancel" && h.id === streamId) reply({ t: "streaming", id: streamId, whole: true }); // the answer was already on its way
  });
  const client = new HostClient({ agent: true, agentSocket: socketPath });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port: 1, app: "race" });
  const ac = new AbortController();
  const pending = link.stream(Buffer.from("x"), { signal: ac.signal });
  await waitFor(() => streamId !== null, "the stream to reach the agent", 2000);
  ac.abort(new Error("the user pressed stop"));
  await assert.rejects(pending, /pressed stop/);
});

test("an agent of an older version, whose hello offers no credit: link.stream() fails PERILINK_AGENT saying to upgrade it, and request() gathers a stream source as before", async () => {
  const requests: Buffer[] = [];
  const socketPath = await fakeAgent("old", null, (h, p, reply) => {
    if (h.t !== "request") return;
    requests.push(Buffer.from(p));
    reply({ t: "response" }, Buffer.from(String(p.length)));
  });
  const client = new HostClient({ agent: true, agentSocket: socketPath });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port: 1, app: "old" });
  await assert.rejects(link.stream("x"), (err: { code?: string; message: string }) => err.code === "PERILINK_AGENT" && /older version.*upgrade it/.test(err.message));
  const src = randomSource(4);
  assert.equal((await link.request(src.source)).toString(), String(src.size));
  assert.equal(requests.length, 1, "one whole request");
  assert.equal(crypto.createHash("sha256").update(requests[0]!).digest("hex"), src.digest);
});
