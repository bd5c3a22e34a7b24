import assert from "node:assert/strict";
import { test } from "node:test";
import { GroupStates } from "../../src/group/group_states.ts";
import type { ManagerToWorker } from "../../src/group/group_protocol.ts";
import type { Worker } from "../../src/group/worker_pool.ts";
import type { AppStates } from "../../src/handoff/handoff_protocol.ts";
import { createLogger } from "../../src/logger.ts";
import { MAX_HANDOFF_STATE_BYTES } from "../../src/server/app_handoff.ts";

/** A service process as the manager sees it, faked: what it was sent; `fail` makes sends fail. */
function worker(slot: number, state: Worker["state"] = "ready"): Worker & { sent: ManagerToWorker[]; fail: boolean } {
  const w = {
    slot,
    state,
    pid: 1000 + slot,
    sent: [] as ManagerToWorker[],
    fail: false,
    child: {
      connected: true,
      send(msg: ManagerToWorker, cb: (err: Error | null) => void) {
        w.sent.push(msg);
        queueMicrotask(() => cb(w.fail ? new Error("EPIPE") : null));
        return true;
      },
    },
  };
  return w as unknown as Worker & { sent: ManagerToWorker[]; fail: boolean };
}

function logs(): { log: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger("info", (s: string) => void lines.push(s)), lines };
}

const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 5));

test("a new group's processes started while it starts are offered their slot's state, each slot once; the old generation is asked once; after close() no more offers", async () => {
  let asked = 0;
  const states = new GroupStates(async () => (asked++, { state: "s0", states: ["s0", "s1"] }), logs().log);
  assert.equal(states.offer(0), true);
  assert.equal(states.offer(1), true);
  const w0 = worker(0, "starting");
  const w1 = worker(1, "starting");
  await states.answer(w0);
  await states.answer(w1);
  await tick();
  assert.deepEqual([w0.sent, w1.sent], [[{ t: "state", text: "s0" }], [{ t: "state", text: "s1" }]]);
  assert.equal(asked, 1, "the old generation is asked once for all slots");
  assert.equal(states.offer(0), false, "a slot's state goes to one process: a restart starts without");
  const again = worker(0, "starting");
  await states.answer(again);
  assert.deepEqual(again.sent, [{ t: "state", text: null }], "a process that was not offered one gets none");
  states.close();
  assert.equal(states.offer(2), false, "once the group started, a process added later starts without");
});

test("a state that did not reach its process (the send failed) is offered to the slot's next process; an old single process's state goes to every slot", async () => {
  const states = new GroupStates(async () => ({ state: "one" }) satisfies AppStates, logs().log);
  states.offer(0);
  const lost = worker(0, "starting");
  lost.fail = true;
  await states.answer(lost);
  await tick();
  assert.equal(states.offer(0), true, "offered again");
  const next = worker(0, "starting");
  await states.answer(next);
  states.offer(3);
  const other = worker(3, "starting");
  await states.answer(other);
  assert.deepEqual([next.sent, other.sent], [[{ t: "state", text: "one" }], [{ t: "state", text: "one" }]]);
});

test("offers made before close() hold while those processes start; what was offered but not given is still handed on by collect() while the group starts", async () => {
  const states = new GroupStates(async () => ({ state: "a0", states: ["a0", "a1", "a2"] }), logs().log, 50);
  states.offer(0);
  states.offer(1);
  const w0 = worker(0);
  await states.answer(w0); // slot 0 given; slots 1 and 2 not (a rolling start has not started them)
  const answering = states.collect([w0]);
  await tick();
  assert.deepEqual(w0.sent.at(-1), { t: "state-request" });
  states.answered(w0, "b0");
  assert.deepEqual(await answering, { state: "b0", states: ["b0", "a1", "a2"] }, "slots not started yet pass on what they inherited");
  states.close();
  const late = worker(1, "starting");
  await states.answer(late);
  assert.deepEqual(late.sent, [{ t: "state", text: "a1" }], "an offer made before close() is still answered");
  assert.deepEqual(await states.collect([]), { state: null, states: [] }, "after close() nothing inherited is handed on");
});

test("collect(): asks every ready process at once; one that does not answer within its time, that exits, or that answers with too much passes none; two at once both get the answers", async () => {
  const { log, lines } = logs();
  const states = new GroupStates(null, log, 40);
  const ready = [worker(0), worker(1), worker(2), worker(3)];
  const starting = worker(4, "starting");
  const a = states.collect([...ready, starting]);
  const b = states.collect(ready.slice(0, 1));
  await tick();
  assert.deepEqual(starting.sent, [], "a process still starting is not asked");
  states.answered(ready[0]!, "x");
  states.exited(ready[1]!);
  states.answered(ready[2]!, "y".repeat(MAX_HANDOFF_STATE_BYTES + 1));
  // ready[3] never answers
  const t0 = Date.now();
  assert.deepEqual(await a, { state: "x", states: ["x", null, null, null] });
  assert.ok(Date.now() - t0 < 1000);
  assert.deepEqual(await b, { state: "x", states: ["x"] }, "the second ask got the same answer");
  assert.match(lines.join(""), /"app_state_refused"[^\n]*"slot":2/);
  assert.match(lines.join(""), /"app_state_unanswered"[^\n]*"slot":3/);
});
