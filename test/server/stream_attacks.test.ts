import assert from "node:assert/strict";
import { after, test } from "node:test";
import { createClient } from "../../src/client/client.ts";
import { FrameFlag, FrameType, WireError } from "../../src/protocol/constants.ts";
import { encodeChannelOpen, windowPayload } from "../../src/protocol/payloads.ts";
import type { RequestContext, SessionApp } from "../../src/server/app.ts";
import { portOf, sleep, testServer, waitFor } from "../helpers/fixtures.ts";
import { frame, sealedPeer, type SealedPeer } from "../helpers/raw_peer.ts";

// Streams from the attacker's side (docs/protocol.md §4.7): a peer that sends
// past its credit, one that never gives credit, one that opens bodies and
// sends nothing, one that trickles. Each meets its bound, and other sessions
// carry on.

const MAX_FRAME = 16 * 1024;
const produced = { bytes: 0, closed: 0 };

const app: SessionApp = {
  streams: true,
  request(payload: Uint8Array, ctx: RequestContext) {
    if (!ctx.body.streamed && Buffer.from(payload).toString() === "flood") return flood();
    if (ctx.app === "hold") return new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve("aborted"))); // reads nothing
    return ctx.body.bytes().then((b) => String(b.length));
  },
};

/** An endless response body, counting what the server was made to produce. */
async function* flood(): AsyncGenerator<Uint8Array> {
  try {
    for (;;) {
      produced.bytes += 4096;
      yield Buffer.alloc(4096);
    }
  } finally {
    produced.closed++;
  }
}

function withFlags(f: Buffer, flags: number): Buffer {
  f[5] = flags;
  return f;
}

/** The frames in what the server sent: type, channel, stream, payload. */
function frames(data: Buffer): { type: number; flags: number; channel: number; stream: number; payload: Buffer }[] {
  const out = [];
  for (let off = 0; off + 16 <= data.length; ) {
    const len = data.readUInt32BE(off);
    if (off + 16 + len > data.length) break;
    out.push({ type: data[off + 4]!, flags: data[off + 5]!, channel: data.readUInt32BE(off + 8), stream: data.readUInt32BE(off + 12), payload: data.subarray(off + 16, off + 16 + len) });
    off += 16 + len;
  }
  return out;
}

const errorCode = (f: { payload: Buffer }): number => f.payload.readUInt16BE(0);

async function server(limits: Record<string, number> = {}) {
  const s = await testServer({ appObject: app, limits: { maxFrameBytes: MAX_FRAME, ...limits } });
  return s;
}

async function opened(port: number, appName = "a"): Promise<SealedPeer> {
  const peer = await sealedPeer(port, { maxFrame: MAX_FRAME });
  after(() => peer.sock.destroy());
  peer.write(frame(FrameType.ChannelOpen, 1, 0, encodeChannelOpen({ app: appName, requestedHost: "", requestedPort: 0 })));
  return peer;
}

/** A well-behaved client streaming alongside, to show other sessions carry on. */
async function bystander(port: number): Promise<void> {
  const client = createClient({ lingerMs: 0, stateDir: false });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port, app: "a" });
  assert.equal((await link.request(Buffer.alloc(200_000, 7))).toString(), "200000");
}

test("DATA past the stream's credit ends that session with ERROR FlowControl; another session carries on", async () => {
  const s = await server();
  const peer = await opened(portOf(s));
  peer.write(withFlags(frame(FrameType.Request, 1, 1, Buffer.alloc(0)), FrameFlag.Streamed));
  // The stream's credit is the server's maxFrame: exactly that much is fine, one byte more is not.
  peer.write(frame(FrameType.Data, 1, 1, Buffer.alloc(MAX_FRAME)));
  peer.write(frame(FrameType.Data, 1, 1, Buffer.alloc(1)));
  await peer.closed;
  const last = frames(peer.data()).at(-1)!;
  assert.equal(last.type, FrameType.Error);
  assert.equal(last.channel, 0);
  assert.equal(errorCode(last), WireError.FlowControl);
  await bystander(portOf(s));
});

test("DATA over the session's credit, spread over streams each within their own, is refused the same way", async () => {
  const s = await server();
  const peer = await opened(portOf(s), "hold"); // its handlers read nothing: no credit comes back
  for (let stream = 1; stream <= 5; stream++) {
    peer.write(withFlags(frame(FrameType.Request, 1, stream, Buffer.alloc(0)), FrameFlag.Streamed));
    peer.write(frame(FrameType.Data, 1, stream, Buffer.alloc(MAX_FRAME))); // the session window is 4 frames: the 5th is over
  }
  await peer.closed;
  const last = frames(peer.data()).at(-1)!;
  assert.deepEqual([last.type, last.channel, errorCode(last)], [FrameType.Error, 0, WireError.FlowControl]);
});

test("a WINDOW of 0, or one past 2^31 - 1, or of the wrong size, ends the session", async () => {
  const s = await server();
  for (const [payload, code] of [
    [windowPayload(0), WireError.FlowControl],
    [windowPayload(0x7fff_ffff), WireError.FlowControl],
    [Buffer.alloc(5), WireError.ProtocolError],
  ] as const) {
    const peer = await opened(portOf(s));
    peer.write(frame(FrameType.Window, 0, 0, payload));
    await peer.closed;
    const last = frames(peer.data()).at(-1)!;
    assert.deepEqual([last.type, errorCode(last)], [FrameType.Error, code]);
  }
});

test("a client that never gives credit gets one window of a response, then ERROR Timeout; the server's generator is closed", async () => {
  const s = await server({ requestTimeoutMs: 800 });
  const peer = await opened(portOf(s));
  const before = { ...produced };
  peer.write(frame(FrameType.Request, 1, 1, Buffer.from("flood")));
  await waitFor(() => frames(peer.data()).some((f) => f.type === FrameType.Error && f.stream === 1), "the stream to be given up on", 5000);
  const got = frames(peer.data()).filter((f) => f.stream === 1);
  const data = got.filter((f) => f.type === FrameType.Data).reduce((n, f) => n + f.payload.length, 0);
  assert.equal(data, MAX_FRAME, "one stream window (the client's maxFrame) and no more");
  assert.equal(errorCode(got.at(-1)!), WireError.Timeout);
  await waitFor(() => produced.closed > before.closed, "the generator to be closed");
  assert.ok(produced.bytes - before.bytes <= MAX_FRAME + 2 * 4096, `the server produced ${produced.bytes - before.bytes} bytes`);
  await bystander(portOf(s));
});

test("streamed requests that never send their body hold a slot each only until requestTimeoutMs", async () => {
  const s = await server({ requestTimeoutMs: 500, maxInflightPerSession: 4 });
  const peer = await opened(portOf(s));
  for (let stream = 1; stream <= 4; stream++) peer.write(withFlags(frame(FrameType.Request, 1, stream, Buffer.alloc(0)), FrameFlag.Streamed));
  await waitFor(() => frames(peer.data()).filter((f) => f.type === FrameType.Error && f.stream > 0).length === 4, "all four to time out", 5000);
  assert.ok(frames(peer.data()).filter((f) => f.stream > 0).every((f) => errorCode(f) === WireError.Timeout));
  // The session is still usable: a whole request is answered.
  peer.write(frame(FrameType.Request, 1, 5, Buffer.from("x")));
  await waitFor(() => frames(peer.data()).some((f) => f.type === FrameType.Response && f.stream === 5), "the next request's answer");
});

test("a trickling body (one byte per DATA) keeps its request alive by moving, holds almost nothing, and finishes", async () => {
  const s = await server({ requestTimeoutMs: 600 });
  const peer = await opened(portOf(s));
  peer.write(withFlags(frame(FrameType.Request, 1, 1, Buffer.alloc(0)), FrameFlag.Streamed));
  for (let i = 0; i < 12; i++) {
    peer.write(frame(FrameType.Data, 1, 1, Buffer.from([i])));
    await sleep(100); // 1.2 s in all: twice the deadline, but the body moves
  }
  peer.write(withFlags(frame(FrameType.Data, 1, 1, Buffer.alloc(0)), FrameFlag.End));
  await waitFor(() => frames(peer.data()).some((f) => f.type === FrameType.Response && f.stream === 1), "the answer");
  assert.equal(frames(peer.data()).find((f) => f.type === FrameType.Response)!.payload.toString(), "12");
});

test("DATA for a stream that was never opened ends the session with a protocol error", async () => {
  const s = await server();
  const peer = await opened(portOf(s));
  peer.write(frame(FrameType.Data, 1, 9, Buffer.alloc(10)));
  await peer.closed;
  const last = frames(peer.data()).at(-1)!;
  assert.deepEqual([last.type, errorCode(last)], [FrameType.Error, WireError.ProtocolError]);
});
