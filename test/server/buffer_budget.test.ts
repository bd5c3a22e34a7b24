import assert from "node:assert/strict";
import { test } from "node:test";
import { BufferBudget, type BudgetHolder } from "../../src/server/buffer_budget.ts";

/** How often the budget looks again on its own (buffer_budget.ts RECHECK_MS). */
const RECHECK_MS = 50;

/**
 * A session as the budget sees it, kept the way SessionFlow keeps itself: `charged` is what it
 * last reported, `held` what it holds now (output drains without telling anyone, so the two may
 * differ until the budget asks again).
 */
class Holder implements BudgetHolder {
  held = 0;
  charged = 0;
  recharges = 0;
  wakes = 0;
  /** Runs on each wake (a session looks again: asks for its memory again, or checks mustWait). */
  onWake: (() => void) | null = null;
  #wakeWaiters: (() => void)[] = [];
  constructor(
    readonly name: string,
    readonly budget: () => BufferBudget,
  ) {}

  recharge(): number {
    this.recharges++;
    this.budget().charge(this.charged, this.held);
    this.charged = this.held;
    return this.held;
  }

  wake(): void {
    this.wakes++;
    this.onWake?.();
    const w = this.#wakeWaiters;
    this.#wakeWaiters = [];
    for (const r of w) r();
  }

  /** Holds `bytes` and reports it (a charge as a session makes one on update). */
  hold(bytes: number): void {
    this.held = bytes;
    this.budget().charge(this.charged, bytes);
    this.charged = bytes;
  }

  /** What SessionFlow.reserve does: asks, and on a grant holds and counts the bytes as charged. */
  reserve(bytes: number): boolean {
    if (!this.budget().reserve(this, bytes)) return false;
    this.held += bytes;
    this.charged += bytes;
    return true;
  }

  /** Resolves on the next wake; rejects after `ms` (real time) without one. */
  nextWake(ms = 2000): Promise<void> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${this.name} was not woken within ${ms} ms`)), ms);
      this.#wakeWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}

interface Fixture {
  budget: BufferBudget;
  holders: Holder[];
  /** Moves the budget's clock (what RECHECK_MS is measured on). */
  advance(ms: number): void;
}

/** A budget over `names.length` holders, on a hand-driven clock. */
function fixture(limit: number, ...names: string[]): Fixture {
  let now = 1_000_000;
  const holders: Holder[] = [];
  const budget = new BufferBudget(
    limit,
    () => holders,
    () => holders.length,
    () => now,
  );
  for (const n of names) holders.push(new Holder(n, () => budget));
  return { budget, holders, advance: (ms) => (now += ms) };
}

function two(limit: number): Fixture & { a: Holder; b: Holder } {
  const f = fixture(limit, "a", "b");
  return { ...f, a: f.holders[0]!, b: f.holders[1]! };
}

function three(limit: number): Fixture & { a: Holder; b: Holder; c: Holder } {
  const f = fixture(limit, "a", "b", "c");
  return { ...f, a: f.holders[0]!, b: f.holders[1]!, c: f.holders[2]! };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Releases everyone, so that the budget's recheck timer stops at its next turn. */
function releaseAll(f: Fixture): void {
  for (const h of f.holders) {
    f.budget.release(h, h.charged);
    h.charged = 0;
    h.held = 0;
  }
}

test("charge replaces a holder's previous figure: the total is the sum of what each reported last", () => {
  const budget = new BufferBudget(1000, () => [], () => 0);
  budget.charge(0, 100);
  budget.charge(0, 50);
  budget.charge(100, 30); // the first holder now holds 30
  assert.equal(budget.refresh(), 80);
  assert.equal(budget.limit, 1000);
});

test("refresh asks every holder once what it holds now and returns the new total", () => {
  const { budget, a, b } = two(1000);
  a.hold(700);
  b.hold(200);
  a.held = 100; // drained since: the charge is stale
  assert.equal(budget.refresh(), 300);
  assert.equal(a.recharges, 1);
  assert.equal(b.recharges, 1);
});

test("over() is false at the limit and asks no one", () => {
  const { budget, a, b } = two(1000);
  a.hold(600);
  b.hold(400);
  assert.equal(budget.over(), false);
  assert.equal(a.recharges + b.recharges, 0);
});

test("over() past the limit asks the holders afresh first: a stale charge from drained output does not count", () => {
  const { budget, a, b } = two(1000);
  a.hold(1500);
  a.held = 0; // its output drained without an event
  assert.equal(budget.over(), false);
  assert.equal(a.recharges, 1);
  assert.equal(b.wakes + a.wakes, 0);
});

test("over() asks the holders afresh at most once per 50 ms", () => {
  const { budget, a, advance } = two(1000);
  a.hold(1500);
  assert.equal(budget.over(), true);
  assert.equal(a.recharges, 2, "asked once for the total and once for the share check");
  a.held = 0;
  assert.equal(budget.over(), true, "within 50 ms the stale figure stands");
  advance(RECHECK_MS - 1);
  assert.equal(budget.over(), true);
  assert.equal(a.recharges, 2);
  advance(1);
  assert.equal(budget.over(), false, "50 ms on it asks again");
  assert.equal(a.recharges, 3);
});

test("past the limit after a fresh look, each holder over its share (limit ÷ holders) is told to look again; the light ones are not", () => {
  const f = three(900); // share 300
  const { budget, a, b, c } = f;
  a.hold(600);
  b.hold(301);
  c.hold(100);
  assert.equal(budget.over(), true);
  assert.equal(a.wakes, 1);
  assert.equal(b.wakes, 1);
  assert.equal(c.wakes, 0, "under its share: not touched");
  releaseAll(f);
});

test("a holder that waits already is not woken by the share check again", () => {
  const f = three(900);
  const { budget, a, b } = f;
  a.hold(600);
  b.hold(400);
  assert.equal(budget.mustWait(a, 600), true);
  const aBefore = a.wakes;
  const bBefore = b.wakes;
  f.advance(RECHECK_MS);
  assert.equal(budget.over(), true);
  assert.equal(a.wakes, aBefore, "waiting: left alone");
  assert.equal(b.wakes, bBefore + 1, "over its share, not waiting: told again");
  releaseAll(f);
});

test("mustWait is false for a holder that holds nothing, or no more than its share, however far over the budget is", () => {
  const { budget, a, b } = two(1000); // share 500
  a.hold(5000);
  b.hold(500);
  assert.equal(budget.over(), true);
  assert.equal(budget.mustWait(b, 0), false);
  assert.equal(budget.mustWait(b, 500), false);
  assert.equal(budget.mustWait(b, 501), true);
  assert.equal(budget.mustWait(b, 500), false, "back under its share: no longer waits");
});

test("mustWait is false for a holder over its share while the total is within the limit", () => {
  const { budget, a, b } = two(1000);
  a.hold(900);
  b.hold(100);
  assert.equal(budget.mustWait(a, 900), false);
});

test("a holder told to wait is woken once the total falls under the limit", async () => {
  const f = two(1000);
  const { budget, a, b } = f;
  a.hold(900);
  b.hold(300);
  assert.equal(budget.mustWait(a, 900), true);
  const woken = a.nextWake();
  a.held = 100; // its output drains; nobody tells the budget
  f.advance(RECHECK_MS);
  await woken;
  assert.equal(budget.refresh(), 400);
  assert.equal(b.wakes, 0);
});

test("a waiter is not woken while the total stays over the limit", async () => {
  const f = two(1000);
  const { budget, a, b } = f;
  a.hold(900);
  b.hold(300);
  assert.equal(budget.mustWait(a, 900), true);
  const wakesBefore = a.wakes;
  for (let i = 0; i < 3; i++) {
    f.advance(RECHECK_MS);
    await sleep(RECHECK_MS + 10);
  }
  assert.equal(a.wakes, wakesBefore, "still over: it waits on");
  assert.ok(a.recharges >= 2, "the budget kept looking");
  const woken = a.nextWake();
  b.held = 0;
  f.advance(RECHECK_MS);
  await woken;
});

test("a holder that no longer must wait is dropped from the waiters: room later does not wake it", async () => {
  const f = two(1000);
  const { budget, a, b } = f;
  a.hold(900);
  b.hold(300);
  assert.equal(budget.mustWait(a, 900), true);
  const before = a.wakes;
  a.hold(0);
  assert.equal(budget.mustWait(a, 0), false);
  f.advance(RECHECK_MS);
  await sleep(3 * RECHECK_MS);
  assert.equal(a.wakes, before);
});

test("reserve grants a frame's growth while it fits and charges it at once: 4 KiB first, then four times as much", () => {
  const { budget, a, b } = two(100 * 1024);
  assert.equal(a.reserve(4096), true);
  assert.equal(budget.refresh(), 4096, "charged with the grant, before any update");
  assert.equal(a.reserve(16384 - 4096), true);
  assert.equal(a.reserve(65536 - 16384), true);
  assert.equal(budget.refresh(), 65536);
  // Another frame's growth that fits is granted too: nobody has gone past the limit.
  assert.equal(b.reserve(4096), true);
  assert.equal(budget.refresh(), 65536 + 4096);
});

test("one holder may go past the limit by what its frame needs; another's reservation that does not fit then waits", () => {
  const f = two(100 * 1024);
  const { budget, a, b } = f;
  a.reserve(65536);
  assert.equal(a.reserve(262144 - 65536), true, "the growth past the limit is the overdraft");
  assert.equal(budget.refresh(), 262144);
  assert.equal(b.reserve(4096), false, "the overdraft is taken: b waits");
  assert.equal(a.reserve(1024 * 1024 - 262144), true, "the holder of the overdraft may grow on until its frame is whole");
  assert.equal(b.reserve(1), false);
  releaseAll(f);
});

test("frameDone ends the overdraft: another holder may then go past the limit", () => {
  const f = two(10_000);
  const { budget, a, b } = f;
  assert.equal(a.reserve(20_000), true);
  assert.equal(b.reserve(4096), false);
  budget.frameDone(b); // not b's to end
  assert.equal(b.reserve(4096), false, "frameDone of a holder without the overdraft changes nothing");
  budget.frameDone(a);
  assert.equal(b.reserve(4096), true, "a's frame is done: b may take the overdraft even though a's bytes are still held");
  assert.equal(a.reserve(1), false, "and now a waits for b");
  releaseAll(f);
});

test("release gives back the holder's bytes and ends its overdraft", () => {
  const f = two(10_000);
  const { budget, a, b } = f;
  a.reserve(20_000);
  budget.release(a, a.charged);
  a.charged = a.held = 0;
  assert.equal(budget.refresh(), 0);
  assert.equal(b.reserve(9_000), true, "fits");
  assert.equal(b.reserve(2_000), true, "past the limit: the overdraft is free again");
  releaseAll(f);
});

test("a reservation that does not fit on stale charges asks the holders afresh first, and is granted without the overdraft", () => {
  const f = three(100_000);
  const { a, b, c } = f;
  a.hold(90_000);
  a.held = 0; // a's output drained; its charge is stale
  f.advance(RECHECK_MS);
  assert.equal(b.reserve(50_000), true);
  assert.equal(a.recharges, 1, "asked afresh");
  assert.equal(c.reserve(60_000), true, "b fitted, so the overdraft was still free for c");
  releaseAll(f);
});

test("within 50 ms of the last look a reservation is judged on the charges as they stand", () => {
  const f = three(100_000);
  const { budget, a, b, c } = f;
  budget.refresh();
  a.hold(90_000);
  a.held = 0; // stale, but the budget looked less than 50 ms ago
  assert.equal(b.reserve(50_000), true, "granted as the overdraft");
  assert.equal(a.recharges, 1, "only the refresh above asked");
  assert.equal(c.reserve(60_000), false, "the overdraft is b's");
  releaseAll(f);
});

test("a refused reservation is woken once the total is under the limit, and granted when it asks again", async () => {
  const f = two(10_000);
  const { budget, a, b } = f;
  a.reserve(20_000);
  assert.equal(b.reserve(4096), false);
  let granted: boolean | null = null;
  b.onWake = () => (granted = b.reserve(4096));
  const woken = b.nextWake();
  budget.frameDone(a);
  budget.release(a, a.charged); // a's frame was delivered and its bytes freed
  a.charged = a.held = 0;
  await woken;
  assert.equal(granted, true);
  assert.equal(budget.refresh(), 4096);
  releaseAll(f);
});

test("a refused reservation is not woken while the total stays over the limit, even after the overdraft ends", async () => {
  const f = two(10_000);
  const { budget, a, b } = f;
  a.reserve(20_000);
  assert.equal(b.reserve(4096), false);
  budget.frameDone(a); // a's frame is whole, but a still holds its 20 000 bytes
  for (let i = 0; i < 2; i++) {
    f.advance(RECHECK_MS);
    await sleep(RECHECK_MS + 10);
  }
  assert.equal(b.wakes, 0);
  const woken = b.nextWake();
  a.held = 0; // delivered: the next look finds room
  f.advance(RECHECK_MS);
  await woken;
  releaseAll(f);
});

test("when there is room every waiter is woken; one refused again waits again and is woken at the next room", async () => {
  const f = three(10_000);
  const { budget, a, b, c } = f;
  a.reserve(20_000); // the overdraft
  assert.equal(b.reserve(12_000), false);
  assert.equal(c.reserve(4_000), false);
  const answers: string[] = [];
  b.onWake = () => answers.push(`b ${b.reserve(12_000)}`);
  c.onWake = () => answers.push(`c ${c.reserve(4_000)}`);
  const bothWoken = Promise.all([b.nextWake(), c.nextWake()]);
  budget.frameDone(a);
  budget.release(a, a.charged);
  a.charged = a.held = 0;
  await bothWoken;
  assert.deepEqual(answers, ["b true", "c false"], "b goes past the limit with the overdraft; c, woken next, must wait for b");
  const cAgain = c.nextWake();
  budget.frameDone(b);
  b.held = 0; // b's frame was delivered
  f.advance(RECHECK_MS);
  await cAgain;
  assert.deepEqual(answers, ["b true", "c false", "c true"]);
  releaseAll(f);
});

test("a waiter granted on its own is dropped from the waiters: room later does not wake it", async () => {
  const f = two(10_000);
  const { budget, a, b } = f;
  a.reserve(20_000);
  assert.equal(b.reserve(4096), false);
  budget.frameDone(a);
  budget.release(a, a.charged);
  a.charged = a.held = 0;
  assert.equal(b.reserve(4096), true, "asked again before the budget's own look, and fits");
  await sleep(3 * RECHECK_MS);
  assert.equal(b.wakes, 0);
  releaseAll(f);
});

test("release drops a holder from the waiters: a session gone is not woken", async () => {
  const f = two(10_000);
  const { budget, a, b } = f;
  a.reserve(20_000);
  assert.equal(b.reserve(4096), false);
  budget.release(b, b.charged);
  budget.frameDone(a);
  budget.release(a, a.charged);
  a.charged = a.held = 0;
  await sleep(3 * RECHECK_MS);
  assert.equal(b.wakes, 0);
});
