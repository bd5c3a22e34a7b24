// Review findings (access "keys"): what a LAN stranger, with no trusted key, can still do. Failing today.
import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { ClientSession } from "../../src/client/client_session.ts";
import { loadOrCreateClientKey, processClientKey } from "../../src/client/client_key.ts";
import type { Logger } from "../../src/logger.ts";
import { FrameType } from "../../src/protocol/constants.ts";
import { PAIR_APP } from "../../src/protocol/pairing_code.ts";
import { DENIALS_BURST_PER_PEER } from "../../src/server/admission.ts";
import { addTrust } from "../../src/server/trusted_keys.ts";
import { portOf, sleep, tempDir, testServer } from "../helpers/fixtures.ts";
import { channelOpen, frame, sealedPeer } from "../helpers/raw_peer.ts";

const echo = { request: (p: Buffer) => p };

function countingLogger(): { log: Logger; count: (e: string) => number } {
  const n = new Map<string, number>();
  const f = (e: string): void => void n.set(e, (n.get(e) ?? 0) + 1);
  return { log: { debug: f, info: f, warn: f, error: f }, count: (e) => n.get(e) ?? 0 };
}

test("a stranger's refused pairing attempts end its session past the allowance, and cost at most one log line a second", async () => {
  const { log, count } = countingLogger();
  const server = await testServer({ access: "keys", appObject: echo, logger: log });
  const port = portOf(server);
  const s = await ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 3000 });
  const ch = s.openChannelNow(PAIR_APP, "127.0.0.1", port);
  let answered = 0;
  for (let i = 0; i < 500 && !s.closed; i++) await ch.request(JSON.stringify({ proof: "AAAA" })).then(() => answered++, () => {});
  s.destroy();
  assert.ok(answered <= DENIALS_BURST_PER_PEER + 1, `${answered} refused pairing attempts answered on one session`);
  assert.ok(count("pairing_refused") <= 3, `${count("pairing_refused")} pairing_refused log lines`);
});

test("a stranger that handshakes without opening a channel is shut out after the allowance, as one that is refused", async () => {
  const server = await testServer({ access: "keys", appObject: echo });
  let accepted = 0;
  for (let i = 0; i < 40; i++) {
    const p = await sealedPeer(portOf(server));
    if (p.refused === 0) accepted++;
    p.sock.destroy();
  }
  assert.ok(accepted <= DENIALS_BURST_PER_PEER + 2, `${accepted} of 40 stranger handshakes done back to back`);
});

test("strangers that only ping give their slots to a trusted newcomer when the server is full", async () => {
  const stateDir = tempDir();
  const hostDir = tempDir();
  const key = await loadOrCreateClientKey(hostDir);
  await addTrust(stateDir, { fingerprint: key.fingerprint, apps: null, comment: "" });
  const server = await testServer({ access: "keys", appObject: echo, stateDir, limits: { maxSessions: 8, maxSessionsPerPeer: 4 } });
  const port = portOf(server);
  const peers: Awaited<ReturnType<typeof sealedPeer>>[] = [];
  for (const a of ["127.0.0.2", "127.0.0.3"]) for (let i = 0; i < 4; i++) peers.push(await sealedPeer(port, { localAddress: a }));
  const t = setInterval(() => { for (const p of peers) p.write(frame(FrameType.Ping, 0, 0, Buffer.alloc(8))); }, 200);
  try {
    await sleep(1500); // older than the eviction age, never quiet for it
    const s = await ClientSession.connect({ host: "127.0.0.1", port, clientKey: key, timeoutMs: 3000 });
    s.destroy();
  } finally {
    clearInterval(t);
    for (const p of peers) p.sock.destroy();
  }
});

test("access keys (the default) does not serve a raw-mode app to a stranger: refused at start or at connect", async () => {
  const app = { createServer: () => net.createServer((s) => s.end("from the app\n")) };
  let server;
  try {
    server = await testServer({ access: "keys", appObject: app });
  } catch {
    return; // refused at start: fine
  }
  const got = await new Promise<string>((r) => {
    const c = net.connect(portOf(server), "127.0.0.1");
    let b = "";
    c.on("data", (d) => (b += d));
    c.on("error", () => r(b));
    c.on("close", () => r(b));
    setTimeout(() => (c.destroy(), r(b)), 3000);
  });
  assert.doesNotMatch(got, /from the app/);
});

test("a stranger's frame past 4096 bytes ends its session with AccessDenied before the server opens it: no megabytes to decrypt for a refusal", async () => {
  const server = await testServer({ access: "keys", appObject: echo });
  const p = await sealedPeer(portOf(server));
  assert.equal(p.refused, 0);
  p.write(frame(FrameType.ChannelOpen, 1, 0, channelOpen("a")));
  const big = Buffer.alloc(64 * 1024, 1);
  // 4 MiB of requests on the refused channel, as a flood that never reads would send them.
  for (let i = 1; i <= 64 && !p.sock.destroyed; i++) p.write(frame(FrameType.Request, 1, i, big));
  await Promise.race([p.closed, sleep(3000)]);
  assert.ok(p.sock.destroyed || p.sock.readableEnded, "the server ended the session");
  assert.match(p.data().toString("latin1"), /a frame of 65536 bytes \(at most 4096\) from a key this server does not trust: pair it first/);
  await sleep(100);
  const bytesIn = server.status().counters.bytesIn ?? 0;
  assert.ok(bytesIn < 1024 * 1024, `the server read ${bytesIn} bytes of the 4 MiB: it stopped at the first frame past the limit`);
});

test("through the library, a stranger's large request fails PERILINK_ACCESS_DENIED (the channel's refusal), not a frame error", async () => {
  const server = await testServer({ access: "keys", appObject: echo });
  const s = await ClientSession.connect({ host: "127.0.0.1", port: portOf(server), timeoutMs: 3000 });
  const ch = s.openChannelNow("a");
  const err = await ch.request(Buffer.alloc(200_000, 7)).then(() => null, (e: Error & { code?: string }) => e);
  assert.equal(err?.code, "PERILINK_ACCESS_DENIED", String(err));
  s.destroy();
});

test("a stranger may send 64 KiB in all: a body streamed to pairing in small DATA frames, or DATA on a refused stream, ends its session as refused access", async () => {
  for (const [what, open] of [
    ["a streamed pairing body", true],
    ["DATA on a stream whose channel was never opened", false],
  ] as const) {
    const server = await testServer({ access: "keys", appObject: echo });
    const p = await sealedPeer(portOf(server));
    if (open) p.write(frame(FrameType.ChannelOpen, 1, 0, channelOpen(PAIR_APP)));
    const req = frame(FrameType.Request, 1, 1, Buffer.alloc(0));
    req[5] = 0x01; // a streamed body follows
    p.write(req);
    const chunk = Buffer.alloc(4000, 0x41);
    for (let i = 0; i < 250 && !p.sock.destroyed; i++) p.write(frame(FrameType.Data, 1, 1, chunk)); // 1 MB, 4000 bytes at a time
    await Promise.race([p.closed, sleep(3000)]);
    assert.ok(p.sock.destroyed || p.sock.readableEnded, `${what}: the server ended the session`);
    assert.match(p.data().toString("latin1"), /more than 65536 bytes from a key this server does not trust: pair it first/, what);
    await sleep(100);
    const c = server.status().counters;
    assert.ok((c.bytesIn ?? 0) < 512 * 1024, `${what}: the server read ${c.bytesIn} bytes of 1 MB`);
    assert.ok((c.accessDenied ?? 0) >= 1, `${what}: counted as refused access`);
  }
});

test("a stranger's key trusted during its session lifts the stranger bounds: the next large request is answered", async () => {
  const stateDir = tempDir();
  const server = await testServer({ access: "keys", stateDir, appObject: echo });
  const p = await sealedPeer(portOf(server));
  await addTrust(stateDir, { fingerprint: processClientKey().fingerprint, apps: null, comment: "" });
  p.write(frame(FrameType.ChannelOpen, 1, 0, channelOpen("a")));
  p.write(frame(FrameType.Request, 1, 1, Buffer.alloc(5000, 1)));
  const t0 = Date.now();
  while (p.data().length < 5000 && Date.now() - t0 < 3000 && !p.sock.destroyed) await sleep(20);
  assert.ok(p.data().length >= 5000, `the 5000-byte echo came back (${p.data().length} bytes; closed: ${p.sock.destroyed})`);
  assert.ok(!p.sock.destroyed, "the session goes on");
  p.sock.destroy();
});
