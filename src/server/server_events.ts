/**
 * What a server tells an observer about its life (the systemd notifier is
 * one): an interface of its own, so the server does not depend on who listens.
 */
export interface ServerEvents {
  /** An upgrade to `generation` begins (not sent for one refused at once). */
  upgradeStarted?(info: { generation: number }): void;
  /** The new process accepts; this one drains next. */
  upgradeFinished?(result: { generation: number; pid: number }): void;
  /** The upgrade failed or was cancelled; this process keeps serving (or is shutting down). */
  upgradeFailed?(err: Error): void;
  /** A drain begins; `handedOver` when it follows an upgrade (the new process serves). */
  drainStarted?(info: { sessions: number; inflight: number; timeoutMs: number; handedOver: boolean }): void;
  drainFinished?(): void;
}
