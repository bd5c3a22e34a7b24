import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { test } from "node:test";
import { ClientSession } from "../../src/client/client_session.ts";
import { ServerBusyError } from "../../src/errors.ts";
import { CLIENT_HELLO_SIZE, FRAME_HEADER_SIZE, FrameType, PROBE_REQUEST_SIZE, SERVER_HELLO_SIZE, WireError } from "../../src/protocol/constants.ts";
import { encodeClientHello } from "../../src/protocol/handshake.ts";
import { CLIENT_HELLO_V2_SIZE } from "../../src/protocol/sealed_handshake.ts";
import { encodeProbeRequest } from "../../src/protocol/probe.ts";
import type { SessionApp } from "../../src/server/app.ts";
import { connect, portOf, sleep, testServer, waitFor } from "../helpers/fixtures.ts";
import { channelOpen, frame, hello, rawPeer, sealedPeer } from "../helpers/raw_peer.ts";

/** Proves the server still serves: a fresh request on an existing session answers. */
async function stillServes(ch: { request(p: string): Promise<Buffer> }): Promise<void> {
  assert.equal((await ch.request("alive?")).toString(), "alive?");
}

test("closes a session that sends random bytes, and the other sessions keep getting answers", async () => {
  const server = await testServer();
  const good = await (await connect(server)).openChannel("good");
  for (let i = 0; i < 20; i++) {
    const peer = await rawPeer(portOf(server));
    peer.sock.write(randomBytes(1 + (i * 37) % 500));
    if (i % 2) peer.sock.write(Buffer.concat([hello(), randomBytes(64)])); // garbage after a valid hello too
    peer.sock.end();
    await peer.closed;
    await stillServes(good);
  }
  await waitFor(() => server.status().sessions === 1, "hostile sessions to be gone");
});

test("answers an oversized length prefix with an ERROR frame FrameTooLarge and closes the session", async () => {
  const server = await testServer({ limits: { maxFrameBytes: 4096 } });
  const good = await (await connect(server)).openChannel("good");
  const peer = await sealedPeer(portOf(server));
  peer.write(frame(FrameType.Request, 1, 1, Buffer.alloc(0), 0x7fffffff));
  await peer.closed;
  const errFrame = peer.data();
  assert.ok(errFrame.length >= FRAME_HEADER_SIZE + 2, "got an error frame");
  assert.equal(errFrame[4], FrameType.Error);
  assert.equal(errFrame.readUInt16BE(FRAME_HEADER_SIZE), WireError.FrameTooLarge);
  assert.ok(server.status().counters.protocolErrors! >= 1);
  await stillServes(good);
});

test("closes a half-open peer that never finishes its hello after handshakeTimeoutMs", async () => {
  const server = await testServer({ limits: { handshakeTimeoutMs: 200 } });
  const good = await (await connect(server)).openChannel("good");
  const silent = await rawPeer(portOf(server));
  const partial = await rawPeer(portOf(server));
  partial.sock.write(hello().subarray(0, CLIENT_HELLO_V2_SIZE - 5));
  const t0 = Date.now();
  await Promise.all([silent.closed, partial.closed]);
  assert.ok(Date.now() - t0 < 2000, "closed within the handshake timeout, not the idle timeout");
  await stillServes(good);
});

test("stops reading from a peer that stops reading, buffers a bounded amount, and serves others", async () => {
  const maxSessionOutputBytes = 256 * 1024;
  const server = await testServer({ limits: { maxInflightPerSession: 8, idleTimeoutMs: 1000, maxSessionOutputBytes } });
  const good = await (await connect(server)).openChannel("good");
  const peer = await sealedPeer(portOf(server), { read: false }); // reads the server hello, then never a byte
  peer.write(frame(FrameType.ChannelOpen, 1, 0, channelOpen()));
  // 2,000 echo requests of 60 KiB: 117 MiB of answers if the server buffered them all.
  const body = Buffer.alloc(60 * 1024, 7);
  let written = 0;
  for (let s = 1; s <= 2000 && !peer.sock.destroyed; s++) {
    if (!peer.write(frame(FrameType.Request, 1, s, body))) await Promise.race([new Promise((r) => peer.sock.once("drain", r)), sleep(200)]);
    written = s;
    if (peer.sock.writableLength > 8 * 1024 * 1024) break; // the server stopped reading: our side backs up
  }
  assert.ok(written < 2000, `the server stopped reading (we got ${written} requests out)`);
  await stillServes(good);
  assert.ok(server.status().inflight <= 8, "no more than maxInflightPerSession requests run for the stalled peer");
  // What the server holds for the stalled peer: its output budget, plus the answer that crossed
  // it and one received chunk held while paused.
  const held = server.status().bufferedBytes;
  assert.ok(held <= maxSessionOutputBytes + body.length + 64 * 1024 + 1024, `the server holds ${held} bytes for the stalled peer`);
  await peer.closed; // the stalled session is closed at the idle timeout
  await stillServes(good);
});

test("never answers a UDP probe with more bytes than it asked with, and ignores short probes", async () => {
  const server = await testServer();
  const port = portOf(server);
  const sock = dgram.createSocket("udp4");
  const replies: Buffer[] = [];
  sock.on("message", (m) => replies.push(m));
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", () => r()));
  const full = encodeProbeRequest(randomBytes(16));
  for (const size of [1, 8, 24, 64, PROBE_REQUEST_SIZE - 1]) sock.send(full.subarray(0, size), port, "127.0.0.1");
  sock.send(randomBytes(PROBE_REQUEST_SIZE), port, "127.0.0.1");
  await sleep(300);
  assert.equal(replies.length, 0, "short or malformed probes get no answer");
  sock.send(full, port, "127.0.0.1");
  await waitFor(() => replies.length === 1, "the answer to a full probe");
  assert.ok(replies[0]!.length <= full.length, `reply ${replies[0]!.length} B ≤ request ${full.length} B`);
  sock.close();
});

test("rate-limits probes per source address", async () => {
  const server = await testServer({ probe: { ratePerSecond: 5, burst: 10 } });
  const port = portOf(server);
  const sock = dgram.createSocket("udp4");
  let replies = 0;
  sock.on("message", () => replies++);
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", () => r()));
  for (let i = 0; i < 200; i++) sock.send(encodeProbeRequest(randomBytes(16)), port, "127.0.0.1");
  await sleep(400);
  sock.close();
  assert.ok(replies >= 10 && replies <= 14, `burst of 10 plus refill, got ${replies}`);
  assert.ok(server.status().counters.probesDropped! >= 180);
});

test("refuses a flood of sessions beyond maxSessions with ServerBusyError and keeps serving the admitted ones", async () => {
  const server = await testServer({ limits: { maxSessions: 4 } });
  const port = portOf(server);
  const results = await Promise.allSettled(Array.from({ length: 30 }, () => ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 3000 })));
  const ok = results.filter((r) => r.status === "fulfilled").map((r) => (r as PromiseFulfilledResult<ClientSession>).value);
  const refused = results.filter((r) => r.status === "rejected");
  assert.equal(ok.length, 4);
  for (const r of refused) assert.ok((r as PromiseRejectedResult).reason instanceof ServerBusyError, String((r as PromiseRejectedResult).reason));
  for (const s of ok) await stillServes(await s.openChannel("admitted"));
  assert.equal(server.status().counters.sessionsRefused, 26);
  for (const s of ok) s.destroy();
});

test("refuses sessions beyond maxSessionsPerPeer from one address, while another address is admitted", async () => {
  const server = await testServer({ limits: { maxSessionsPerPeer: 2 }, listen: ["127.0.0.1:0"] });
  const port = portOf(server);
  const a = await ClientSession.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.5" });
  const b = await ClientSession.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.5" });
  await assert.rejects(ClientSession.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.5" }), ServerBusyError);
  const c = await ClientSession.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.6" });
  for (const s of [a, b, c]) s.destroy();
});

test("keeps serving when an application handler throws non-Error values or returns garbage", async () => {
  const app: SessionApp = {
    request(p) {
      const t = Buffer.from(p).toString();
      if (t === "throw-string") throw "just a string";
      if (t === "number") return 42 as unknown as string;
      if (t === "reject-undefined") return Promise.reject(undefined);
      return p;
    },
  };
  const server = await testServer({ appObject: app });
  const ch = await (await connect(server)).openChannel("x");
  // Not Errors marked `expose`: the client learns that the app failed, not what it threw.
  await assert.rejects(ch.request("throw-string"), (e: Error) => /"x" could not answer this request/.test(e.message) && !e.message.includes("just a string"));
  await assert.rejects(ch.request("number"), /neither bytes nor a string/);
  await assert.rejects(ch.request("reject-undefined"), /"x" could not answer this request/);
  await stillServes(ch);
});

test("answers requests already running when the client half-closes, then ends", async () => {
  const app: SessionApp = { request: async (p) => (await sleep(100), p) };
  const server = await testServer({ appObject: app });
  const peer = await sealedPeer(portOf(server));
  peer.write(frame(FrameType.ChannelOpen, 1, 0, channelOpen()));
  peer.write(frame(FrameType.Request, 1, 1, Buffer.from("one")));
  peer.write(frame(FrameType.Request, 1, 2, Buffer.from("two")));
  peer.sock.end();
  await peer.closed;
  const bytes = peer.data();
  const answers: string[] = [];
  for (let o = 0; o + FRAME_HEADER_SIZE <= bytes.length; ) {
    const len = bytes.readUInt32BE(o);
    if (bytes[o + 4] === FrameType.Response) answers.push(bytes.toString("utf8", o + FRAME_HEADER_SIZE, o + FRAME_HEADER_SIZE + len));
    o += FRAME_HEADER_SIZE + len;
  }
  assert.deepEqual(answers, ["one", "two"]);
});

test("delivers nothing to the application after a protocol error on the session", async () => {
  let messages = 0;
  const app: SessionApp = { request: (p) => p, message: () => void messages++ };
  const server = await testServer({ appObject: app });
  const peer = await sealedPeer(portOf(server));
  peer.write(
    Buffer.concat([
      frame(FrameType.ChannelOpen, 1, 0, channelOpen()),
      frame(FrameType.Message, 1, 0, Buffer.from("before")),
      frame(99, 1, 0, Buffer.alloc(0)),
      frame(FrameType.Message, 1, 0, Buffer.from("after")),
    ]),
  );
  await peer.closed;
  assert.equal(messages, 1);
});

test("a protocol v1 client is refused at once, in the v1 layout, with VersionUnsupported", async () => {
  const server = await testServer();
  const peer = await rawPeer(portOf(server));
  peer.sock.write(encodeClientHello({ version: 1, maxFrame: 65536, nonce: randomBytes(16) }).subarray(0, CLIENT_HELLO_SIZE));
  await peer.closed;
  const answer = peer.data();
  assert.equal(answer.length, SERVER_HELLO_SIZE, "a 140-byte v1 server hello");
  assert.equal(answer[4], 1);
  assert.equal(answer[5], WireError.VersionUnsupported);
});

test("a record changed on the way ends that session with PERILINK_RECORD and nothing of it reaches the app; other sessions carry on", async () => {
  let messages = 0;
  const app: SessionApp = { request: (p) => p, message: () => void messages++ };
  const server = await testServer({ appObject: app });
  const good = await (await connect(server)).openChannel("good");
  const peer = await sealedPeer(portOf(server));
  peer.write(Buffer.concat([frame(FrameType.ChannelOpen, 1, 0, channelOpen()), frame(FrameType.Message, 1, 0, Buffer.from("genuine"))]));
  await waitFor(() => messages === 1, "the genuine message");
  // A record whose last byte (of its tag) was flipped, carrying a message.
  const orig = peer.sock.write.bind(peer.sock);
  peer.sock.write = ((chunk: Buffer) => {
    const b = Buffer.from(chunk);
    b[b.length - 1]! ^= 1;
    return orig(b);
  }) as typeof peer.sock.write;
  peer.write(frame(FrameType.Message, 1, 0, Buffer.from("forged")));
  await peer.closed;
  assert.equal(messages, 1, "the message in the changed record was never delivered");
  assert.ok(server.status().counters.protocolErrors! >= 1);
  await stillServes(good);
});
