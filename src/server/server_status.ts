import type { Dispatch } from "./config.ts";
import type { WorkerStatus } from "./connection_service.ts";
import type { DrainingGeneration, LastUpgrade } from "./server_handoff.ts";

export type { LastUpgrade };

/** What `status` reports (R4): `PerilinkServer.status()`, the control socket, `perilink status --json`. */
export interface ListenerStatus {
  address: string;
  port: number;
  transport: "tcp" | "udp";
}

export interface ServerStatus {
  /** The running program's version (package.json's, built in). */
  version: string;
  pid: number;
  generation: number;
  serverId: string;
  keyFingerprint: string;
  runtime: string;
  target: string;
  app: string;
  mode: "session" | "raw";
  accepting: boolean;
  listeners: ListenerStatus[];
  sessions: number;
  inflight: number;
  /** Bytes held for frames in progress and unsent output over all sessions (limit: `limits.maxBufferedBytes`). */
  bufferedBytes: number;
  uptimeMs: number;
  counters: Record<string, number>;
  /** Older generations that handed over to this process and are still draining. */
  draining: DrainingGeneration[];
  /** The upgrade under way, if any. */
  upgrade: { pid: number | null; forMs: number } | null;
  /** True once this process has handed over to a newer generation. */
  handedOver: boolean;
  lastUpgrade: LastUpgrade | null;
  /** How service processes get connections (S5); "single" when this process serves alone. */
  dispatch: Dispatch | "single";
  /** The group's service processes (S5); empty when this process serves alone. */
  workers: WorkerStatus[];
}
