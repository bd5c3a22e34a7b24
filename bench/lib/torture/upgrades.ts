import { controlRequest } from "../../../src/server/control_server.ts";
import type { UpgradeResult } from "../../../src/handoff/upgrader.ts";
import { now, type Service } from "../handoff/services.ts";
import { sleep } from "../proc.ts";
import { ServerWatch } from "./server_watch.ts";

/** One upgrade of the torture run, as this process saw it. */
export interface UpgradeAttempt {
  /** `upgrade`: a plain upgrade; `kill-9`: the new process is SIGKILLed while it starts. */
  kind: "upgrade" | "kill-9";
  startedAt: number;
  endedAt: number;
  ok: boolean;
  error: string | null;
  /** Serving pid before and after (from `status`). */
  pidBefore: number;
  pidAfter: number;
  /** kill-9: the new process killed, and how long after it was first seen. */
  killedPid: number | null;
  killedAfterMs: number | null;
  /** kill-9: the upgrade failed and the process serving before still serves, accepting. */
  rolledBack: boolean | null;
}

/** A plain upgrade through the control socket (the handoff benchmark's `replace()`). */
export async function plainUpgrade(service: Service, watch: ServerWatch): Promise<UpgradeAttempt> {
  const pidBefore = (await watch.status(5000))?.pid ?? watch.servingPid;
  const startedAt = now();
  const r = await service.replace();
  const endedAt = now();
  const after = await watch.status(5000);
  return { kind: "upgrade", startedAt, endedAt, ok: r.ok, error: r.error, pidBefore, pidAfter: after?.pid ?? 0, killedPid: null, killedAfterMs: null, rolledBack: null };
}

/**
 * An upgrade whose new process is killed with SIGKILL `killDelayMs` after it
 * appears as a child of the serving process (polled every 5 ms), so it dies
 * while it starts, before it takes over. The upgrade must then fail and roll
 * back, and the process that served before must keep serving.
 */
export async function killedUpgrade(stateDir: string, watch: ServerWatch, killDelayMs: number): Promise<UpgradeAttempt> {
  const before = await watch.status(5000);
  const pidBefore = before?.pid ?? watch.servingPid;
  const known = new Set(ServerWatch.children(pidBefore) ?? []);
  const startedAt = now();
  const request = controlRequest(stateDir, { op: "upgrade", timeoutMs: 20_000 }, 45_000).then(
    (r) => ({ ok: true as const, r: r as UpgradeResult }),
    (err: unknown) => ({ ok: false as const, error: (err as Error).message }),
  );
  let settled = false;
  void request.then(() => (settled = true));
  let victim: number | null = null;
  for (let i = 0; i < 4000 && !settled && victim === null; i++) {
    const kids = ServerWatch.children(pidBefore);
    if (kids === null) {
      const s = await watch.status(1000);
      if (s?.upgrade?.pid) victim = s.upgrade.pid;
    } else {
      victim = kids.find((k) => !known.has(k)) ?? null;
    }
    if (victim === null) await sleep(5);
  }
  let killedAfterMs: number | null = null;
  if (victim !== null) {
    const found = Date.now();
    await sleep(killDelayMs);
    try {
      // A new process that has taken over already is no longer starting: killing it then is a
      // crash after a finished upgrade, not the fault this measures (Node starts in ~55 ms here,
      // a takeover has taken ~100 ms: hence a short default delay).
      if (settled) throw new Error("the upgrade finished first");
      process.kill(victim, "SIGKILL");
      killedAfterMs = Date.now() - found;
    } catch {
      // it was gone already
    }
    watch.adopt(victim);
  }
  const outcome = await request;
  const endedAt = now();
  const after = await watch.status(5000);
  const pidAfter = after?.pid ?? 0;
  return {
    kind: "kill-9",
    startedAt,
    endedAt,
    ok: outcome.ok,
    error: outcome.ok ? null : outcome.error,
    pidBefore,
    pidAfter,
    killedPid: victim,
    killedAfterMs,
    rolledBack: !outcome.ok && pidAfter === pidBefore && after?.accepting === true,
  };
}
