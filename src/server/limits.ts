import { TARGET, type Target } from "../target.ts";

/**
 * Per-server limits (S3): maxSessions, maxSessionsPerPeer,
 * maxChannelsPerSession, maxInflightPerSession, maxFrameBytes (largest frame
 * payload accepted), handshakeTimeoutMs, idleTimeoutMs, and the memory and
 * time budgets maxSessionOutputBytes, maxBufferedBytes, writeTimeoutMs and
 * requestTimeoutMs (see targets/*.json). Defaults come from
 * the build target (targets/*.json, "server").
 */
export type ServerLimits = Target["server"];

export const DEFAULT_SERVER_LIMITS: Readonly<ServerLimits> = Object.freeze({ ...TARGET.server });
