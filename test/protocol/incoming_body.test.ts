import assert from "node:assert/strict";
import { test } from "node:test";
import { IncomingBody, ReceiveWindow } from "../../src/protocol/incoming_body.ts";

function body(window = 1 << 20, sessionWindow = 4 * window): { body: IncomingBody; grants: [number, number][] } {
  const grants: [number, number][] = [];
  const w = new ReceiveWindow({ window: (stream, n) => grants.push([stream, n]) }, sessionWindow, window);
  return { body: new IncomingBody(w, 1, () => {}), grants };
}

test("small DATA chunks are copied together: the body keeps none of the large buffers they arrived in", async () => {
  const { body: b } = body();
  const records: Buffer[] = [];
  for (let i = 0; i < 1000; i++) {
    const record = Buffer.alloc(16 * 1024, i & 0xff); // a record's plaintext, one byte of it DATA
    records.push(record);
    b.push(record.subarray(100, 101), i === 999);
  }
  const got: Buffer[] = [];
  for await (const chunk of b) got.push(chunk);
  assert.equal(Buffer.concat(got).length, 1000);
  assert.ok(got.length <= 2, `${got.length} chunks for 1000 one-byte frames`);
  assert.ok(got.every((c) => !records.some((r) => r.buffer === c.buffer)), "no chunk is a view of a record");
  assert.deepEqual([...Buffer.concat(got).subarray(0, 3)], [0, 1, 2]);
});

test("a large chunk that is a small part of its buffer is copied out; one that is most of it is kept as it is", async () => {
  const { body: b } = body();
  const shared = Buffer.alloc(64 * 1024);
  const own = Buffer.alloc(16 * 1024);
  b.push(shared.subarray(0, 4096), false);
  b.push(own, true);
  const it = b[Symbol.asyncIterator]();
  assert.notEqual((await it.next()).value!.buffer, shared.buffer);
  assert.equal((await it.next()).value!, own);
});

test("a cancelled body that had ended gives back every unread byte to the session window", async () => {
  const { body: b, grants } = body(8192, 8192); // one stream may fill the session's window
  b.push(Buffer.alloc(8192), true); // a whole stream window, ended, unread
  b.cancel();
  assert.deepEqual(grants, [[0, 8192]], "the session gets its 8 KiB back; the stream, over, gets nothing");
});

test("two reads waiting at once is a TypeError, not a read that never returns", async () => {
  const { body: b } = body();
  const it = b[Symbol.asyncIterator]();
  const first = it.next();
  await assert.rejects(it.next(), TypeError);
  b.push(Buffer.from("x"), true);
  assert.equal((await first).value!.toString(), "x");
});
