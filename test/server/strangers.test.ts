// Review findings (access "keys"): what a LAN stranger, with no trusted key, can still do. Failing today.
import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { ClientSession } from "../../src/client/client_session.ts";
import { loadOrCreateClientKey } from "../../src/client/client_key.ts";
import type { Logger } from "../../src/logger.ts";
import { FrameType } from "../../src/protocol/constants.ts";
import { PAIR_APP } from "../../src/protocol/pairing_code.ts";
import { DENIALS_BURST_PER_PEER } from "../../src/server/admission.ts";
import { addTrust } from "../../src/server/trusted_keys.ts";
import { portOf, sleep, tempDir, testServer } from "../helpers/fixtures.ts";
import { frame, sealedPeer } from "../helpers/raw_peer.ts";

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
