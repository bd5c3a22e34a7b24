import assert from "node:assert/strict";
import crypto from "node:crypto";
import { after, test } from "node:test";
import { createClient } from "../../src/client/client.ts";
import type { RequestContext, SessionApp } from "../../src/server/app.ts";
import { connect, portOf, sleep, testServer, waitFor } from "../helpers/fixtures.ts";

/** What the app saw, for the tests to read. */
const seen = { generatorsClosed: 0, bodyErrors: [] as string[], aborted: 0 };

/**
 * Echoes a body back as it arrives; "gen:N" streams N bytes of a pattern;
 * "fail:N" streams N bytes then throws; "drop" reads nothing and answers "dropped".
 */
const streamingApp: SessionApp = {
  streams: true,
  request(payload: Uint8Array, ctx: RequestContext) {
    const text = ctx.body.streamed ? "" : Buffer.from(payload).toString();
    ctx.signal.addEventListener("abort", () => seen.aborted++);
    if (text.startsWith("gen:")) return generate(Number(text.slice(4)), 8191);
    if (text.startsWith("fail:")) return failing(Number(text.slice(5)));
    if (ctx.app === "dropper") return "dropped";
    if (ctx.app === "late-dropper") return sleep(30).then(() => "dropped"); // the body has ended by then, unread
    return echo(ctx.body);
  },
};

async function* failing(n: number): AsyncGenerator<Uint8Array> {
  yield Buffer.alloc(n, 1);
  throw Object.assign(new Error("the scanner jammed"), { expose: true });
}

async function* echo(body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  try {
    for await (const chunk of body) yield chunk;
  } catch (err) {
    seen.bodyErrors.push((err as { code?: string }).code ?? String(err));
    throw err;
  }
}

async function* generate(total: number, chunk: number): AsyncGenerator<Uint8Array> {
  let i = 0;
  try {
    for (let left = total; left > 0; left -= chunk) {
      const n = Math.min(chunk, left);
      const b = Buffer.allocUnsafe(n);
      for (let j = 0; j < n; j++) b[j] = (i + j) & 0xff;
      i += n;
      yield b;
    }
  } finally {
    seen.generatorsClosed++;
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

test("a reader that stops early cancels the stream: the server's generator is closed and the session carries on", async () => {
  const { link } = await setup();
  const before = seen.generatorsClosed;
  const body = await link.stream("gen:50000000");
  let n = 0;
  for await (const chunk of body) {
    n += chunk.length;
    if (n > 200_000) break;
  }
  await waitFor(() => seen.generatorsClosed > before, "the server's generator to be closed");
  assert.ok(n < 50_000_000);
  assert.equal((await link.request("gen:1000")).length, 1000);
});

test("a handler that fails mid-body: the reader gets its typed error after the bytes already sent", async () => {
  const { link } = await setup();
  const body = await link.stream("fail:5000");
  let n = 0;
  await assert.rejects(
    (async () => {
      for await (const chunk of body) n += chunk.length;
    })(),
    (e: unknown) => (e as { code?: string }).code === "PERILINK_REMOTE_APP" && /jammed/.test((e as Error).message),
  );
  assert.equal(n, 5000);
  await assert.rejects(link.request("fail:10"), (e: unknown) => (e as { code?: string }).code === "PERILINK_REMOTE_APP");
});

test("a request body whose source throws: the caller gets that error, the handler's read fails PERILINK_CANCELLED", async () => {
  const { link } = await setup();
  const errors = seen.bodyErrors.length;
  async function* broken(): AsyncGenerator<Uint8Array> {
    yield Buffer.alloc(10_000, 2);
    await sleep(50);
    throw new Error("the file went away");
  }
  await assert.rejects(link.request(broken()), /the file went away/);
  await waitFor(() => seen.bodyErrors.length > errors, "the handler to see its body fail");
  assert.equal(seen.bodyErrors.at(-1), "PERILINK_CANCELLED");
});

test("a handler that answers without reading the body: the upload stops, the session carries on", async () => {
  const { link, client, server } = await setup();
  const dropper = await client.connect({ host: "127.0.0.1", port: portOf(server), app: "dropper" });
  let pulled = 0;
  async function* endless(): AsyncGenerator<Uint8Array> {
    for (;;) {
      pulled++;
      yield Buffer.alloc(16 * 1024);
    }
  }
  assert.equal((await dropper.request(endless(), { timeoutMs: 5000 })).toString(), "dropped");
  await sleep(100);
  const after100ms = pulled;
  await sleep(200);
  assert.equal(pulled, after100ms, "the source is read no more once the answer came");
  assert.ok(pulled < 100, `pulled ${pulled} chunks`);
  assert.equal((await link.request("gen:10")).length, 10, "the session carries on");
});

test("a slow reader stalls only its own stream: another on the same session finishes at its rate", async () => {
  const { link, client } = await setup();
  const slow = await link.stream("gen:20000000");
  const it = slow[Symbol.asyncIterator]();
  await it.next(); // one chunk, then it reads no more
  const t0 = performance.now();
  const fast = await link.request("gen:8000000");
  assert.equal(fast.length, 8_000_000);
  assert.ok(performance.now() - t0 < 20_000);
  assert.equal(client.sessions().length, 1, "both streams ride one session");
  await it.return!();
});

test("an app without `streams: true` gets a streamed body gathered into its payload, up to its frame limit", async () => {
  const plainEcho: SessionApp = { request: (payload) => payload };
  const server = await testServer({ appObject: plainEcho, limits: { maxFrameBytes: 32 * 1024 } });
  const client = createClient({ lingerMs: 0, stateDir: false });
  after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port: portOf(server), app: "echo" });
  const small = crypto.randomBytes(20_000);
  assert.ok((await link.request(chunksOf(small, [3000]))).equals(small));
  await assert.rejects(link.request(chunksOf(crypto.randomBytes(100_000), [8192])), (e: unknown) => (e as { code?: string }).code === "PERILINK_FRAME_TOO_LARGE" && /takes whole requests/.test((e as Error).message));
  assert.ok((await link.request(small)).equals(small), "the session carries on");
});

test("a session that ends under a streamed response fails its reader (PERILINK_SESSION_CLOSED) instead of leaving it waiting", async () => {
  const server = await testServer({ appObject: streamingApp });
  const s = await connect(server);
  const ch = await s.openChannel("s");
  const body = await ch.stream("gen:50000000");
  const it = body[Symbol.asyncIterator]();
  await it.next();
  s.destroy();
  await assert.rejects(
    (async () => {
      for (;;) if ((await it.next()).done) return;
    })(),
    (e: unknown) => (e as { code?: string }).code === "PERILINK_SESSION_CLOSED",
  );
});

test("bodies that arrived whole but were never read give their bytes back: the session's window does not shrink", async () => {
  const { link, client, server } = await setup(16 * 1024); // a session window of 64 KiB
  const late = await client.connect({ host: "127.0.0.1", port: portOf(server), app: "late-dropper" });
  for (let i = 0; i < 20; i++) {
    // 12 KiB each, 240 KiB in all: four times the session's window, none of it read.
    assert.equal((await late.request(chunksOf(Buffer.alloc(12 * 1024, i), [4096]))).toString(), "dropped");
  }
  const big = crypto.randomBytes(512 * 1024);
  assert.ok((await link.request(chunksOf(big, [16 * 1024]), { timeoutMs: 5000 })).equals(big), "a streamed upload still flows");
});
