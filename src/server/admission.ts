import type net from "node:net";
import { WireError } from "../protocol/constants.ts";
import { encodeServerRefusalV2 } from "../protocol/sealed_handshake.ts";
import type { ServerLimits } from "./limits.ts";
import { peerKey } from "./peer_key.ts";
import { RateLimiter } from "./rate_limiter.ts";

/** What admission asks of the sessions it admits to. */
export interface AdmissionHost {
  /** The server holds more than `maxBufferedBytes`. */
  budgetOver(): boolean;
  /** Whether the total (`maxSessions`) has room, making it by evicting an idle session if it can. */
  makeRoom(): boolean;
}

/** Which limit refused a newcomer. */
export type Refusal = "maxSessionsPerPeer" | "accessDenied" | "maxBufferedBytes" | "sessionRatePerPeer" | "maxSessions";

/**
 * Access refusals a peer may collect before the server stops taking its
 * connections (`PERILINK_ACCESS_DENIED`, counted by `peerKey()`), and how
 * fast that allowance comes back: a stranger cannot make the device do key
 * exchanges for it at more than this rate once it has used them up.
 */
export const DENIALS_BURST_PER_PEER = 16;
export const DENIALS_PER_SECOND_PER_PEER = 0.2;

/** How long a refused connection may stay half-open to read the refusal. */
const REFUSAL_LINGER_MS = 1000;

/**
 * Whether a new connection may open a session (S3), checked in this order:
 * the peer's open sessions (`maxSessionsPerPeer`, counted by `peerKey()`:
 * IPv4 address, IPv6 /64, link-local address with zone), the peer's access
 * refusals (`DENIALS_*`: a peer refused too often waits), the server's buffer
 * budget, the peer's session rate (`sessionRatePerPeer`: each handshake costs
 * a signature; off by default), then the total (`maxSessions`) — where a
 * slot may be freed by evicting an idle session, but only for a newcomer
 * that every other limit admits.
 */
export class Admission {
  #limits: ServerLimits;
  #host: AdmissionHost;
  #perPeer = new Map<string, number>();
  #rate: RateLimiter | null;
  #denials: RateLimiter;

  constructor(limits: ServerLimits, trackedSources: number, host: AdmissionHost) {
    this.#limits = limits;
    this.#host = host;
    this.#rate =
      limits.sessionRatePerPeer > 0
        ? new RateLimiter({ ratePerSecond: limits.sessionRatePerPeer, burst: limits.sessionBurstPerPeer, maxSources: trackedSources })
        : null;
    this.#denials = new RateLimiter({ ratePerSecond: DENIALS_PER_SECOND_PER_PEER, burst: DENIALS_BURST_PER_PEER, maxSources: trackedSources });
  }

  /** The limit that refuses a session from `peer`, or null: it is admitted and counted until `released(peer)`. */
  admit(peer: string): Refusal | null {
    const key = peerKey(peer);
    const open = this.#perPeer.get(key) ?? 0;
    const why: Refusal | null =
      open >= this.#limits.maxSessionsPerPeer
        ? "maxSessionsPerPeer"
        : this.#denials.empty(key)
          ? "accessDenied"
          : this.#host.budgetOver()
          ? "maxBufferedBytes"
          : this.#rate !== null && !this.#rate.take(key)
            ? "sessionRatePerPeer"
            : !this.#host.makeRoom()
              ? "maxSessions"
              : null;
    if (why === null) this.#perPeer.set(key, open + 1);
    return why;
  }

  /**
   * A session from `peer` was refused access to an app: it counts against the
   * peer's allowance of refusals, and against its session rate when that is
   * on. False when the allowance is used up (the server then ends the session).
   */
  denied(peer: string): boolean {
    const key = peerKey(peer);
    this.#rate?.take(key);
    return this.#denials.take(key);
  }

  /** Whether `peer` has used up its refusals (it is refused at admission until its allowance comes back). */
  refusedTooOften(peer: string): boolean {
    return this.#denials.empty(peerKey(peer));
  }

  /** An admitted session from `peer` closed. */
  released(peer: string): void {
    const key = peerKey(peer);
    const n = (this.#perPeer.get(key) ?? 1) - 1;
    if (n <= 0) this.#perPeer.delete(key);
    else this.#perPeer.set(key, n);
  }
}

/** Tells a refused newcomer the server is busy (it may try another address), then closes. */
export function refuseConnection(socket: net.Socket): void {
  socket.on("error", () => {});
  socket.resume();
  socket.end(encodeServerRefusalV2(WireError.ServerBusy));
  setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS).unref?.();
}
