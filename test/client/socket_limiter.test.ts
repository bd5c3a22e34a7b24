import assert from "node:assert/strict";
import { test } from "node:test";
import { SocketLimiter } from "../../src/client/socket_limiter.ts";
import { SocketLimitError } from "../../src/errors.ts";

const limitError = (e: unknown): boolean => e instanceof SocketLimitError && e.code === "PERILINK_SOCKET_LIMIT";

test("at most max slots are held; tryAcquire says no beyond, and release gives one back", () => {
  const l = new SocketLimiter(2, 4, 1000);
  assert.equal(l.tryAcquire(), true);
  assert.equal(l.tryAcquire(), true);
  assert.equal(l.tryAcquire(), false);
  assert.equal(l.used, 2);
  l.release();
  assert.equal(l.used, 1);
  l.release();
  l.release(); // one too many: never below zero
  assert.equal(l.used, 0);
});

test("waiters get freed slots oldest first, the slot passing straight to them", async () => {
  const l = new SocketLimiter(1, 4, 5000);
  await l.acquire();
  const order: number[] = [];
  const waits = [1, 2, 3].map((n) => l.acquire().then(() => order.push(n)));
  assert.equal(l.waiting, 3);
  for (let i = 0; i < 3; i++) {
    l.release();
    await Promise.resolve();
    assert.equal(l.used, 1, "the slot went to a waiter, not back to the pool");
  }
  await Promise.all(waits);
  assert.deepEqual(order, [1, 2, 3]);
  assert.equal(l.waiting, 0);
});

test("the wait queue is bounded: beyond maxWaiting acquire fails at once with PERILINK_SOCKET_LIMIT", async () => {
  const l = new SocketLimiter(1, 2, 5000);
  await l.acquire();
  const waits = [l.acquire(), l.acquire()];
  await assert.rejects(l.acquire(), (e: unknown) => limitError(e) && /2 requests already wait; raise maxSessions or maxWaiting/.test((e as Error).message));
  l.rejectAll(new Error("done"));
  await Promise.allSettled(waits);
});

test("a waiter gives up after waitTimeoutMs with PERILINK_SOCKET_LIMIT and leaves the queue; a later release does not go to it", async () => {
  const l = new SocketLimiter(1, 4, 80);
  await l.acquire();
  const start = Date.now();
  await assert.rejects(l.acquire(), (e: unknown) => limitError(e) && /no socket freed within 80 ms/.test((e as Error).message));
  assert.ok(Date.now() - start >= 70, "it waited about waitTimeoutMs");
  assert.equal(l.waiting, 0);
  l.release();
  assert.equal(l.used, 0);
});

test("onPressure is called when a caller has to wait, so the owner can free an idle slot", async () => {
  const l = new SocketLimiter(1, 4, 5000);
  let calls = 0;
  l.onPressure = () => {
    calls++;
    l.release(); // the owner closes an idle session
  };
  await l.acquire();
  assert.equal(calls, 0);
  await l.acquire();
  assert.equal(calls, 1);
  assert.equal(l.used, 1);
});

test("rejectAll fails every waiter with the given error and clears their timers", async () => {
  const l = new SocketLimiter(1, 4, 60_000);
  await l.acquire();
  const waits = [l.acquire(), l.acquire()];
  const err = new Error("closing");
  l.rejectAll(err);
  for (const w of waits) await assert.rejects(w, (e: unknown) => e === err);
  assert.equal(l.waiting, 0);
});

test("bad limits are RangeErrors", () => {
  assert.throws(() => new SocketLimiter(0, 1, 1), RangeError);
  assert.throws(() => new SocketLimiter(1.5, 1, 1), RangeError);
  assert.throws(() => new SocketLimiter(1, -1, 1), RangeError);
  assert.throws(() => new SocketLimiter(1, 1, -5), RangeError);
  assert.throws(() => new SocketLimiter(1, Number.NaN, 1), RangeError);
});

test("close() fails the waiters and every later acquire with its error", async () => {
  const l = new SocketLimiter(1, 4, 60_000);
  await l.acquire();
  const waiting = l.acquire();
  const err = new Error("client closed");
  l.close(err);
  await assert.rejects(waiting, (e: unknown) => e === err);
  l.release();
  await assert.rejects(l.acquire(), (e: unknown) => e === err, "even with a free slot");
});
