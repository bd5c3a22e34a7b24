import assert from "node:assert/strict";
import { after, test } from "node:test";
import { createClient } from "../../src/client/client.ts";
import { FrameType, WireError } from "../../src/protocol/constants.ts";
import { encodeChannelOpen, encodeCodedReason } from "../../src/protocol/payloads.ts";
import type { RequestContext, SessionApp } from "../../src/server/app.ts";
import { FakeServer } from "../client/fake_server.ts";
import { testServer, waitFor } from "../helpers/fixtures.ts";
import { loopback as lo } from "../helpers/two_addresses.ts";
import { frame, sealedPeer } from "../helpers/raw_peer.ts";
import { LARGE_RECORD_PLAINTEXT, MAX_RECORD_PLAINTEXT } from "../../src/protocol/record_layer.ts";
import { Feature, OUR_FEATURES } from "../../src/protocol/sealed_handshake.ts";
import { detectRuntime } from "../../src/runtime/runtime.ts";

// Peers of different releases talk: a side never sends what the other's hello did not announce (docs/protocol.md §2.1, §2.2).


const app: SessionApp = {
  streams: true,
  async request(payload: Uint8Array, ctx: RequestContext) {
    const text = Buffer.from(payload).toString();
    if (text.startsWith("whole:")) return Buffer.alloc(Number(text.slice(6)), 0x62);
    if (text.startsWith("gen:")) {
      const n = Number(text.slice(4));
      return (async function* () {
        for (let i = 0; i < n; i += 1000) yield Buffer.alloc(Math.min(1000, n - i), 0x61);
      })();
    }
    return String((await ctx.body.bytes()).length);
  },
};

function frames(data: Buffer): { type: number; flags: number; stream: number; payload: Buffer }[] {
  const out = [];
  for (let off = 0; off + 16 <= data.length; ) {
    const len = data.readUInt32BE(off);
    if (off + 16 + len > data.length) break;
    out.push({ type: data[off + 4]!, flags: data[off + 5]!, stream: data.readUInt32BE(off + 12), payload: data.subarray(off + 16, off + 16 + len) });
    off += 16 + len;
  }
  return out;
}

test("a first-release client (no feature bits) gets no ADDRESSES and a handler's streamed answer as one whole RESPONSE, or FrameTooLarge", async () => {
  const server = await testServer({ appObject: app, listen: ["auto:0"], interfaces: () => [lo("127.0.0.1", 4), lo("::1", 6)] });
  const peer = await sealedPeer(server.endpoints()[0]!.port, { features: 0, maxFrame: 4096 });
  after(() => peer.sock.destroy());
  peer.write(frame(FrameType.ChannelOpen, 1, 0, encodeChannelOpen({ app: "a", requestedHost: "", requestedPort: 0 })));
  peer.write(frame(FrameType.Request, 1, 1, Buffer.from("gen:3000")));
  peer.write(frame(FrameType.Request, 1, 2, Buffer.from("gen:5000")));
  await waitFor(() => frames(peer.data()).filter((f) => f.stream > 0).length === 2, "both answers");
  const got = frames(peer.data());
  assert.ok(!got.some((f) => f.type === FrameType.Addresses || f.type === FrameType.Data || f.type === FrameType.Window), `frame types ${got.map((f) => f.type)}`);
  const one = got.find((f) => f.stream === 1)!;
  assert.deepEqual([one.type, one.flags, one.payload.length], [FrameType.Response, 0, 3000]);
  const two = got.find((f) => f.stream === 2)!;
  assert.deepEqual([two.type, two.payload.readUInt16BE(0)], [FrameType.Error, 2]); // FrameTooLarge: 5000 > the client's 4096
});

test("against a first-release server (no feature bits) a stream source goes whole in one REQUEST, and one too large is refused before sending", async () => {
  const fake = await new FakeServer({ features: 0 }).start(); // its default answers a REQUEST with its payload
  const client = createClient({ lingerMs: 0, stateDir: false });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port: fake.port, app: "a" });
  async function* parts(): AsyncGenerator<Uint8Array> {
    yield Buffer.from("a print ");
    yield Buffer.from("job");
  }
  assert.equal((await link.request(parts())).toString(), "a print job");
  const conn = fake.connections.at(-1)!;
  assert.ok(!conn.frames.some((f) => f.type === FrameType.Data), "no DATA frame reached the old server");
  await assert.rejects(link.request(new Blob([Buffer.alloc(70_000)])), (e: unknown) => (e as { code?: string }).code === "PERILINK_BODY_TOO_LARGE" && /takes no streamed bodies/.test((e as Error).message));
});

test("a body refused by a first-release server and sent again is gathered whole again, from its start", async () => {
  let refused = 0;
  const fake: FakeServer = await new FakeServer({
    features: 0,
    onFrame: (conn, type, channel, stream) => {
      if (type !== FrameType.Request || refused > 0) return false;
      refused++;
      fake.send(conn, FrameType.Error, channel, stream, encodeCodedReason(WireError.RefusedStream, "draining"));
      return true;
    },
  }).start();
  const client = createClient({ lingerMs: 0, stateDir: false });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port: fake.port, app: "a" });
  const body = Buffer.from("the whole job, twice if need be");
  assert.equal((await link.request(new Blob([body]))).toString(), body.toString());
  assert.equal(refused, 1);
});

test("a client that announces large records gets a large answer in records of up to 68 KiB (of at most 16 KiB from a server on Deno), one that does not in records of at most 16 KiB; the first record is small either way", async () => {
  const server = await testServer({ appObject: app });
  const port = server.endpoints()[0]!.port;
  for (const large of [true, false]) {
    const peer = await sealedPeer(port, { features: large ? OUR_FEATURES : OUR_FEATURES & ~Feature.LargeRecords });
    after(() => peer.sock.destroy());
    peer.write(Buffer.concat([frame(FrameType.ChannelOpen, 1, 0, encodeChannelOpen({ app: "a", requestedHost: "", requestedPort: 0 })), frame(FrameType.Request, 1, 1, Buffer.from("whole:60000"))]));
    await waitFor(() => frames(peer.data()).some((f) => f.stream === 1), "the answer");
    const answer = frames(peer.data()).find((f) => f.stream === 1)!;
    assert.deepEqual([answer.type, answer.payload.length], [FrameType.Response, 60000]);
    assert.ok(peer.records[0]! <= MAX_RECORD_PLAINTEXT, `first record ${peer.records[0]}`);
    const most = Math.max(...peer.records);
    if (large && detectRuntime().sealsLargeRecords) assert.ok(most > MAX_RECORD_PLAINTEXT && most <= LARGE_RECORD_PLAINTEXT, `records ${peer.records}`);
    else assert.ok(most <= MAX_RECORD_PLAINTEXT, `records ${peer.records}`);
  }
});

test("against a server that announces no large records, the client seals at most 16 KiB a record, whole messages and streamed bodies alike", async () => {
  const fake = await new FakeServer({ features: OUR_FEATURES & ~Feature.LargeRecords }).start(); // its opener takes no more
  const client = createClient({ lingerMs: 0, stateDir: false });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port: fake.port, app: "a" });
  const whole = Buffer.alloc(60_000, 0x63);
  assert.deepEqual(await link.request(whole), whole);
  // A streamed body of 60,000 bytes (within the fake's first window): every DATA frame reaches it, in 16 KiB records.
  async function* body(): AsyncGenerator<Uint8Array> {
    yield Buffer.alloc(60_000, 0x64);
  }
  void link.request(body()).catch(() => {}); // the fake never answers a streamed request
  const conn = fake.connections.at(-1)!;
  const data = () => conn.frames.filter((f) => f.type === FrameType.Data);
  await waitFor(() => data().reduce((n, f) => n + f.payload.length, 0) === 60_000, "the whole body");
  assert.ok(!conn.socket.destroyed);
  assert.ok(data().every((f) => f.payload.length <= MAX_RECORD_PLAINTEXT - 16), `DATA sizes ${data().map((f) => f.payload.length)}`);
});
