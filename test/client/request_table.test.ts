import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { test } from "node:test";
import { RequestTable, type RequestWire } from "../../src/client/request_table.ts";
import { RequestRefusedError, SessionClosedError, TimeoutError } from "../../src/errors.ts";

/** A wire that records the frames the table sends, in order. */
class RecordingWire implements RequestWire {
  /** "REQUEST c/s payload" and "CANCEL c/s", in the order the table asked for them. */
  log: string[] = [];
  timeouts = 0;
  request(channel: number, stream: number, payload: Uint8Array | string | object): void {
    this.log.push(`REQUEST ${channel}/${stream} ${typeof payload === "string" ? payload : Buffer.from(payload as Uint8Array).toString()}`);
  }
  openResponse(): never {
    throw new Error("no streamed responses in these tests");
  }
  stopStream(): void {}
  cancel(channel: number, stream: number): void {
    this.log.push(`CANCEL ${channel}/${stream}`);
  }
  timedOut(): void {
    this.timeouts++;
  }
  /** The stream ids of the REQUEST frames, in wire order. */
  requested(): number[] {
    return this.log.filter((l) => l.startsWith("REQUEST")).map((l) => Number(l.split(" ")[1]!.split("/")[1]));
  }
}

/** What a request's promise settled to, without letting a rejection go unhandled. */
type Outcome = { value: string } | { error: Error };
function outcome(p: Promise<Buffer | object>): Promise<Outcome> {
  return p.then(
    (v) => ({ value: v.toString() }),
    (e: unknown) => ({ error: e as Error }),
  );
}

/** "pending" if `p` has not settled once queued callbacks and one macrotask have run. */
async function state(p: Promise<unknown>): Promise<"pending" | "settled"> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  await new Promise((r) => setImmediate(r));
  return settled ? "settled" : "pending";
}

/**
 * The table's deadline sweep is unref'd (the session's socket keeps a real process alive): a test
 * that waits for a deadline holds the event loop open itself while it waits.
 */
async function awaitAlive<T>(p: Promise<T>): Promise<T> {
  const keep = setInterval(() => {}, 1000);
  try {
    return await p;
  } finally {
    clearInterval(keep);
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Fails whatever a test left pending, so no sweep timer outlives it. */
function cleanUp(table: RequestTable): void {
  table.failAll(() => new SessionClosedError("test over"));
}

test("sends a request at once while fewer than maxInflight are on the wire, and queues the rest unsent", async () => {
  const wire = new RecordingWire();
  const table = new RequestTable(wire, 2);
  const all = [1, 2, 3, 4].map((s) => outcome(table.add(7, s, `p${s}`, 0, undefined)));
  assert.deepEqual(wire.log, ["REQUEST 7/1 p1", "REQUEST 7/2 p2"]);
  assert.equal(table.inflight, 2, "two on the wire");
  assert.equal(table.size, 4, "four waiting for an answer");
  cleanUp(table);
  await Promise.all(all);
});

test("a maxInflight below 1 is taken as 1: one request is always sent", async () => {
  const wire = new RecordingWire();
  const table = new RequestTable(wire, 0);
  const all = [1, 2].map((s) => outcome(table.add(1, s, "x", 0, undefined)));
  assert.deepEqual(wire.requested(), [1]);
  cleanUp(table);
  await Promise.all(all);
});

test("an answer resolves its request with the payload, frees its slot, and the oldest queued request goes out after the current turn", async () => {
  const wire = new RecordingWire();
  const table = new RequestTable(wire, 1);
  const first = outcome(table.add(1, 1, "a", 0, undefined));
  const second = outcome(table.add(1, 2, "b", 0, undefined));
  const third = outcome(table.add(1, 3, "c", 0, undefined));
  table.answer(1, Buffer.from("A"));
  assert.equal(table.inflight, 0, "the slot is free at once");
  assert.deepEqual(wire.requested(), [1], "the queued request waits for the end of the turn");
  await tick();
  assert.deepEqual(wire.requested(), [1, 2], "then the oldest queued one is sent, and only it");
  assert.equal(table.inflight, 1);
  assert.deepEqual(await first, { value: "A" });
  table.answer(2, Buffer.from("B"));
  await tick();
  table.answer(3, Buffer.from("C"));
  assert.deepEqual(await second, { value: "B" });
  assert.deepEqual(await third, { value: "C" });
  assert.deepEqual(wire.requested(), [1, 2, 3]);
  assert.equal(table.size, 0);
  assert.equal(table.inflight, 0);
});

test("an answer for a stream that is not pending (unknown, already answered or cancelled) is ignored", async () => {
  const wire = new RecordingWire();
  const table = new RequestTable(wire, 4);
  const ac = new AbortController();
  const cancelled = outcome(table.add(1, 1, "a", 0, ac.signal));
  const answered = outcome(table.add(1, 2, "b", 0, undefined));
  const open = outcome(table.add(1, 3, "c", 0, undefined));
  ac.abort(new Error("gave up"));
  table.answer(2, Buffer.from("first"));
  table.answer(2, Buffer.from("second"));
  table.fail(2, new Error("late error"));
  table.answer(1, Buffer.from("late answer"));
  table.answer(99, Buffer.from("nobody asked"));
  assert.equal(table.size, 1, "only stream 3 is still pending");
  assert.equal(table.inflight, 1);
  assert.equal(((await cancelled) as { error: Error }).error.message, "gave up");
  assert.deepEqual(await answered, { value: "first" });
  assert.equal(await state(open), "pending", "stream 3 is not touched by answers for other streams");
  table.answer(3, Buffer.from("C"));
  assert.deepEqual(await open, { value: "C" });
});

test("fail() rejects the request of that stream with the server's error object, unchanged (a refused stream stays a RequestRefusedError)", async () => {
  const wire = new RecordingWire();
  const table = new RequestTable(wire, 1);
  const refused = outcome(table.add(1, 1, "a", 0, undefined));
  const next = outcome(table.add(1, 2, "b", 0, undefined));
  const err = new RequestRefusedError("refused stream");
  table.fail(1, err);
  const got = await refused;
  assert.ok("error" in got);
  assert.equal(got.error, err, "the very error the session decoded");
  await tick();
  assert.deepEqual(wire.requested(), [1, 2], "the failed request's slot goes to the queued one");
  assert.equal(wire.log.filter((l) => l.startsWith("CANCEL")).length, 0, "the server ended it: no CANCEL");
  table.answer(2, Buffer.from("B"));
  assert.deepEqual(await next, { value: "B" });
});

test("aborting a sent request rejects it with the signal's reason, sends CANCEL for it, and gives its slot to the next queued request", async () => {
  const wire = new RecordingWire();
  const table = new RequestTable(wire, 1);
  const ac = new AbortController();
  const sent = outcome(table.add(3, 1, "a", 0, ac.signal));
  const queued = outcome(table.add(3, 2, "b", 0, undefined));
  const reason = new Error("the application gave up");
  ac.abort(reason);
  const got = await sent;
  assert.ok("error" in got);
  assert.equal(got.error, reason);
  assert.deepEqual(wire.log, ["REQUEST 3/1 a", "CANCEL 3/1", "REQUEST 3/2 b"]);
  assert.equal(table.inflight, 1);
  table.answer(2, Buffer.from("B"));
  assert.deepEqual(await queued, { value: "B" });
});

test("aborting a queued request rejects it without a CANCEL, and it is never sent", async () => {
  const wire = new RecordingWire();
  const table = new RequestTable(wire, 1);
  const ac = new AbortController();
  const first = outcome(table.add(1, 1, "a", 0, undefined));
  const queued = outcome(table.add(1, 2, "b", 0, ac.signal));
  ac.abort(new Error("never mind"));
  assert.equal(((await queued) as { error: Error }).error.message, "never mind");
  table.answer(1, Buffer.from("A"));
  await tick();
  assert.deepEqual(wire.log, ["REQUEST 1/1 a"], "no CANCEL for a stream the server never saw, and no REQUEST for it later");
  assert.deepEqual(await first, { value: "A" });
  assert.equal(table.size, 0);
});

test("an already-aborted signal rejects at once with its reason: nothing is sent and nothing is pending", async () => {
  const wire = new RecordingWire();
  const table = new RequestTable(wire, 4);
  const reason = new Error("too late");
  const got = await outcome(table.add(1, 1, "a", 0, AbortSignal.abort(reason)));
  assert.ok("error" in got);
  assert.equal(got.error, reason);
  assert.deepEqual(wire.log, []);
  assert.equal(table.size, 0);
  assert.equal(table.inflight, 0);
});

test("an abort reason that is not an Error rejects with Error('aborted')", async () => {
  const wire = new RecordingWire();
  const table = new RequestTable(wire, 4);
  const ac = new AbortController();
  const sent = outcome(table.add(1, 1, "a", 0, ac.signal));
  ac.abort("just a string");
  const got = await sent;
  assert.ok("error" in got);
  assert.ok(got.error instanceof Error);
  assert.equal(got.error.message, "aborted");
  const pre = await outcome(table.add(1, 2, "b", 0, AbortSignal.abort(42)));
  assert.ok("error" in pre);
  assert.equal(pre.error.message, "aborted");
});

test("one abort that cancels several requests does not hand a freed slot to a queued request it cancels too", async () => {
  const wire = new RecordingWire();
  const table = new RequestTable(wire, 2);
  const ac = new AbortController();
  const cancelled = [1, 2, 3].map((s) => outcome(table.add(1, s, `p${s}`, 0, ac.signal)));
  const survivor = outcome(table.add(1, 4, "p4", 0, undefined));
  ac.abort(new Error("all of them"));
  for (const c of await Promise.all(cancelled)) assert.equal((c as { error: Error }).error.message, "all of them");
  assert.deepEqual(wire.log, ["REQUEST 1/1 p1", "REQUEST 1/2 p2", "CANCEL 1/1", "CANCEL 1/2", "REQUEST 1/4 p4"]);
  assert.equal(table.inflight, 1);
  table.answer(4, Buffer.from("D"));
  assert.deepEqual(await survivor, { value: "D" });
});

test("a request that settles another way detaches its abort listener: a later abort sends no CANCEL", async () => {
  const wire = new RecordingWire();
  const table = new RequestTable(wire, 4);
  const ac = new AbortController();
  const p = outcome(table.add(1, 1, "a", 0, ac.signal));
  assert.equal(getEventListeners(ac.signal, "abort").length, 1);
  table.answer(1, Buffer.from("A"));
  assert.equal(getEventListeners(ac.signal, "abort").length, 0, "the listener is removed on settle");
  ac.abort();
  assert.deepEqual(await p, { value: "A" });
  assert.deepEqual(wire.log, ["REQUEST 1/1 a"]);
});

test("a sent request past its deadline is rejected with PERILINK_REQUEST_TIMEOUT, CANCEL is sent and the session is told to look at the line", async () => {
  const wire = new RecordingWire();
  const table = new RequestTable(wire, 1);
  const started = performance.now();
  const late = outcome(table.add(2, 1, "slow", 40, undefined));
  const queued = outcome(table.add(2, 2, "next", 0, undefined));
  const got = await awaitAlive(late);
  const took = performance.now() - started;
  assert.ok("error" in got);
  assert.ok(got.error instanceof TimeoutError);
  assert.equal((got.error as TimeoutError).code, "PERILINK_REQUEST_TIMEOUT");
  assert.ok(took >= 39, `not before its deadline (${took.toFixed(0)} ms)`);
  assert.ok(took < 1000, `within a sweep or two of it (${took.toFixed(0)} ms)`);
  assert.equal(wire.timeouts, 1);
  await tick();
  assert.deepEqual(wire.log, ["REQUEST 2/1 slow", "CANCEL 2/1", "REQUEST 2/2 next"], "its slot goes to the queued request");
  table.answer(2, Buffer.from("N"));
  assert.deepEqual(await queued, { value: "N" });
});

test("a queued request past its deadline is rejected without a CANCEL and without telling the session", async () => {
  const wire = new RecordingWire();
  const table = new RequestTable(wire, 1);
  const hung = outcome(table.add(1, 1, "hung", 0, undefined));
  const late = outcome(table.add(1, 2, "queued", 40, undefined));
  const got = await awaitAlive(late);
  assert.ok("error" in got);
  assert.equal((got.error as TimeoutError).code, "PERILINK_REQUEST_TIMEOUT");
  assert.equal(wire.timeouts, 0, "nothing sent went unanswered: the line is not suspect");
  assert.deepEqual(wire.log, ["REQUEST 1/1 hung"]);
  assert.equal(await state(hung), "pending", "a request without a deadline waits on");
  table.answer(1, Buffer.from("H"));
  assert.deepEqual(await hung, { value: "H" });
});

test("a request without a deadline is not timed out", async () => {
  const wire = new RecordingWire();
  const table = new RequestTable(wire, 1);
  const p = outcome(table.add(1, 1, "a", 0, undefined));
  const withDeadline = outcome(table.add(1, 2, "b", 30, undefined)); // starts the sweep
  await awaitAlive(withDeadline);
  await sleep(150);
  assert.equal(await state(p), "pending");
  table.answer(1, Buffer.from("A"));
  assert.deepEqual(await p, { value: "A" });
});

test("failChannel fails every request of that channel, sent or queued, leaves other channels alone, and never sends the queued ones", async () => {
  const wire = new RecordingWire();
  const table = new RequestTable(wire, 2);
  const a1 = outcome(table.add(1, 1, "a1", 0, undefined));
  const b2 = outcome(table.add(2, 2, "b2", 0, undefined));
  const a3 = outcome(table.add(1, 3, "a3", 0, undefined));
  const b4 = outcome(table.add(2, 4, "b4", 0, undefined));
  const err = new SessionClosedError("channel closed");
  table.failChannel(1, () => err);
  for (const o of [await a1, await a3]) assert.equal((o as { error: Error }).error, err);
  await tick();
  assert.deepEqual(wire.requested(), [1, 2, 4], "stream 3 was failed while queued and is never sent");
  assert.equal(wire.log.filter((l) => l.startsWith("CANCEL")).length, 0, "the channel's close already tells the server");
  table.answer(2, Buffer.from("B2"));
  table.answer(4, Buffer.from("B4"));
  assert.deepEqual([await b2, await b4], [{ value: "B2" }, { value: "B4" }]);
});

test("failAbove fails the requests above a GOAWAY's mark, keeps those at or below it, and sends nothing more", async () => {
  const wire = new RecordingWire();
  const table = new RequestTable(wire, 3);
  const kept = [1, 2].map((s) => outcome(table.add(1, s, `p${s}`, 0, undefined)));
  const above = [3, 4, 5].map((s) => outcome(table.add(1, s, `p${s}`, 0, undefined)));
  const err = new RequestRefusedError("draining");
  table.failAbove(2, err);
  for (const o of await Promise.all(above)) assert.equal((o as { error: Error }).error, err);
  assert.equal(table.size, 2);
  const after = outcome(table.add(1, 6, "p6", 0, undefined));
  table.answer(1, Buffer.from("A"));
  await tick();
  assert.deepEqual(wire.requested(), [1, 2, 3], "neither the queued stream 4 nor a new one is sent after the GOAWAY");
  table.answer(2, Buffer.from("B"));
  assert.deepEqual(await Promise.all(kept), [{ value: "A" }, { value: "B" }]);
  assert.equal(await state(after), "pending");
  cleanUp(table);
  await after;
});

test("failAll fails every request with the error chosen for it, telling whether each was on the wire or still queued", async () => {
  const wire = new RecordingWire();
  const table = new RequestTable(wire, 2);
  const ps = [1, 2, 3, 4].map((s) => outcome(table.add(1, s, `p${s}`, 0, undefined)));
  table.answer(1, Buffer.from("A")); // stream 3 takes the freed slot after this turn
  await tick();
  const asked: [number, boolean][] = [];
  const errors = new Map<number, Error>();
  table.failAll((stream, sent) => {
    asked.push([stream, sent]);
    const e = sent ? new SessionClosedError(`in flight ${stream}`) : new RequestRefusedError(`unsent ${stream}`);
    errors.set(stream, e);
    return e;
  });
  assert.deepEqual(
    asked.sort((x, y) => x[0] - y[0]),
    [
      [2, true],
      [3, true],
      [4, false],
    ],
  );
  const got = await Promise.all(ps);
  assert.deepEqual(got[0], { value: "A" });
  for (const s of [2, 3, 4]) assert.equal((got[s - 1] as { error: Error }).error, errors.get(s));
  assert.equal(table.size, 0);
  assert.equal(table.inflight, 0);
  await tick();
  assert.deepEqual(wire.requested(), [1, 2, 3], "nothing is sent after the session is gone");
});

test("whenIdle resolves at once with nothing pending, and otherwise once the last request settles, whichever way", async () => {
  const wire = new RecordingWire();
  const table = new RequestTable(wire, 1);
  assert.equal(await state(table.whenIdle()), "settled");
  const ac = new AbortController();
  const ps = [outcome(table.add(1, 1, "a", 0, undefined)), outcome(table.add(1, 2, "b", 0, ac.signal)), outcome(table.add(1, 3, "c", 40, undefined))];
  const idle = table.whenIdle();
  const idle2 = table.whenIdle();
  table.answer(1, Buffer.from("A"));
  assert.equal(await state(idle), "pending");
  ac.abort();
  assert.equal(await state(idle), "pending", "stream 3 still waits");
  await awaitAlive(ps[2]!); // its deadline
  assert.equal(await state(idle), "settled");
  assert.equal(await state(idle2), "settled");
  await Promise.all(ps);
});

// Protocol §4.1: "Each REQUEST MUST carry a stream id strictly greater than every stream id of
// an earlier REQUEST on the same session"; the server closes the session with ProtocolError
// otherwise. A request added in the turn that freed a slot is sent at once, ahead of an older
// request still in the queue (whose pump is deferred to a microtask).
test("sends requests in stream-id order: one added in the turn a slot is freed does not overtake an older queued request", async () => {
  const wire = new RecordingWire();
  const table = new RequestTable(wire, 1);
  const ac = new AbortController();
  const first = outcome(table.add(1, 1, "a", 0, ac.signal));
  const queued = outcome(table.add(1, 2, "b", 0, undefined));
  ac.abort(new Error("cancel, then ask again"));
  const next = outcome(table.add(1, 3, "c", 0, undefined));
  await tick();
  table.answer(wire.requested().at(-1)!, Buffer.from("1st answer"));
  await tick();
  table.answer(wire.requested().at(-1)!, Buffer.from("2nd answer"));
  await Promise.all([first, queued, next]);
  assert.deepEqual(wire.requested(), [1, 2, 3], "REQUEST frames must go out with increasing stream ids");
});
