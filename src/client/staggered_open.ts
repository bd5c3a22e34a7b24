import { ServerBusyError, PerilinkError } from "../errors.ts";
import type { SocketLimiter } from "./socket_limiter.ts";

/** Delay between the starts of two attempts to open a session (RFC 8305's recommended 250 ms). */
export const STAGGER_MS = 250;

/** How often one attempt tries its address again when sessions arrive already drained (GOAWAY with the hello). */
const MAX_DRAINED_AT_ONCE = 3;

interface Where {
  host: string;
  port: number;
}

/** What the opener needs from the server's entry. `S` is a connected session, `L` what the entry made of it. */
export interface OpenHost<A extends Where, S, L> {
  readonly limiter: SocketLimiter;
  /** Aborted when the client closes. */
  readonly signal: AbortSignal;
  /** Connects and verifies a session to `a`; `signal` ends the handshake. */
  connect(a: A, signal: AbortSignal): Promise<S>;
  /** Takes a connected session (its socket slot counted): kept, or closed and its slot given back; throws when it is not this server. */
  install(session: S, a: A): L;
  /** True when the kept session arrived drained (try the address again). */
  drained(live: L): boolean;
  /** True once the entry is closed. */
  closed(): boolean;
  /** Errors that end the whole open at once (an impostor's key, the client closing). */
  isFatal(err: unknown): boolean;
  closedError(cause?: unknown): Error;
  failed(a: A, err: unknown): void;
}

export interface OpenOutcome<L> {
  won: L | null;
  fatal: Error | null;
  busy: ServerBusyError | null;
  lastErr: unknown;
}

/**
 * Opens one session over a server's addresses, in the order given (best
 * first), Happy Eyeballs style (RFC 8305): each next attempt starts
 * `staggerMs` after the one before, or at once when that one failed; the
 * first session the entry keeps wins, and the attempts still running are
 * aborted and awaited before this resolves, so none outlives the open.
 *
 * Socket slots: only the first attempt waits for one; a later attempt starts
 * early only if a slot is free, else when an attempt before it ends. A
 * failed attempt's slot goes to the next one (a connect waiting for a slot
 * does not take it in between), and what is left is given back at the end.
 */
export async function openStaggered<A extends Where, S, L>(order: readonly A[], host: OpenHost<A, S, L>, staggerMs = STAGGER_MS): Promise<OpenOutcome<L>> {
  const limiter = host.limiter;
  const out: OpenOutcome<L> = { won: null, fatal: null, busy: null, lastErr: undefined };
  let spare = 0;
  const stop = new AbortController();
  const onHostAbort = (): void => stop.abort(host.signal.reason);
  if (host.signal.aborted) onHostAbort();
  else host.signal.addEventListener("abort", onHostAbort, { once: true });
  const running = new Set<Promise<void>>();

  /** One address, holding one socket slot. */
  const attempt = async (a: A): Promise<void> => {
    for (let drained = 0; ; drained++) {
      let session: S;
      try {
        session = await host.connect(a, stop.signal);
      } catch (err) {
        spare++;
        if (host.closed()) out.fatal ??= host.closedError(err);
        else if (!stop.signal.aborted) {
          if (err instanceof ServerBusyError) out.busy = err;
          out.lastErr = err;
          host.failed(a, err);
        }
        return;
      }
      let live: L;
      try {
        live = host.install(session, a);
      } catch (err) {
        if (host.isFatal(err)) out.fatal ??= err as Error;
        out.lastErr = err;
        host.failed(a, err);
        return;
      }
      if (!host.drained(live)) {
        out.won ??= live;
        return;
      }
      // The same address serves on a new session (the server is being replaced or sheds load).
      out.lastErr = new PerilinkError("PERILINK_REQUEST_REFUSED", `${a.host}:${a.port} drained the session as it opened`);
      if (drained >= MAX_DRAINED_AT_ONCE || stop.signal.aborted) return;
      try {
        await limiter.acquire();
      } catch (err) {
        out.fatal ??= err as Error;
        return;
      }
    }
  };

  try {
    for (let i = 0; out.won === null && out.fatal === null; ) {
      if (i >= order.length) {
        if (running.size === 0) break;
        await Promise.race(running);
        continue;
      }
      if (spare > 0) spare--;
      else if (running.size === 0) {
        if (host.closed()) throw host.closedError();
        await limiter.acquire();
        if (host.closed()) {
          limiter.release();
          throw host.closedError();
        }
      } else if (!limiter.tryAcquire()) {
        await Promise.race(running);
        continue;
      }
      const p: Promise<void> = attempt(order[i++]!).finally(() => running.delete(p));
      running.add(p);
      if (i < order.length) await raceDelay(running, staggerMs);
    }
  } finally {
    stop.abort(); // the attempts that lost end their handshakes now
    host.signal.removeEventListener("abort", onHostAbort);
    await Promise.all([...running]);
    for (; spare > 0; spare--) limiter.release();
  }
  return out;
}

/** Resolves when one of `running` settles or `ms` passes. */
function raceDelay(running: Set<Promise<void>>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([...running, new Promise<void>((r) => (timer = setTimeout(r, ms)))]).finally(() => clearTimeout(timer));
}
