import type { ServerLimits } from "../../../src/index.ts";

/** A running echo server of one contender. */
export interface BenchServer {
  port: number;
  /** Requests answered so far. */
  handled(): number;
  /** Contender-specific facts for the report (e.g. open sessions). */
  info(): Record<string, unknown>;
  close(): Promise<void>;
}

/** One client of one contender, connected to its server. */
export interface BenchClient {
  /** Sends the payload once and resolves with the echoed bytes (checked for length). */
  send(): Promise<unknown>;
  info(): Record<string, unknown>;
  close(): Promise<void>;
}

export interface ServeOptions {
  /** perilink only: limits over the defaults. */
  limits?: Partial<ServerLimits>;
}

export interface Contender {
  /** How the contender is described in tables. */
  label: string;
  /**
   * Runs once in the benchmark's own process before it forks any server or
   * client of this contender (e.g. makes the TLS certificate they share).
   */
  setup?(): void;
  serve(options?: ServeOptions): Promise<BenchServer>;
  connect(port: number, payload: Buffer): Promise<BenchClient>;
}

/** Throws unless an echo has the payload's length. */
export function checkEcho(got: Uint8Array, payload: Uint8Array): void {
  if (got.byteLength !== payload.byteLength) {
    throw new Error(`echo of ${payload.byteLength} bytes came back as ${got.byteLength} bytes`);
  }
}
