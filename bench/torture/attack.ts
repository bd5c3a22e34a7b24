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



/**
 * A shared rate limit for attack loops: `take()` resolves when one more
 * action is allowed at `perSecond`, or false once `stopped()` is true.
 * Refills every 10 ms; waiters are served in order.
 */
export class Pacer {
  #tokens: number;
  #perTick: number;
  #burst: number;
  #waiters: ((ok: boolean) => void)[] = [];
  #timer: ReturnType<typeof setInterval>;

  constructor(perSecond: number) {
    this.#perTick = perSecond / 100;
    this.#burst = Math.max(1, perSecond / 10);
    this.#tokens = this.#burst;
    this.#timer = setInterval(() => this.#refill(), 10);
  }

  take(): Promise<boolean> {
    if (this.#waiters.length === 0 && this.#tokens >= 1) {
      this.#tokens--;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Releases every waiter with false and stops the refill. */
  close(): void {
    clearInterval(this.#timer);
    for (const w of this.#waiters.splice(0)) w(false);
  }

  #refill(): void {
    this.#tokens = Math.min(this.#burst, this.#tokens + this.#perTick);
    while (this.#tokens >= 1 && this.#waiters.length > 0) {
      this.#tokens--;
      this.#waiters.shift()!(true);
    }
  }
}

/**
 * Ends an attack's loops: `stopped` turns true at `stop()` or at the
 * deadline, whichever comes first, and every `pause()` under way returns at once.
 */
export class Stopper {
  stopped = false;
  #wakers = new Set<() => void>();
  #timer: ReturnType<typeof setTimeout>;

  constructor(deadline: number) {
    this.#timer = setTimeout(() => this.stop(), Math.max(0, deadline - Date.now()));
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.#timer);
    for (const wake of this.#wakers) wake();
    this.#wakers.clear();
  }

  /** Waits `ms`, or less if the attack stops meanwhile. */
  pause(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.#wakers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#wakers.add(wake);
    });
  }
}

/** A uniformly random integer in [lo, hi]. */
export function between(lo: number, hi: number): number {
  return lo + Math.floor(Math.random() * (hi - lo + 1));
}
