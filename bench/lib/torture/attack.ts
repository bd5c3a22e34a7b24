/**
 * What every attack of the torture benchmark shares: where it aims, how long
 * it may run, the counters it reports, and the loopback source addresses.
 */

/** The server under attack and the limits the attacks are sized from. */
export interface AttackTarget {
  host: string;
  port: number;
  /** The build target's server limits (targets/<profile>.json). */
  maxSessions: number;
  maxSessionsPerPeer: number;
  handshakeTimeoutMs: number;
  maxFrameBytes: number;
  maxBufferedBytes: number;
  /** The server's state directory: its own client key is trusted, so the insider attacks (a trusted host gone bad) prove it. */
  stateDir: string;
}

/** Per-attack settings, from the command line; every attack reads the ones it knows. */
export interface AttackOptions {
  /** Epoch ms after which the attack stops by itself even if nobody stops it. */
  deadline: number;
  [key: string]: number;
}

export type Counters = Record<string, number>;

/** A running attack. `stop()` ends every loop, closes every socket, and returns the counters. */
export interface Attack {
  stop(): Promise<Counters>;
  /** Resolves once the attack is set up (e.g. its sockets bound), when that takes a while. */
  ready?: Promise<void>;
}

export type AttackStarter = (target: AttackTarget, options: AttackOptions) => Attack;

/**
 * The `i`-th source address of a block: 127.0.<block + i / 250>.<1 + i % 250>.
 * Each attack has its own block, so the server sees attackers apart from the
 * legitimate clients (127.0.0.1) and from each other.
 */
export function loopbackSource(block: number, i: number): string {
  const third = block + Math.floor(i / 250);
  if (block < 1 || third > 255) throw new RangeError(`loopback block ${block} + ${i} sources runs past 127.0.255.x`);
  return `127.0.${third}.${1 + (i % 250)}`;
}

/** A uniformly random integer in [lo, hi]. */
export function between(lo: number, hi: number): number {
  return lo + Math.floor(Math.random() * (hi - lo + 1));
}
