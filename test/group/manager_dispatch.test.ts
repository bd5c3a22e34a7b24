import assert from "node:assert/strict";
import { test } from "node:test";
import { ManagerDispatch } from "../../src/group/manager_dispatch.ts";
import type { Worker, WorkerPool } from "../../src/group/worker_pool.ts";
import { silentLogger } from "../../src/logger.ts";
import type { RawConnection } from "../../src/runtime/raw_connections.ts";

/** A bare connection handle, faked: its peer's address and whether it was closed. */
function raw(address: string): RawConnection & { closed: number } {
  const c = { closed: 0, getpeername: (out: { address?: string }) => ((out.address = address), 0), close: () => void c.closed++ };
  return c as unknown as RawConnection & { closed: number };
}

/** A service process whose sends call back only when `flush()` says so (Node holds a handle until the one before was acknowledged). */
function worker(slot: number): Worker & { got: unknown[]; flush(err?: Error | null): void } {
  const pending: ((err: Error | null) => void)[] = [];
  const w = {
    slot,
    state: "ready",
    conns: 0,
    got: [] as unknown[],
    child: {
      connected: true,
      send(_msg: unknown, handle: unknown, _opts: unknown, cb: (err: Error | null) => void) {
        w.got.push(handle);
        pending.push(cb);
        return true;
      },
    },
    flush(err: Error | null = null) {
      for (const cb of pending.splice(0)) cb(err);
    },
  };
  return w as unknown as Worker & { got: unknown[]; flush(err?: Error | null): void };
}

function pool(workers: Worker[]): WorkerPool {
  return { freest: () => workers.find((w) => w.child.connected) ?? null, grow() {} } as unknown as WorkerPool;
}

test("a bare handle is closed here once its send called back; handles still on their way to a process that exits go to another one, counted again for their peer", () => {
  const a = worker(0);
  const b = worker(1);
  (b.child as { connected: boolean }).connected = false; // not ready yet: everything goes to a
  const d = new ManagerDispatch(pool([a, b]), 64, silentLogger, { maxSessionsPerPeer: 8, queueWaitMs: 5000 });
  const c1 = raw("10.0.0.1");
  d.accept(c1);
  a.flush();
  assert.equal(c1.closed, 1, "our copy of a delivered handle is closed");
  const c2 = raw("10.0.0.1");
  const c3 = raw("10.0.0.2");
  d.accept(c2);
  d.accept(c3);
  assert.deepEqual(a.got, [c1, c2, c3]);
  assert.equal(d.heldBy("10.0.0.1"), 2);
  // a dies with c2 and c3 still on their way (their callbacks never come), b is ready.
  (a.child as { connected: boolean }).connected = false;
  (b.child as { connected: boolean }).connected = true;
  d.exited(a);
  assert.equal(d.heldBy("10.0.0.1"), 1, "c1 went with a; c2 is counted again while it waits");
  assert.equal(d.queued, 2);
  d.pump();
  assert.deepEqual(b.got, [c2, c3], "the other process gets them, in order");
  a.flush(); // a late callback from the dead channel is ignored
  assert.equal(c2.closed + c3.closed, 0, "not closed by the dead process's late callbacks");
  b.flush();
  assert.deepEqual([c2.closed, c3.closed], [1, 1], "closed once the other process has them");
});
