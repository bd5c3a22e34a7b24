import defaultTarget from "../targets/node20.json" with { type: "json" };

/**
 * The build target's profile: budgets and the limits that become the
 * runtime's defaults. Running from source it is `targets/node20.json`; the
 * bundler substitutes the chosen target's file for that import (build/build.ts).
 */
export interface Target {
  name: string;
  description: string;
  runtime: "node" | "deno";
  esbuildTarget: string;
  arch: string[];
  bundleBudgetBytes: number;
  memory: { maxOldSpaceMiB: number };
  writeSlabBytes: number;
  server: {
    maxSessions: number;
    maxSessionsPerPeer: number;
    maxChannelsPerSession: number;
    maxInflightPerSession: number;
    maxFrameBytes: number;
    handshakeTimeoutMs: number;
    idleTimeoutMs: number;
  };
  probe: { ratePerSecond: number; burst: number; trackedSources: number };
  client: {
    maxSessions: number;
    maxSessionsPerServer: number;
    maxWaiting: number;
    waitTimeoutMs: number;
    lingerMs: number;
    probeTimeoutMs: number;
    requestTimeoutMs: number;
    maxFrameBytes: number;
  };
}

export const TARGET: Readonly<Target> = defaultTarget as Target;
