import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { FrameTooLargeError, ProtocolError } from "../../src/errors.ts";
import { FRAME_HEADER_SIZE, FrameType, MAX_FRAME_TYPE } from "../../src/protocol/constants.ts";
import { FrameDecoder } from "../../src/protocol/frame_decoder.ts";
import { FrameWriter, type WritableSink } from "../../src/protocol/frame_writer.ts";

interface Frame {
  type: number;
  channel: number;
  stream: number;
  payload: Buffer;
}

/** A sink that collects what a FrameWriter hands to the socket. */
class CollectSink implements WritableSink {
  chunks: Buffer[] = [];
  writes = 0;
  destroyed = false;
  writableEnded = false;
  write(chunk: Uint8Array): boolean {
    this.writes++;
    this.chunks.push(Buffer.from(chunk)); // copy: proves the writer never rewrites bytes already handed over
    return true;
  }
  cork(): void {}
  uncork(): void {}
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

function decodeAll(bytes: Buffer, splits: number[], max = 1 << 20): Frame[] {
  const out: Frame[] = [];
  const d = new FrameDecoder({ onFrame: (type, _f, channel, stream, payload) => out.push({ type, channel, stream, payload: Buffer.from(payload) }) }, max);
  let off = 0;
  for (const s of [...splits].sort((a, b) => a - b)) {
    if (s <= off || s >= bytes.length) continue;
    d.push(bytes.subarray(off, s));
    off = s;
  }
  d.push(bytes.subarray(off));
  return out;
}

const frameArb = fc.record({
  type: fc.integer({ min: 1, max: MAX_FRAME_TYPE }),
  channel: fc.nat({ max: 0xffffffff }),
  stream: fc.nat({ max: 0xffffffff }),
  payload: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
}).map((f): Frame => ({ ...f }));

test("round-trips every frame type through the writer and decoder, however the bytes are split", () => {
  fc.assert(
    fc.property(fc.array(frameArb, { maxLength: 40 }), fc.array(fc.nat({ max: 20000 }), { maxLength: 30 }), (frames, splits) => {
      const sink = new CollectSink();
      const w = new FrameWriter(sink, 1024); // small slab: exercises the slab roll-over and the large-payload path
      for (const f of frames) w.frame(f.type, f.channel, f.stream, f.payload);
      w.flush();
      assert.deepEqual(decodeAll(sink.bytes(), splits), frames);
    }),
    { numRuns: 300 },
  );
});

test("batches many small frames into one socket write per flush", () => {
  const sink = new CollectSink();
  const w = new FrameWriter(sink);
  for (let i = 1; i <= 100; i++) w.frame(FrameType.Response, 1, i, Buffer.alloc(64, i));
  w.flush();
  assert.equal(sink.writes, 1);
  assert.equal(sink.bytes().length, 100 * (FRAME_HEADER_SIZE + 64));
});

test("writes string payloads as UTF-8", () => {
  const sink = new CollectSink();
  const w = new FrameWriter(sink);
  w.frame(FrameType.Message, 7, 0, "héllo");
  w.flush();
  const [f] = decodeAll(sink.bytes(), []);
  assert.equal(f?.payload.toString("utf8"), "héllo");
});

test("hands out payload views of the received chunk when a frame lies inside it", () => {
  const sink = new CollectSink();
  const w = new FrameWriter(sink);
  w.frame(FrameType.Request, 1, 1, Buffer.from("abc"));
  w.flush();
  const chunk = sink.bytes();
  let seen: Buffer | undefined;
  new FrameDecoder({ onFrame: (_t, _f, _c, _s, p) => (seen = p) }, 1024).push(chunk);
  assert.equal(seen?.buffer, chunk.buffer, "payload shares the chunk's memory");
});

test("rejects a length prefix above the limit with FrameTooLargeError before buffering it", () => {
  const header = Buffer.alloc(FRAME_HEADER_SIZE);
  header.writeUInt32BE(0xfffffff0, 0);
  header[4] = FrameType.Request;
  const d = new FrameDecoder({ onFrame: () => assert.fail("no frame expected") }, 4096);
  assert.throws(() => d.push(header), (e: unknown) => e instanceof FrameTooLargeError && e.code === "PERILINK_FRAME_TOO_LARGE");
});

test("rejects unknown frame types with a typed ProtocolError", () => {
  for (const type of [0, MAX_FRAME_TYPE + 1, 255]) {
    const header = Buffer.alloc(FRAME_HEADER_SIZE);
    header[4] = type;
    const d = new FrameDecoder({ onFrame: () => {} }, 4096);
    assert.throws(() => d.push(header), ProtocolError);
  }
});

test("is total over random bytes: every input yields frames or a ProtocolError, nothing else", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2000 }), fc.array(fc.nat({ max: 2000 }), { maxLength: 10 }), (bytes, splits) => {
      try {
        decodeAll(Buffer.from(bytes), splits, 1024);
      } catch (err) {
        assert.ok(err instanceof ProtocolError, `unexpected ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`);
      }
    }),
    { numRuns: 500 },
  );
});

test("is total over mutated valid streams", () => {
  fc.assert(
    fc.property(fc.array(frameArb, { minLength: 1, maxLength: 10 }), fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { minLength: 1, maxLength: 8 }), (frames, flips) => {
      const sink = new CollectSink();
      const w = new FrameWriter(sink);
      for (const f of frames) w.frame(f.type, f.channel, f.stream, f.payload);
      w.flush();
      const bytes = sink.bytes();
      for (const [pos, val] of flips) bytes[pos % bytes.length] = val;
      try {
        decodeAll(bytes, [], 1024);
      } catch (err) {
        assert.ok(err instanceof ProtocolError);
      }
    }),
    { numRuns: 300 },
  );
});

test("pause() holds the rest of the chunk until resume()", () => {
  const sink = new CollectSink();
  const w = new FrameWriter(sink);
  for (let i = 1; i <= 5; i++) w.frame(FrameType.Request, 1, i, Buffer.from([i]));
  w.flush();
  const got: number[] = [];
  const d: FrameDecoder = new FrameDecoder(
    {
      onFrame: (_t, _f, _c, stream) => {
        got.push(stream);
        if (stream === 2) d.pause();
      },
    },
    1024,
  );
  d.push(sink.bytes());
  assert.deepEqual(got, [1, 2]);
  d.push(Buffer.alloc(0));
  assert.deepEqual(got, [1, 2], "nothing is read while paused");
  d.resume();
  assert.deepEqual(got, [1, 2, 3, 4, 5]);
});

test("a split frame's body grows with the bytes that arrive, not with the length its header announces", () => {
  const header = Buffer.alloc(FRAME_HEADER_SIZE);
  const size = 4 * 1024 * 1024;
  header.writeUInt32BE(size, 0);
  header[4] = FrameType.Request;
  let got: Buffer | undefined;
  const d = new FrameDecoder({ onFrame: (_t, _f, _c, _s, p) => (got = p) }, size);
  d.push(Buffer.concat([header, Buffer.alloc(10, 1)]));
  assert.ok(d.buffered <= 64 * 1024, `held ${d.buffered} bytes for 10 received`);
  const body = Buffer.alloc(size);
  for (let i = 0; i < size; i++) body[i] = i & 0xff;
  body.fill(1, 0, 10);
  for (let off = 10; off < size; off += 100_000) {
    d.push(body.subarray(off, Math.min(size, off + 100_000)));
    if (got === undefined) assert.ok(d.buffered <= 4 * (off + 100_000) + 64 * 1024, `held ${d.buffered} for ${off + 100_000} received`);
  }
  assert.ok(got !== undefined && got.equals(body), "the whole body arrives intact");
  assert.equal(d.buffered, 0);
});

test("writes nothing once the socket was ended", () => {
  const sink = new CollectSink();
  const w = new FrameWriter(sink, 1024);
  w.frame(FrameType.Pong, 0, 1, Buffer.from("before"));
  w.flush();
  sink.writableEnded = true;
  w.frame(FrameType.Pong, 0, 2, Buffer.from("after"));
  w.frame(FrameType.Pong, 0, 3, Buffer.alloc(4096)); // the large-payload path too
  w.flush();
  assert.equal(sink.writes, 1);
  assert.equal(decodeAll(sink.bytes(), []).length, 1);
});

test("asks its sink before each allocation for a split frame, and waits when refused", () => {
  const header = Buffer.alloc(FRAME_HEADER_SIZE);
  header.writeUInt32BE(300_000, 0);
  header[4] = FrameType.Request;
  const asked: number[] = [];
  let allow = true;
  const got: Buffer[] = [];
  const d = new FrameDecoder(
    {
      onFrame: (_t, _f, _c, _s, p) => void got.push(p),
      reserve: (bytes) => (asked.push(bytes), allow),
    },
    1 << 20,
  );
  d.push(header);
  assert.deepEqual(asked, [], "a header alone asks for nothing");
  d.push(Buffer.alloc(100_000, 1));
  assert.deepEqual(asked, [100_000], "what arrived, being more than 64 KiB");
  allow = false;
  d.push(Buffer.alloc(200_000, 2));
  assert.equal(d.paused, true, "refused: the decoder waits");
  assert.equal(got.length, 0);
  allow = true;
  d.resume();
  assert.equal(got[0]?.length, 300_000, "granted later: the frame completes from the held bytes");
  assert.deepEqual(asked, [100_000, 200_000, 200_000], "four times as much, capped at the frame's size; asked again after the refusal");
});
