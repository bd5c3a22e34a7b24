import assert from "node:assert/strict";
import crypto from "node:crypto";
import { test } from "node:test";
import type { RequestContext, SessionApp } from "../../src/server/app.ts";
import { sleep } from "../helpers/fixtures.ts";
import { twoAddresses as onTwoAddresses } from "../helpers/two_addresses.ts";

/** Reads a streamed body slowly and answers with its length and hash. */
const slowSink: SessionApp = {
  streams: true,
  async request(_p: Uint8Array, ctx: RequestContext) {
    const h = crypto.createHash("sha256");
    let n = 0;
    for await (const chunk of ctx.body) {
      h.update(chunk);
      n += chunk.length;
      await sleep(2);
    }
    return `${n} ${h.digest("hex")}`;
  },
};

/** The two-address server of the helper, with the slow sink and small frames. */
const twoAddresses = (): ReturnType<typeof onTwoAddresses> => onTwoAddresses({ appObject: slowSink, limits: { maxFrameBytes: 16 * 1024 } }, "sink");

test("a streamed upload cut by a failed session is not sent again unless idempotent: a one-shot stream fails PERILINK_OUTCOME_UNKNOWN", async () => {
  const { link, dropFirst } = await twoAddresses();
  async function* oneShot(): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < 400; i++) yield Buffer.alloc(4096, i);
  }
  const upload = link.request(oneShot(), { idempotent: true, timeoutMs: 10_000 });
  await sleep(150);
  await dropFirst();
  await assert.rejects(upload, (e: unknown) => (e as { code?: string }).code === "PERILINK_OUTCOME_UNKNOWN" && /cannot be sent again/.test((e as Error).message));
  assert.equal((await link.request("after")).toString().split(" ")[0], "5", "the link carries on, on ::1");
});

test("an idempotent upload of bytes or a Blob cut by a failed session is sent again whole on the server's other address", async () => {
  const { link, dropFirst } = await twoAddresses();
  const body = crypto.randomBytes(1_600_000);
  const want = `${body.length} ${crypto.createHash("sha256").update(body).digest("hex")}`;
  const upload = link.request(new Blob([body]), { idempotent: true, timeoutMs: 20_000 });
  await sleep(150);
  await dropFirst();
  assert.equal((await upload).toString(), want);
});
