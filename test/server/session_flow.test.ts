import assert from "node:assert/strict";
import type net from "node:net";
import { test } from "node:test";
import type { FrameDecoder } from "../../src/protocol/frame_decoder.ts";
import type { FrameWriter } from "../../src/protocol/frame_writer.ts";
import { BufferBudget } from "../../src/server/buffer_budget.ts";
import { DEFAULT_SERVER_LIMITS, type ServerLimits } from "../../src/server/limits.ts";
import { SessionFlow, type FlowSession } from "../../src/server/session_flow.ts";

/** The stall watch's period in these tests. */
const PERIOD_MS = 25;
/** The budget's own look again (buffer_budget.ts RECHECK_MS). */
const RECHECK_MS = 50;
const KiB = 1024;

/** The socket as SessionFlow reads it: what the kernel took, what waits, what arrived. */
class FakeSocket {
  writableLength = 0;
  /** Everything written to the socket, taken by the kernel or not (as net.Socket counts it). */
  bytesWritten = 0;
  bytesRead = 0;
  paused = false;
  log: string[];
  constructor(log: string[]) {
    this.log = log;
  }
  pause(): this {
    this.paused = true;
    this.log.push("socket.pause");
    return this;
  }
  resume(): this {
    this.paused = false;
    this.log.push("socket.resume");
    return this;
  }
  /** We queue `n` bytes that the kernel does not take yet. */
  queue(n: number): void {
    this.bytesWritten += n;
    this.writableLength += n;
  }
  /** The peer read: the kernel takes `n` queued bytes. */
  take(n: number): void {
    this.writableLength -= n;
  }
}

class FakeWriter {
  pending = 0;
  flushes = 0;
  /** Runs at each flush; SessionFlow flushes at the start of each stall check, so this marks the periods. */
  onFlush: (() => void) | null = null;
  #waiters: { n: number; resolve(): void }[] = [];
  flush(): void {
    this.flushes++;
    this.onFlush?.();
    for (const w of this.#waiters.filter((w) => this.flushes >= w.n)) w.resolve();
    this.#waiters = this.#waiters.filter((w) => this.flushes < w.n);
  }
  /** Resolves once `n` flushes happened in all (each after its stall check was decided). */
  flushed(n: number, ms = 3000): Promise<void> {
    if (this.flushes >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`only ${this.flushes} of ${n} stall checks within ${ms} ms`)), ms);
      this.#waiters.push({
        n,
        resolve: () => {
          clearTimeout(t);
          resolve();
        },
      });
    });
  }
}

/** The decoder's state as SessionFlow reads it; `onResume` plays what a real decoder does with held bytes. */
class FakeDecoder {
  buffered = 0;
  midFrame = false;
  frameRemaining = 0;
  paused = false;
  onResume: (() => void) | null = null;
  log: string[];
  constructor(log: string[]) {
    this.log = log;
  }
  get idle(): boolean {
    return !this.midFrame && this.buffered === 0;
  }
  pause(): void {
    this.paused = true;
    this.log.push("decoder.pause");
  }
  resume(): void {
    this.paused = false;
    this.log.push("decoder.resume");
    this.onResume?.();
  }
}

class FakeSession implements FlowSession {
  log: string[] = [];
  fakeSocket = new FakeSocket(this.log);
  fakeWriter = new FakeWriter();
  fakeDecoder: FakeDecoder | null = new FakeDecoder(this.log);
  limits: ServerLimits;
  budget: BufferBudget;
  runningCount = 0;
  abandonedCount = 0;
  isClosed = false;
  stalls: { reason: string; heldBytes: number; atMs: number }[] = [];
  resumeErrors: unknown[] = [];
  readonly createdAt = performance.now();
  #stallWaiters: (() => void)[] = [];

  constructor(limits: Partial<ServerLimits>, budget: BufferBudget) {
    this.limits = { ...DEFAULT_SERVER_LIMITS, writeTimeoutMs: PERIOD_MS, ...limits };
    this.budget = budget;
  }
  get socket(): net.Socket {
    return this.fakeSocket as unknown as net.Socket;
  }
  get writer(): FrameWriter {
    return this.fakeWriter as unknown as FrameWriter;
  }
  decoder(): FrameDecoder | null {
    return this.fakeDecoder as unknown as FrameDecoder | null;
  }
  running(): number {
    return this.runningCount;
  }
  abandoned(): number {
    return this.abandonedCount;
  }
  closed(): boolean {
    return this.isClosed;
  }
  resumeFailed(err: unknown): void {
    this.resumeErrors.push(err);
  }
  stalled(reason: "write_timeout" | "read_timeout", heldBytes: number): void {
    this.stalls.push({ reason, heldBytes, atMs: performance.now() - this.createdAt });
    for (const w of this.#stallWaiters.splice(0)) w();
  }
  /** Resolves at the first stall report (at once if there is one already). */
  stalledOnce(ms = 3000): Promise<void> {
    if (this.stalls.length > 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no stall reported within ${ms} ms`)), ms);
      this.#stallWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }
  /** A frame of `size` payload bytes began: nothing of it has arrived beyond its header. */
  beginFrame(lacking: number): void {
    const d = this.fakeDecoder!;
    d.midFrame = true;
    d.frameRemaining = lacking;
  }
  /** `n` more bytes of the frame in progress arrive. */
  arrive(n: number): void {
    const d = this.fakeDecoder!;
    this.fakeSocket.bytesRead += n;
    d.frameRemaining -= n;
    d.buffered += n;
    if (d.frameRemaining === 0) d.midFrame = false;
  }
}

interface Rig {
  s: FakeSession;
  flow: SessionFlow;
  budget: BufferBudget;
  advance(ms: number): void;
}

/**
 * A real BufferBudget of `limit` bytes over the sessions that `join` it (count and holders as the
 * server gives them), on a hand-driven clock.
 */
function sharedBudget(limit: number): { budget: BufferBudget; join(limits?: Partial<ServerLimits>): { s: FakeSession; flow: SessionFlow }; advance(ms: number): void } {
  let now = 1_000_000;
  const holders: SessionFlow[] = [];
  const budget = new BufferBudget(
    limit,
    () => holders,
    () => holders.length,
    () => now,
  );
  const join = (limits: Partial<ServerLimits> = {}): { s: FakeSession; flow: SessionFlow } => {
    const s = new FakeSession({ maxInflightPerSession: 2, maxSessionOutputBytes: 1000, ...limits }, budget);
    const flow = new SessionFlow(s);
    holders.push(flow);
    return { s, flow };
  };
  return { budget, join, advance: (ms) => (now += ms) };
}

/** One session's flow control, alone on a budget of `budgetLimit`. */
function rig(limits: Partial<ServerLimits> = {}, budgetLimit = 1 << 30): Rig {
  const b = sharedBudget(budgetLimit);
  return { ...b.join(limits), budget: b.budget, advance: b.advance };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls until `cond` holds; keeps the event loop alive meanwhile (the code's timers are unref'd). */
async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

// ── whether to read ─────────────────────────────────────────────────────────

test("reads on while no more than maxInflightPerSession handlers owe an answer", () => {
  const { s, flow } = rig();
  s.runningCount = 2;
  flow.update();
  assert.deepEqual(s.log, []);
  flow.release();
});

test("pauses decoder and socket while more than maxInflightPerSession handlers owe an answer, and resumes once one answers", () => {
  const { s, flow } = rig();
  s.runningCount = 3;
  flow.update();
  assert.deepEqual(s.log, ["decoder.pause", "socket.pause"]);
  flow.update();
  assert.deepEqual(s.log, ["decoder.pause", "socket.pause"], "paused once, not again");
  s.runningCount = 2;
  flow.update();
  assert.deepEqual(s.log, ["decoder.pause", "socket.pause", "socket.resume", "decoder.resume"]);
  assert.equal(s.fakeSocket.paused, false);
  flow.release();
});

test("handlers already answered (cancelled) do not count against maxInflightPerSession", () => {
  const { s, flow } = rig();
  s.runningCount = 4;
  s.abandonedCount = 2;
  flow.update();
  assert.equal(s.fakeSocket.paused, false, "two owe an answer, two were answered: read on");
  s.abandonedCount = 1;
  flow.update();
  assert.equal(s.fakeSocket.paused, true, "three owe an answer");
  flow.release();
});

test("pauses while more than twice maxInflightPerSession handlers run, counting the cancelled ones", () => {
  const { s, flow } = rig();
  s.runningCount = 5;
  s.abandonedCount = 4; // one owes an answer
  flow.update();
  assert.equal(s.fakeSocket.paused, true, "5 > 2 × 2");
  s.runningCount = 4;
  s.abandonedCount = 3;
  flow.update();
  assert.equal(s.fakeSocket.paused, false, "4 = 2 × 2");
  flow.release();
});

test("pauses while the unsent output (socket buffer plus writer's pending) is over maxSessionOutputBytes, resumes when it drains", () => {
  const { s, flow } = rig({ writeTimeoutMs: 10_000 });
  s.fakeSocket.queue(600);
  s.fakeWriter.pending = 400;
  flow.update();
  assert.equal(s.fakeSocket.paused, false, "1000 bytes: at the limit, not over it");
  s.fakeWriter.pending = 401;
  flow.update();
  assert.equal(s.fakeSocket.paused, true);
  assert.equal(s.fakeDecoder!.paused, true);
  s.fakeSocket.take(600);
  flow.update(); // the socket's drain
  assert.equal(s.fakeSocket.paused, false);
  assert.equal(s.fakeDecoder!.paused, false);
  flow.release();
});

test("input the decoder holds does not count as output against maxSessionOutputBytes", () => {
  const { s, flow } = rig();
  s.fakeDecoder!.buffered = 5000;
  flow.update();
  assert.equal(s.fakeSocket.paused, false);
  flow.release();
});

test("flow control before the handshake is done (no decoder yet) pauses and resumes the socket alone", () => {
  const { s, flow } = rig({ writeTimeoutMs: 10_000 });
  s.fakeDecoder = null;
  s.fakeSocket.queue(2000);
  flow.update();
  assert.deepEqual(s.log, ["socket.pause"]);
  s.fakeSocket.take(2000);
  flow.update();
  assert.deepEqual(s.log, ["socket.pause", "socket.resume"]);
  flow.release();
});

test("charges what the session holds (unsent output and decoder's bytes) to the server's budget on each update, and release gives it back", () => {
  // A budget that asks nobody: refresh() then returns just the sum of the charges.
  const budget = new BufferBudget(1 << 30, () => [], () => 1);
  const s = new FakeSession({ maxSessionOutputBytes: 1 << 20, writeTimeoutMs: 10_000 }, budget);
  const flow = new SessionFlow(s);
  s.fakeSocket.queue(300);
  s.fakeWriter.pending = 200;
  s.fakeDecoder!.buffered = 50;
  flow.update();
  assert.equal(budget.refresh(), 550);
  s.fakeSocket.take(300);
  flow.update();
  assert.equal(budget.refresh(), 250, "the new figure replaces the old one");
  assert.equal(flow.recharge(), 250);
  flow.release();
  assert.equal(budget.refresh(), 0);
});

test("pauses a session over its share while the server is over maxBufferedBytes, and reads again once the budget finds room", async () => {
  const r = rig({ maxSessionOutputBytes: 1 << 20, writeTimeoutMs: 10_000 }, 1000);
  const { s, flow } = r;
  s.fakeSocket.queue(1500); // output the peer does not read yet
  flow.update();
  assert.equal(s.fakeSocket.paused, true, "holds 1500 of a 1000 budget");
  assert.equal(s.fakeDecoder!.paused, true);
  s.fakeSocket.take(1500); // the peer reads; no drain event reaches the flow here
  r.advance(RECHECK_MS);
  await until(() => !s.fakeSocket.paused, "the budget to wake the session");
  assert.equal(s.fakeDecoder!.paused, false);
  flow.release();
});

test("while the server is over budget only sessions over their share stop reading; the light ones read on", () => {
  const { join } = sharedBudget(1000);
  const { s: heavy, flow: heavyFlow } = join({ maxSessionOutputBytes: 1 << 20, writeTimeoutMs: 10_000 });
  const { s: light, flow: lightFlow } = join({ maxSessionOutputBytes: 1 << 20, writeTimeoutMs: 10_000 });
  heavy.fakeSocket.queue(900);
  light.fakeSocket.queue(300);
  lightFlow.update();
  heavyFlow.update();
  lightFlow.update();
  assert.equal(heavy.fakeSocket.paused, true, "900 > share 500 while 1200 > 1000");
  assert.equal(light.fakeSocket.paused, false, "300 < share 500");
  heavyFlow.release();
  lightFlow.release();
});

test("a session in the middle of a frame is not stopped for the budget's share rule", () => {
  const r = rig({ maxSessionOutputBytes: 1 << 20 }, 1000);
  const { s, flow } = r;
  s.beginFrame(100 * KiB);
  s.arrive(1500);
  flow.update();
  assert.equal(s.fakeSocket.paused, false, "the frame asks for its memory itself (reserve)");
  s.fakeDecoder!.midFrame = false; // between frames, holding the same 1500 bytes (held input)
  flow.update();
  assert.equal(s.fakeSocket.paused, true);
  flow.release();
});

test("a growth the budget refuses pauses the session until the budget wakes it; the decoder then asks again and reads on", async () => {
  const { join, advance } = sharedBudget(10_000);
  const { s: a, flow: aFlow } = join({});
  const { s: b, flow: bFlow } = join({});
  // a's frame goes past the budget: it holds the overdraft.
  a.beginFrame(20_000);
  assert.equal(aFlow.reserve(20_000), true);
  a.fakeDecoder!.buffered = 20_000;
  aFlow.update();
  // b's frame asks for 4 KiB and is refused; the decoder pauses itself and the session stops reading.
  b.beginFrame(4096);
  assert.equal(bFlow.reserve(4096), false);
  b.fakeDecoder!.paused = true;
  bFlow.update();
  assert.equal(b.fakeSocket.paused, true);
  let asked: boolean | null = null;
  b.fakeDecoder!.onResume = () => {
    asked = bFlow.reserve(4096); // what the decoder does with its held bytes
    if (!asked) b.fakeDecoder!.paused = true;
  };
  // a's frame arrives whole and is handed over: its memory goes back.
  a.arrive(20_000);
  aFlow.frameDone();
  a.fakeDecoder!.buffered = 0;
  aFlow.update();
  advance(RECHECK_MS);
  await until(() => asked !== null, "b to be woken");
  assert.equal(asked, true);
  assert.equal(b.fakeSocket.paused, false);
  assert.deepEqual(b.log, ["decoder.pause", "socket.pause", "socket.resume", "decoder.resume"]);
  aFlow.release();
  bFlow.release();
});

test("a growth refused again when woken pauses the socket again at once", async () => {
  const { join, advance } = sharedBudget(10_000);
  const { s: a, flow: aFlow } = join({ maxSessionOutputBytes: 1 << 20, writeTimeoutMs: 10_000 });
  const { s: b, flow: bFlow } = join({});
  // a holds 5 000 bytes of output and a frame in progress that took the overdraft with 7 000.
  a.fakeSocket.queue(5000);
  a.beginFrame(50_000);
  aFlow.update();
  assert.equal(aFlow.reserve(7000), true);
  a.arrive(7000);
  b.beginFrame(50_000);
  assert.equal(bFlow.reserve(4096), false);
  b.fakeDecoder!.paused = true;
  bFlow.update();
  const answers: boolean[] = [];
  b.fakeDecoder!.onResume = () => {
    const ok = bFlow.reserve(4096);
    answers.push(ok);
    if (!ok) b.fakeDecoder!.paused = true;
  };
  // a's output is read: 7 000 held, under the limit, so b is woken; 7 000 + 4 096 does not fit and a has the overdraft.
  a.fakeSocket.take(5000);
  advance(RECHECK_MS);
  await until(() => answers.length === 1, "b to be woken");
  assert.deepEqual(answers, [false]);
  assert.equal(b.fakeSocket.paused, true, "still waiting for memory: not read");
  assert.deepEqual(b.log, ["decoder.pause", "socket.pause", "socket.resume", "decoder.resume", "socket.pause"]);
  // a's frame completes: b is woken again and granted.
  a.arrive(43_000);
  aFlow.frameDone();
  a.fakeDecoder!.buffered = 0;
  aFlow.update();
  advance(RECHECK_MS);
  await until(() => answers.length === 2, "b to be woken again");
  assert.deepEqual(answers, [false, true]);
  assert.equal(b.fakeSocket.paused, false);
  aFlow.release();
  bFlow.release();
});

test("frameDone after a reserved frame ends the budget's overdraft; so does an update between frames", () => {
  const { join } = sharedBudget(10_000);
  const { s: a, flow: aFlow } = join();
  const { s: b, flow: bFlow } = join();
  assert.equal(aFlow.reserve(20_000), true);
  assert.equal(bFlow.reserve(1), false, "a holds the overdraft");
  aFlow.frameDone();
  assert.equal(bFlow.reserve(1), true, "a's frame is done: b may go past the limit");
  // b's frame ends without a frameDone; an update that finds no frame in progress ends it too.
  b.fakeDecoder!.midFrame = false;
  bFlow.update();
  a.beginFrame(5000);
  assert.equal(aFlow.reserve(1), true, "b's overdraft ended with its update");
  aFlow.release();
  bFlow.release();
});

test("a decoder that fails on resume is reported through resumeFailed", () => {
  const { s, flow } = rig();
  const boom = new Error("bad held bytes");
  s.fakeDecoder!.onResume = () => {
    throw boom;
  };
  s.runningCount = 3;
  flow.update();
  s.runningCount = 0;
  flow.update();
  assert.deepEqual(s.resumeErrors, [boom]);
  flow.release();
});

test("does nothing once the session is closed", () => {
  const { s, flow } = rig();
  s.isClosed = true;
  s.runningCount = 10;
  s.fakeSocket.queue(5000);
  flow.update();
  assert.deepEqual(s.log, []);
  assert.equal(flow.recharge(), 0);
  flow.release();
});

// ── the stall watch ─────────────────────────────────────────────────────────

test("reports write_timeout, with the bytes it holds, when queued output is not taken for writeTimeoutMs", async () => {
  const { s, flow } = rig();
  s.fakeSocket.queue(500);
  s.fakeDecoder!.buffered = 100;
  flow.update();
  await s.stalledOnce();
  assert.equal(s.stalls.length, 1);
  assert.equal(s.stalls[0]!.reason, "write_timeout");
  assert.equal(s.stalls[0]!.heldBytes, 600);
  assert.ok(s.stalls[0]!.atMs >= PERIOD_MS - 1, `not before writeTimeoutMs (${s.stalls[0]!.atMs.toFixed(1)} ms)`);
  assert.equal(s.fakeWriter.flushes, 1, "the writer is flushed before judging");
  await sleep(3 * PERIOD_MS);
  assert.equal(s.stalls.length, 1, "reported once");
  flow.release();
});

test("a session paused for its own output is still cut off when the peer reads nothing", async () => {
  const { s, flow } = rig();
  s.fakeSocket.queue(5000);
  flow.update();
  assert.equal(s.fakeSocket.paused, true);
  await s.stalledOnce();
  assert.equal(s.stalls[0]!.reason, "write_timeout");
  flow.release();
});

test("a peer that reads on is not cut off; the watch stops once all output is taken, and the next update starts it again", async () => {
  const { s, flow } = rig({ maxSessionOutputBytes: 1 << 20 });
  s.fakeSocket.queue(400);
  s.fakeWriter.onFlush = () => {
    if (s.fakeSocket.writableLength > 0) s.fakeSocket.take(100); // the peer read 100 bytes in the period
  };
  flow.update();
  await s.fakeWriter.flushed(4);
  assert.equal(s.fakeSocket.writableLength, 0);
  assert.equal(s.stalls.length, 0);
  await sleep(4 * PERIOD_MS);
  assert.equal(s.fakeWriter.flushes, 4, "nothing owed: nothing watched");
  s.fakeWriter.onFlush = null;
  s.fakeSocket.queue(200); // written without an update: nobody looks
  await sleep(3 * PERIOD_MS);
  assert.equal(s.stalls.length, 0);
  flow.update();
  await s.stalledOnce();
  assert.equal(s.stalls[0]!.reason, "write_timeout");
  assert.equal(s.stalls[0]!.heldBytes, 200);
  flow.release();
});

// The writer packs small frames and hands them to the socket at setImmediate (frame_writer.ts),
// after the update that follows an answer. Output that the flush leaves in the socket is not
// watched until some later update, and a peer that sends nothing more and reads nothing gets
// none: only the idle timeout (idleTimeoutMs, 120 s by default) ends it, not writeTimeoutMs.
test("output still packed in the writer at an update is watched: flushed and never read, it is cut off after writeTimeoutMs", async () => {
  const { s, flow } = rig();
  s.fakeWriter.pending = 500; // an answer, packed
  flow.update(); // the update after the answer
  // The writer's own flush at setImmediate: the kernel takes none of it (the peer does not read).
  await new Promise((r) => setImmediate(r));
  s.fakeWriter.pending = 0;
  s.fakeSocket.queue(500);
  try {
    await s.stalledOnce(8 * PERIOD_MS);
  } catch {
    // reported below
  }
  assert.deepEqual(
    s.stalls.map((x) => x.reason),
    ["write_timeout"],
    "500 bytes unread for 8 × writeTimeoutMs with no update in between",
  );
  flow.release();
});

test("release stops the watch: a closed session is not reported", async () => {
  const { s, flow } = rig();
  s.fakeSocket.queue(500);
  flow.update();
  flow.release();
  await sleep(3 * PERIOD_MS);
  assert.equal(s.stalls.length, 0);
  assert.equal(s.fakeWriter.flushes, 0);
});

test("a session that closes while watched is not reported", async () => {
  const { s, flow } = rig();
  s.fakeSocket.queue(500);
  flow.update();
  s.isClosed = true;
  await sleep(3 * PERIOD_MS);
  assert.equal(s.stalls.length, 0);
  flow.release();
});

test("reports read_timeout when a frame in progress gets less than 16 KiB in a period", async () => {
  const { s, flow } = rig();
  s.beginFrame(100 * KiB); // an eighth of what it lacks is below 16 KiB: 16 KiB it is
  s.fakeWriter.onFlush = () => s.arrive(16 * KiB - 1);
  flow.update();
  await s.stalledOnce();
  assert.equal(s.stalls[0]!.reason, "read_timeout");
  assert.equal(s.fakeWriter.flushes, 1, "cut off at the first period");
  flow.release();
});

test("a frame in progress that gets 16 KiB each period is not cut off until a period brings less", async () => {
  const { s, flow } = rig();
  s.beginFrame(100 * KiB);
  s.fakeWriter.onFlush = () => {
    if (s.fakeWriter.flushes <= 3) s.arrive(16 * KiB);
  };
  flow.update();
  await s.stalledOnce();
  assert.equal(s.stalls[0]!.reason, "read_timeout");
  assert.equal(s.fakeWriter.flushes, 4, "three periods with 16 KiB passed, the fourth with nothing did not");
  flow.release();
});

test("a large frame in progress must get about an eighth of what it lacks each period", async () => {
  // 2 MiB lacking: 256 KiB in a period is enough, 200 000 bytes are not (an eighth of what it
  // lacked before the period, or of what it lacks after it, alike).
  for (const [got, cutOff] of [
    [256 * KiB, false],
    [200_000, true],
  ] as const) {
    const { s, flow } = rig();
    s.beginFrame(2048 * KiB);
    s.fakeWriter.onFlush = () => {
      if (s.fakeWriter.flushes === 1) s.arrive(got);
    };
    flow.update();
    await s.fakeWriter.flushed(1);
    assert.equal(s.stalls.length > 0, cutOff, `${got} bytes in the period`);
    if (cutOff) assert.equal(s.stalls[0]!.reason, "read_timeout");
    flow.release();
  }
});

// The rule as the code applies it: the eighth (or the rest, under 16 KiB) is taken of what the
// frame still lacks when the period ends, not of what it lacked when it began.
test("the pace a frame owes is measured on what it still lacks at the period's end", async () => {
  for (const [lacking, got, cutOff] of [
    [9 * 128 * KiB, 128 * KiB, false], // leaves 1 MiB, whose eighth is 128 KiB
    [9 * 128 * KiB, 128 * KiB - 1, true],
    [10_000, 5_000, false], // leaves 5 000: under 16 KiB, the rest is what it owes
    [10_000, 4_999, true],
  ] as const) {
    const { s, flow } = rig();
    s.beginFrame(lacking);
    s.fakeWriter.onFlush = () => {
      if (s.fakeWriter.flushes === 1) s.arrive(got);
    };
    flow.update();
    await s.fakeWriter.flushed(1);
    assert.equal(s.stalls.length > 0, cutOff, `${got} of ${lacking} bytes in the period`);
    flow.release();
  }
});

test("a frame completed within the period ends the watch", async () => {
  const { s, flow } = rig();
  s.beginFrame(100);
  s.fakeWriter.onFlush = () => {
    if (s.fakeWriter.flushes === 1) s.arrive(100);
  };
  flow.update();
  await s.fakeWriter.flushed(1);
  assert.equal(s.stalls.length, 0);
  assert.equal(s.fakeDecoder!.midFrame, false);
  await sleep(3 * PERIOD_MS);
  assert.equal(s.fakeWriter.flushes, 1, "nothing owed, nothing watched");
  flow.release();
});

test("a frame that lacks less than 16 KiB is cut off when a period brings none of it", async () => {
  const { s, flow } = rig();
  s.beginFrame(10);
  flow.update();
  await s.stalledOnce();
  assert.equal(s.stalls[0]!.reason, "read_timeout");
  flow.release();
});

test("a frame in progress owes nothing while we stopped reading; the watch resumes with reading", async () => {
  const { s, flow } = rig();
  s.beginFrame(100 * KiB);
  s.runningCount = 3; // over maxInflightPerSession: we stopped reading
  flow.update();
  assert.equal(s.fakeSocket.paused, true);
  await sleep(4 * PERIOD_MS);
  assert.equal(s.stalls.length, 0);
  assert.equal(s.fakeWriter.flushes, 0, "not watched while paused");
  s.runningCount = 0;
  flow.update();
  await s.stalledOnce();
  assert.equal(s.stalls[0]!.reason, "read_timeout");
  flow.release();
});

test("a frame in progress that pauses for us mid-period is not judged on that period", async () => {
  const { s, flow } = rig();
  s.beginFrame(100 * KiB);
  flow.update(); // watched: the peer owes the frame
  s.runningCount = 3;
  flow.update(); // and now we stop reading
  await s.fakeWriter.flushed(1);
  assert.equal(s.stalls.length, 0);
  await sleep(3 * PERIOD_MS);
  assert.equal(s.fakeWriter.flushes, 1, "paused with no output queued: the watch stops");
  flow.release();
});
