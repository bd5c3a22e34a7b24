import type { Link, LinkRequestOptions } from "../client/link.ts";
import { TimeoutError } from "../errors.ts";
import { TARGET } from "../target.ts";

/** A request waiting in the agent for its process's share of a session's slots. */
interface Waiter {
  owner: object;
  grant: () => void;
  leave: (err: Error) => void;
}

/** One server's slots as the agent's processes hold them. */
interface Pool {
  /** The session's `maxInflight`, as the latest request named it. */
  limit: number;
  held: Map<object, number>;
  waiting: Waiter[];
}

/**
 * A server session's requests in flight (the server's `maxInflight`) shared
 * out between the processes that use it through the agent (docs/client.md,
 * "The host agent"). A process may hold at most its share: seven eighths of
 * the slots divided by the processes using them now, so that one process whose
 * requests hang never holds them all, a newcomer finds an eighth free at
 * once, and each process's share shrinks as others come and grows as they
 * go. Past its share a request waits here, in order, for one of its own to
 * end; the session's own queue never sees it, so stream ids still go out in
 * order.
 */
export class SlotShare {
  #pools = new Map<object, Pool>();

  /** The most `owner` may hold of `limit` slots with `users` processes using them. */
  static share(limit: number, users: number): number {
    return Math.max(1, Math.floor((limit - Math.ceil(limit / 8)) / Math.max(1, users)));
  }

  /**
   * A slot of `link`'s session for `owner`, waited for when past its share;
   * a wait comes off the request's deadline (`options.timeoutMs`, which is
   * then set to what is left). The server whose slot it holds, to release;
   * null before the session is known (nothing counted).
   */
  forLink(link: Link, owner: object, options: LinkRequestOptions): object | null | Promise<object> {
    const server = link.entry;
    const limit = server.active?.session.serverLimits.maxInflight;
    if (limit === undefined) return null;
    const timeoutMs = options.timeoutMs ?? TARGET.client.requestTimeoutMs;
    const wait = this.acquire(server, limit, owner, timeoutMs, options.signal);
    if (wait === null) return server; // the usual case, without a turn of the event loop
    const start = performance.now();
    return wait.then(() => {
      options.timeoutMs = Math.max(1, Math.round(timeoutMs - (performance.now() - start)));
      return server;
    });
  }

  /** Requests of `owner` holding a slot of `server`'s session. */
  held(server: object, owner: object): number {
    return this.#pools.get(server)?.held.get(owner) ?? 0;
  }

  /**
   * A slot of `server`'s session (of `limit` in all) for `owner`: at once
   * (null) when within its share, else a promise that settles when it is
   * granted, or rejects when `signal` aborts or `timeoutMs` passes first.
   */
  acquire(server: object, limit: number, owner: object, timeoutMs: number, signal?: AbortSignal): Promise<void> | null {
    let pool = this.#pools.get(server);
    if (pool === undefined) this.#pools.set(server, (pool = { limit, held: new Map(), waiting: [] }));
    pool.limit = limit;
    const mine = pool.held.get(owner) ?? 0;
    const users = this.#users(pool, owner);
    if (mine < SlotShare.share(limit, users) && !pool.waiting.some((w) => w.owner === owner)) {
      pool.held.set(owner, mine + 1);
      return null;
    }
    return new Promise<void>((resolve, reject) => {
      const leave = (err: Error): void => {
        const i = pool.waiting.indexOf(waiter);
        if (i >= 0) pool.waiting.splice(i, 1);
        signal?.removeEventListener("abort", onAbort);
        clearTimeout(timer);
        this.#forgetIfEmpty(server, pool);
        reject(err);
      };
      const waiter: Waiter = {
        owner,
        grant: () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
        leave,
      };
      const onAbort = (): void => leave(signal!.reason instanceof Error ? signal!.reason : new Error("aborted"));
      const timer = setTimeout(
        () => leave(new TimeoutError("PERILINK_REQUEST_TIMEOUT", `Cannot finish request: no response before its deadline; it waited all ${timeoutMs} ms in the agent for this process's share of the server's requests in flight, held by its earlier requests to that server`)),
        timeoutMs,
      );
      signal?.addEventListener("abort", onAbort, { once: true });
      pool.waiting.push(waiter);
    });
  }

  /** Gives back a slot `owner` held, and grants it to the first waiter now within its share. */
  release(server: object, owner: object): void {
    const pool = this.#pools.get(server);
    if (pool === undefined) return;
    const mine = (pool.held.get(owner) ?? 1) - 1;
    if (mine > 0) pool.held.set(owner, mine);
    else pool.held.delete(owner);
    this.#pump(server, pool);
  }

  /** Fails every request of `owner` still waiting (its process has gone), with `err`. */
  drop(owner: object, err: Error): void {
    for (const pool of [...this.#pools.values()]) for (const w of pool.waiting.filter((x) => x.owner === owner)) w.leave(err);
  }

  #pump(server: object, pool: Pool): void {
    for (let i = 0; i < pool.waiting.length; ) {
      const w = pool.waiting[i]!;
      const mine = pool.held.get(w.owner) ?? 0;
      if (mine >= SlotShare.share(pool.limit, this.#users(pool, w.owner))) {
        i++;
        continue;
      }
      pool.waiting.splice(i, 1);
      pool.held.set(w.owner, mine + 1);
      w.grant();
    }
    this.#forgetIfEmpty(server, pool);
  }

  /** Processes using `pool`'s slots, `owner` counted: those holding some (a process that waits holds its share, so it is among them). */
  #users(pool: Pool, owner: object): number {
    return pool.held.size + (pool.held.has(owner) ? 0 : 1);
  }

  #forgetIfEmpty(server: object, pool: Pool): void {
    if (pool.held.size === 0 && pool.waiting.length === 0) this.#pools.delete(server);
  }
}
