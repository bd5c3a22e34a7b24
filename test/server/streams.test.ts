import assert from "node:assert/strict";
import crypto from "node:crypto";
import { after, test } from "node:test";
import { createClient } from "../../src/client/client.ts";
import type { RequestContext, SessionApp } from "../../src/server/app.ts";
import { portOf, testServer } from "../helpers/fixtures.ts";

/** Echoes a body back as it arrives, and answers "sha:N" requests with N random-ish bytes streamed. */
const streamingApp: SessionApp = {
  streams: true,
  request(payload: Uint8Array, ctx: RequestContext) {
    const text = ctx.body.streamed ? "" : Buffer.from(payload).toString();
    if (text.startsWith("gen:")) return generate(Number(text.slice(4)), 8191);
    if (text === "sum") return ctx.body.bytes().then((b) => b.length.toString());
    return echo(ctx.body);
  },
};

async function* echo(body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  for await (const chunk of body) yield chunk;
}

async function* generate(total: number, chunk: number): AsyncGenerator<Uint8Array> {
  let i = 0;
  for (let left = total; left > 0; left -= chunk) {
    const n = Math.min(chunk, left);
    const b = Buffer.allocUnsafe(n);
    for (let j = 0; j < n; j++) b[j] = (i + j) & 0xff;
    i += n;
    yield b;
  }
}

function pattern(total: number): Buffer {
  const b = Buffer.allocUnsafe(total);
  for (let j = 0; j < total; j++) b[j] = j & 0xff;
  return b;
}

async function* chunksOf(buf: Buffer, sizes: number[]): AsyncGenerator<Uint8Array> {
  let off = 0;
  for (let i = 0; off < buf.length; i++) {
    const n = sizes[i % sizes.length]!;
    yield buf.subarray(off, off + n);
    off += n;
  }
}

async function setup(maxFrameBytes = 64 * 1024) {
  const server = await testServer({ appObject: streamingApp, limits: { maxFrameBytes } });
  const client = createClient({ lingerMs: 0, stateDir: false });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port: portOf(server), app: "s" });
  return { server, client, link };
}

test("a streamed request comes back whole through a streamed response, for many sizes and split points", async () => {
  const { link } = await setup();
  for (const total of [0, 1, 1023, 64 * 1024, 64 * 1024 + 1, 3 * 1024 * 1024 + 7]) {
    for (const sizes of [[1], [7, 4096], [65536], [200_000]]) {
      if (sizes[0] === 1 && total > 70_000) continue; // a byte per chunk is slow, not more telling
      const body = pattern(total);
      const back = await link.request(chunksOf(body, sizes));
      assert.equal(back.length, total, `size ${total}, chunks ${sizes}`);
      assert.ok(back.equals(body), `bytes of size ${total}, chunks ${sizes}`);
    }
  }
});

test("a response streamed from the server reads as it arrives, and as a web ReadableStream", async () => {
  const { link } = await setup();
  const total = 5 * 1024 * 1024 + 3;
  const body = await link.stream("gen:" + total);
  let n = 0;
  const hash = crypto.createHash("sha256");
  for await (const chunk of body) {
    n += chunk.length;
    hash.update(chunk);
  }
  assert.equal(n, total);
  assert.equal(hash.digest("hex"), crypto.createHash("sha256").update(pattern(total)).digest("hex"));
  const rs = (await link.stream("gen:100000")).readable();
  let m = 0;
  for await (const chunk of rs) m += chunk.length;
  assert.equal(m, 100000);
});

test("bytes larger than the server's frame limit are sent as a streamed body by themselves", async () => {
  const { link } = await setup(16 * 1024);
  const big = crypto.randomBytes(1024 * 1024);
  assert.ok((await link.request(big)).equals(big));
  assert.equal((await link.request(new Blob([big, big]))).length, 2 * big.length);
});

test("a response read whole past maxBytes fails PERILINK_BODY_TOO_LARGE and the session carries on", async () => {
  const { link } = await setup();
  await assert.rejects(link.request("gen:300000", { maxBytes: 100_000 }), (e: unknown) => (e as { code?: string }).code === "PERILINK_BODY_TOO_LARGE");
  assert.equal((await link.request("gen:10")).length, 10);
});
