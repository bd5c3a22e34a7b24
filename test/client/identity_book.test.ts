import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { IdentityBook } from "../../src/client/identity_book.ts";
import { KeyMismatchError } from "../../src/errors.ts";
import { tempDir } from "../helpers/fixtures.ts";

const key = (n: number): Buffer => Buffer.alloc(32, n);
const ID = (n: number): string => `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;
const mismatch = (e: unknown): boolean => e instanceof KeyMismatchError && e.code === "PERILINK_KEY_MISMATCH";

test("pin() accepts the pinned key again and refuses another key for the same identifier with PERILINK_KEY_MISMATCH", () => {
  const book = new IdentityBook(30_000, 8);
  book.pin(ID(1), key(1), "a:1");
  book.pin(ID(1), key(1), "b:1");
  assert.throws(() => book.pin(ID(1), key(2), "c:1"), (e: unknown) => {
    assert.ok(mismatch(e));
    assert.match((e as Error).message, /^Cannot trust c:1: .*impersonating/);
    assert.equal((e as KeyMismatchError).serverId, ID(1));
    return true;
  });
});

test("pinned keys are evicted least-recently-used: a pin in use survives newer ones", () => {
  const book = new IdentityBook(30_000, 2);
  book.pin(ID(1), key(1), "x");
  book.pin(ID(2), key(2), "x");
  book.pin(ID(1), key(1), "x"); // 1 is used again: 2 is now the least recently used
  book.pin(ID(3), key(3), "x"); // evicts 2
  assert.throws(() => book.pin(ID(1), key(9), "x"), mismatch, "the pin in use is kept");
  assert.doesNotThrow(() => book.pin(ID(2), key(9), "x"), "the least recently used pin was evicted");
});

test("addresses are remembered for ttlMs, bounded, least-recently-used first out, and forgotten on request", () => {
  const book = new IdentityBook(1000, 2);
  book.remember("a", 1, ID(1), key(1), 0);
  book.remember("b", 1, ID(2), key(2), 0);
  assert.equal(book.lookup("a", 1, 500)?.serverId, ID(1)); // a used: b is the oldest
  book.remember("c", 1, ID(3), key(3), 500);
  assert.equal(book.size, 2);
  assert.equal(book.lookup("b", 1, 600), null, "the least recently used address went");
  assert.equal(book.lookup("a", 1, 600)?.serverId, ID(1));
  assert.equal(book.lookup("a", 1, 1001), null, "stale after ttlMs");
  book.forget("c", 1);
  assert.equal(book.lookup("c", 1, 600), null);
  assert.equal(book.size, 0);
});

test("with a pinFile, pins survive a restart: a second client instance still refuses another key (PERILINK_KEY_MISMATCH)", async () => {
  const file = path.join(tempDir(), "pins.json");
  const first = new IdentityBook(30_000, 8, { pinFile: file });
  first.pin(ID(1), key(1), "a:1");
  await first.flush();
  const st = await fs.stat(file);
  assert.equal(st.mode & 0o777, 0o600, "the file is private");
  const second = new IdentityBook(30_000, 8, { pinFile: file });
  assert.throws(() => second.pin(ID(1), key(2), "impostor:1"), mismatch);
  second.pin(ID(1), key(1), "a:1");
});

test("two instances sharing a pinFile see each other's new pins", async () => {
  const file = path.join(tempDir(), "pins.json");
  const a = new IdentityBook(30_000, 8, { pinFile: file });
  const b = new IdentityBook(30_000, 8, { pinFile: file });
  a.pin(ID(1), key(1), "x");
  await a.flush();
  assert.throws(() => b.pin(ID(1), key(2), "x"), mismatch, "b reads a's pin before accepting a new one");
  b.pin(ID(2), key(2), "x");
  await b.flush();
  const c = new IdentityBook(30_000, 8, { pinFile: file });
  assert.throws(() => c.pin(ID(1), key(3), "x"), mismatch);
  assert.throws(() => c.pin(ID(2), key(3), "x"), mismatch, "b's write kept a's pin");
});

test("the pin file is written atomically: no temporary file is left, and the content is the pins in use order", async () => {
  const dir = tempDir();
  const file = path.join(dir, "pins.json");
  const book = new IdentityBook(30_000, 2, { pinFile: file });
  for (const n of [1, 2, 3]) book.pin(ID(n), key(n), "x");
  await book.flush();
  assert.deepEqual(await fs.readdir(dir), ["pins.json"]);
  const data = JSON.parse(await fs.readFile(file, "utf8")) as { version: number; pins: { serverId: string; publicKey: string }[] };
  assert.equal(data.version, 1);
  assert.deepEqual(data.pins.map((p) => p.serverId), [ID(2), ID(3)], "bounded like the memory, oldest first");
  assert.equal(data.pins[0]!.publicKey, key(2).toString("hex"));
});

test("a corrupt pin file is a PERILINK_PIN_FILE error that names the file and says what to do", async () => {
  const dir = tempDir();
  for (const [name, text] of [
    ["not-json.json", "{ not json"],
    ["bad-shape.json", JSON.stringify({ version: 1, pins: [{ serverId: "nope", publicKey: "00" }] })],
    ["bad-version.json", JSON.stringify({ version: 99, pins: [] })],
  ] as const) {
    const file = path.join(dir, name);
    await fs.writeFile(file, text);
    assert.throws(() => new IdentityBook(30_000, 8, { pinFile: file }), (e: unknown) => {
      assert.equal((e as { code?: string }).code, "PERILINK_PIN_FILE", String(e));
      assert.match((e as Error).message, new RegExp(`^Cannot read pin file ${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: .*(repair|delete) it`));
      return true;
    });
  }
});

test("IdentityBook rejects a bound below 1 with a RangeError", () => {
  assert.throws(() => new IdentityBook(1000, 0), RangeError);
});
