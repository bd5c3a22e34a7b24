import assert from "node:assert/strict";
import { existsSync, utimesSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { withFileLock } from "../../src/runtime/file_lock.ts";
import { tempDir } from "../helpers/fixtures.ts";

const busy = (): Error => new Error("busy");

/** A lock file left by a crashed holder a minute ago. */
function staleLock(): string {
  const lock = path.join(tempDir(), "pins.json.lock");
  writeFileSync(lock, "");
  const then = Date.now() / 1000 - 60;
  utimesSync(lock, then, then);
  return lock;
}

test("16 waiters that find one stale lock take turns: never two holders at once (was: two in 10 of 40 rounds)", async () => {
  let rounds = 0;
  for (let round = 0; round < 40; round++) {
    const lock = staleLock();
    let holders = 0;
    let most = 0;
    const results = await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        withFileLock(lock, async () => {
          most = Math.max(most, ++holders);
          await new Promise((r) => setTimeout(r, 2));
          holders--;
          return i;
        }, busy),
      ),
    );
    assert.equal(results.length, 16, "every waiter got its turn");
    if (most > 1) rounds++;
    assert.ok(!existsSync(lock) && !existsSync(`${lock}.takeover`), "no lock is left behind");
  }
  assert.equal(rounds, 0, `rounds with two holders at once: ${rounds} of 40`);
});

test("a fresh lock is not taken over: a waiter gives up with the busy error after the wait", async () => {
  const lock = path.join(tempDir(), "x.lock");
  writeFileSync(lock, "");
  const t0 = performance.now();
  await assert.rejects(withFileLock(lock, async () => 1, busy), /busy/);
  assert.ok(performance.now() - t0 >= 1900);
  assert.ok(existsSync(lock), "the other holder's lock is still there");
});

test("a holder whose lock was replaced meanwhile does not delete the other's lock at release", async () => {
  const lock = path.join(tempDir(), "x.lock");
  await withFileLock(lock, async () => {
    const { unlinkSync } = await import("node:fs");
    unlinkSync(lock);
    writeFileSync(lock, "someone else's");
  }, busy);
  assert.ok(existsSync(lock), "the replacing lock stays");
});

test("a takeover guard left by a waiter that crashed goes once stale, and the stale lock is taken over", async () => {
  const lock = staleLock();
  writeFileSync(`${lock}.takeover`, "");
  const then = Date.now() / 1000 - 60;
  utimesSync(`${lock}.takeover`, then, then);
  assert.equal(await withFileLock(lock, async () => "mine", busy), "mine");
  assert.ok(!existsSync(`${lock}.takeover`) && !existsSync(lock));
});
