import { TARGET } from "../target.ts";

/** Per-server limits (S3). Defaults come from the build target (targets/*.json). */
export interface ServerLimits {
  maxSessions: number;
  maxSessionsPerPeer: number;
  maxChannelsPerSession: number;
  maxInflightPerSession: number;
  /** Largest frame payload the server accepts, in bytes. */
  maxFrameBytes: number;
  handshakeTimeoutMs: number;
  idleTimeoutMs: number;
}

export const DEFAULT_SERVER_LIMITS: Readonly<ServerLimits> = Object.freeze({ ...TARGET.server });

export const LIMIT_KEYS = Object.keys(DEFAULT_SERVER_LIMITS) as (keyof ServerLimits)[];
