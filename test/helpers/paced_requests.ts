/**
 * Echo requests on a link (idempotent unless told otherwise), one every `everyMs`, each on its own
 * (not waiting for the previous one), for a bounded time; then waits a
 * bounded time for the stragglers. Every request's start, end and outcome
 * is recorded, so a test can say when requests flowed and which failed.
 */
import type { Link } from "../../src/client/link.ts";
import { sleep } from "./fixtures.ts";

export interface PacedRecord {
  id: number;
  startedAt: number;
  endedAt: number | null;
  error: string | null;
}

export interface PacedRun {
  records: PacedRecord[];
  /** Stops sending, waits up to `settleMs` for outstanding requests; those still open stay `endedAt: null`. */
  stop(settleMs: number): Promise<PacedRecord[]>;
}

export function pacedRequests(link: Link, opts: { everyMs: number; maxMs: number; timeoutMs?: number; idempotent?: boolean }): PacedRun {
  const records: PacedRecord[] = [];
  const inflight = new Set<Promise<void>>();
  let stopping = false;
  const end = Date.now() + opts.maxMs;
  const loop = (async () => {
    for (let id = 0; !stopping && Date.now() < end; id++) {
      const r: PacedRecord = { id, startedAt: Date.now(), endedAt: null, error: null };
      records.push(r);
      const body = `req-${id}`;
      const p = link
        .request(body, { idempotent: opts.idempotent ?? true, ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }) })
        .then(
          (reply) => {
            if (reply.toString() !== body) r.error = `wrong answer ${reply.toString()}`;
          },
          (err: Error & { code?: string }) => {
            r.error = `${err.code ?? err.name}: ${err.message}`;
          },
        )
        .finally(() => {
          r.endedAt = Date.now();
          inflight.delete(p);
        });
      inflight.add(p);
      await sleep(opts.everyMs);
    }
  })();
  return {
    records,
    async stop(settleMs) {
      stopping = true;
      await loop;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([Promise.all([...inflight]), new Promise((r) => (timer = setTimeout(r, settleMs)))]);
      clearTimeout(timer);
      return records;
    },
  };
}

/** One line per request that failed or never finished, for an assertion message. */
export function describeFailures(records: PacedRecord[]): string[] {
  return records.filter((r) => r.error !== null || r.endedAt === null).map((r) => `#${r.id}: ${r.endedAt === null ? "never finished" : r.error}`);
}
