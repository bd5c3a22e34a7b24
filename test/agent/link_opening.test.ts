import assert from "node:assert/strict";
import { test } from "node:test";
import { LinkOpening, ownBytes } from "../../src/agent/link_opening.ts";
import type { Link } from "../../src/client/link.ts";

test("ownBytes(): a payload that is a view of a larger read is copied out of it; one that is its whole buffer is kept as it is", () => {
  const read = Buffer.alloc(64 * 1024, 7);
  const view = read.subarray(100, 164);
  const own = ownBytes(view);
  assert.notEqual(own.buffer, read.buffer, "no longer keeps the 64 KiB read alive");
  assert.ok(own.buffer.byteLength <= Math.max(64, Buffer.poolSize), `at most a small-buffer pool slab: ${own.buffer.byteLength} bytes`);
  assert.deepEqual(own, view);
  read.fill(0);
  assert.equal(own[0], 7, "its own bytes: the read's reuse does not change it");
  const alone = Buffer.from(new Uint8Array([1, 2, 3]).buffer);
  assert.equal(ownBytes(alone), alone, "a buffer of its own is not copied again");
});

test("LinkOpening: a one-way message sent while the link opens is copied at once and sent once it is open; a request waits within its deadline and has what is left of it", async () => {
  const opening = new LinkOpening();
  const read = Buffer.from("xxmessageyy");
  const sent: Buffer[] = [];
  const link = { send: async (b: Buffer) => void sent.push(b) } as unknown as Link;
  const done = opening.send(read.subarray(2, 9));
  read.fill(0x2d); // the read buffer is reused before the link opens
  const options = { timeoutMs: 5000 };
  const forRequest = opening.forRequest(options);
  await new Promise((r) => setTimeout(r, 30));
  opening.open(link);
  await done;
  assert.equal(sent[0]!.toString(), "message");
  assert.equal(await forRequest, link);
  assert.ok(options.timeoutMs <= 4975 && options.timeoutMs >= 1, `what it waited is taken off its deadline: ${options.timeoutMs} ms left`);
});

test("LinkOpening: what waits fails as the connect did, or at its own deadline, or when aborted", async () => {
  const failed = new LinkOpening();
  const waiting = failed.wait(5000, undefined);
  failed.fail(Object.assign(new Error("unreachable"), { code: "PERILINK_UNREACHABLE" }));
  await assert.rejects(waiting, { code: "PERILINK_UNREACHABLE" });
  const slow = new LinkOpening();
  await assert.rejects(slow.wait(20, undefined), { code: "PERILINK_REQUEST_TIMEOUT", message: /still opening after 20 ms/ });
  const ac = new AbortController();
  const aborted = slow.wait(5000, ac.signal);
  ac.abort(new Error("the process went away"));
  await assert.rejects(aborted, /the process went away/);
});
