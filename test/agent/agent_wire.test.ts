/**
 * The host agent's wire (src/agent/agent_wire.ts): the compact headers that
 * requests and messages take once both sides said `wire: 3`, JSON for
 * everything else, and a peer that never said it is answered in JSON.
 */
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { after, test } from "node:test";
import { encodeFrame, FrameReader, type Header } from "../../src/agent/agent_wire.ts";
import { HostAgent } from "../../src/agent/host_agent.ts";
import { HostClient } from "../../src/agent/host_client.ts";
import { ProtocolError } from "../../src/errors.ts";
import { silentLogger } from "../../src/logger.ts";
import { portOf, sleep, tempDir, testServer, waitFor } from "../helpers/fixtures.ts";

function decode(chunks: Buffer[]): { header: Header; payload: Buffer }[] {
  const out: { header: Header; payload: Buffer }[] = [];
  const r = new FrameReader(1 << 20, (header, payload) => out.push({ header, payload: Buffer.from(payload) }));
  r.push(Buffer.concat(chunks));
  return out;
}

const compactable: Header[] = [
  { t: "request", id: 1, link: 2 },
  { t: "request", id: 2 ** 47 + 3, link: 9, timeoutMs: 1500, maxBytes: 65536, idempotent: true, waitForReady: true, cancellable: true },
  { t: "request", id: 7, link: 1, maxBytes: 0 },
  { t: "response", id: 42 },
  { t: "message", link: 5 },
  { t: "send", id: 8, link: 3 },
  { t: "sent", id: 8 },
];

test("requests, answers and messages round-trip with compact headers, and decode to the same header as JSON", () => {
  for (const h of compactable) {
    const payload = Buffer.from(`body of ${h.t}`);
    const compact = encodeFrame(h, payload, true);
    const json = encodeFrame(h, payload, false);
    assert.notEqual(Buffer.concat(compact)[8], 0x7b, `${h.t} went compact`);
    assert.equal(Buffer.concat(json)[8], 0x7b);
    assert.ok(Buffer.concat(compact).length < Buffer.concat(json).length);
    for (const chunks of [compact, json]) assert.deepEqual(decode(chunks), [{ header: h, payload }]);
  }
});

test("a header the compact form cannot carry exactly goes as JSON: another kind, a field it has no room for, a number it cannot hold", () => {
  const fallbacks: Header[] = [
    { t: "connect", id: 1, linkId: 1, host: "h", port: 1, app: "a" },
    { t: "request", id: 1, link: 2, timeoutMs: 1.5 },
    { t: "request", id: 1, link: 2, timeoutMs: Infinity },
    { t: "request", id: 2 ** 48, link: 2 },
    { t: "request", id: 1, link: 2, idempotent: false },
    { t: "response", id: 1, extra: "kept" },
    { t: "error", id: 1, code: "PERILINK_X", message: "m" },
    { t: "constructor", id: 1 },
    { t: "__proto__", id: 1 },
    { t: "toString", id: 1 },
  ];
  for (const h of fallbacks) {
    const chunks = encodeFrame(h, undefined, true);
    assert.equal(Buffer.concat(chunks)[8], 0x7b, JSON.stringify(h));
    assert.deepEqual(decode(chunks)[0]!.header, JSON.parse(JSON.stringify(h)));
  }
});

test("a large payload goes as its own buffer (not copied), a small one in the header's", () => {
  const big = Buffer.alloc(100_000, 1);
  const chunks = encodeFrame({ t: "response", id: 1 }, big, true);
  assert.equal(chunks.length, 2);
  assert.equal(chunks[1], big);
  assert.equal(encodeFrame({ t: "response", id: 1 }, Buffer.alloc(100), true).length, 1);
  assert.deepEqual(decode(chunks)[0]!.payload, big);
});

test("a malformed compact header is a protocol error: an unknown kind, a short or overlong header, options past its end", () => {
  const frame = (header: number[], payload = 0): Buffer => {
    const b = Buffer.alloc(8 + header.length);
    b.writeUInt32BE(header.length, 0);
    b.writeUInt32BE(payload, 4);
    Buffer.from(header).copy(b, 8);
    return b;
  };
  const six = [0, 0, 0, 0, 0, 1];
  // [kind, flags, 48-bit numbers…]: an unknown kind, no flags byte, a number cut short, a byte too many,
  // a flag whose number is missing, a flag the kind does not have, a send without its link.
  for (const bad of [[9, 0, ...six], [2], [2, 0, 0, 0], [2, 0, ...six, 0], [1, 1, ...six, ...six], [1, 2, ...six, ...six, 0, 0], [2, 1, ...six], [1, 64, ...six, ...six], [4, 0, ...six]]) {
    const r = new FrameReader(1024, () => assert.fail("no frame is delivered"));
    assert.throws(() => r.push(frame(bad)), ProtocolError, JSON.stringify(bad));
  }
});

test("the agent answers in compact headers only a process that offered wire 3, in JSON one that offered none or another version", async () => {
  const server = await testServer();
  const socketPath = path.join(tempDir(), "a", "agent.sock");
  const agent = await HostAgent.start({ socketPath, client: { stateDir: tempDir() }, log: silentLogger });
  after(() => agent.close());
  for (const wire of [undefined, 2, 3]) {
    const s = net.connect(socketPath);
    after(() => s.destroy());
    const raw: Buffer[] = [];
    const got: Header[] = [];
    const reader = new FrameReader(1 << 20, (h) => got.push(h));
    s.on("data", (d: Buffer) => {
      raw.push(d);
      reader.push(d);
    });
    await new Promise((r) => s.once("connect", r));
    const write = (h: Header, p?: Buffer): void => void encodeFrame(h, p, false).map((b) => s.write(b));
    write({ t: "hello", id: 1, pid: process.pid, ...(wire ? { wire } : {}) });
    write({ t: "connect", id: 2, linkId: 1, host: "127.0.0.1", port: portOf(server), app: "w" });
    await waitFor(() => got.some((h) => h.id === 2), "the link to open", 10_000);
    assert.equal(got.find((h) => h.id === 2)!.t, "connected");
    write({ t: "request", id: 3, link: 1 }, Buffer.from("ping"));
    await waitFor(() => got.some((h) => h.id === 3), "the answer", 10_000);
    assert.equal(got[0]!.wire, 3, "the agent offers wire 3");
    assert.deepEqual(got.find((h) => h.id === 3), { t: "response", id: 3 });
    const bytes = Buffer.concat(raw);
    // The last frame is the response: its header's first byte says which form it took.
    const compact = wire === 3;
    const at = bytes.length - 4 - (compact ? 8 : Buffer.byteLength(JSON.stringify({ t: "response", id: 3 })));
    assert.equal(bytes[at], compact ? 2 : 0x7b, compact ? "compact for a process that offered wire 3" : `JSON for one that offered ${wire}`);
    s.destroy();
  }
});

test("an agent that takes connections and never says hello: close() gives up the wait at once, and the connect fails CLIENT_CLOSED rather than going in-process", async () => {
  const dir = path.join(tempDir(), "run");
  mkdirSync(dir, { mode: 0o700 });
  const socketPath = path.join(dir, "agent.sock");
  const held = new Set<net.Socket>();
  const mute = net.createServer((s) => void held.add(s)); // reads nothing, answers nothing
  await new Promise<void>((r) => mute.listen(socketPath, r));
  after(() => {
    for (const s of held) s.destroy();
    mute.close();
  });
  const client = new HostClient({ agent: "auto", agentSocket: socketPath, stateDir: false });
  const connecting = client.connect({ host: "127.0.0.1", port: 1, app: "a" }).then(
    () => "connected",
    (e: { code?: string }) => e.code,
  );
  await waitFor(() => held.size === 1, "the client to connect to the mute agent", 5000);
  await sleep(200);
  const t0 = Date.now();
  await client.close();
  assert.equal(await connecting, "PERILINK_CLIENT_CLOSED");
  assert.ok(Date.now() - t0 < 1000, `gave up ${Date.now() - t0} ms after close()`);
  assert.equal(client.usesAgent, null, "nor in-process");
});

test("a request followed at once by close() is not sent, through the agent as in this process's own table", async () => {
  let ran = 0;
  const server = await testServer({ appObject: { request: (p: Buffer) => (ran++, p) } });
  const socketPath = path.join(tempDir(), "c", "agent.sock");
  const agent = await HostAgent.start({ socketPath, client: { stateDir: tempDir() }, log: silentLogger });
  after(() => agent.close());
  for (const options of [{ agent: true as const, agentSocket: socketPath }, { agent: false as const, stateDir: false as const }]) {
    const client = new HostClient(options);
    after(() => client.close());
    const keep = await client.connect({ host: "127.0.0.1", port: portOf(server), app: "keep" });
    await keep.request("warm");
    const link = await client.connect({ host: "127.0.0.1", port: portOf(server), app: "gone" });
    const before = ran;
    const outcome = link.request("abandoned").then(
      () => "answered",
      (e: { code?: string }) => e.code ?? "error",
    );
    link.close();
    assert.notEqual(await outcome, "answered", `agent: ${options.agent}`);
    await keep.request("after"); // the session is in order behind it
    assert.equal(ran, before + 1, `agent ${options.agent}: only "after" ran, not the abandoned request`);
  }
});
