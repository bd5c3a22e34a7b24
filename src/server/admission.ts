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
export type Refusal = "maxSessionsPerPeer" | "accessDenied" | "maxBufferedBytes" | "sessionRatePerPeer" | "sessionRateGlobal" | "maxSessions";

/**
 * Access refusals a peer may collect before the server stops taking its
 * connections (`PERILINK_ACCESS_DENIED`, counted by `peerKey()`), and how
 * fast that allowance comes back: a stranger cannot make the device do key
 * exchanges for it at more than this rate once it has used them up.
 */
export const DENIALS_BURST_PER_PEER = 16;
export const DENIALS_PER_SECOND_PER_PEER = 0.2;

/** Peers remembered as vouched for (a session of theirs proved a key the server trusts): the most, and for how long. */
export const VOUCHED_PEERS_MAX = 1024;
export const VOUCHED_PEER_MS = 3_600_000;

/** How long a refused connection may stay half-open to read the refusal. */
const REFUSAL_LINGER_MS = 1000;

/**
 * Whether a new connection may open a session (S3), checked in this order:
 * the peer's open sessions (`maxSessionsPerPeer`, counted by `peerKey()`:
 * IPv4 address, IPv6 /64, link-local address with zone), the peer's access
 * refusals (`DENIALS_*`: a peer refused too often waits), the server's buffer
 * budget, the peer's session rate (`sessionRatePerPeer`, burst
 * `sessionBurstPerPeer`: each handshake costs a key exchange and a
 * signature), the server's session rate over all peers (`sessionRateGlobal`,
 * burst `sessionBurstGlobal`), then the total (`maxSessions`) — where a slot
 * may be freed by evicting an idle session, but only for a newcomer that
 * every other limit admits. A rate of 0 turns that rate off.
 *
 * A peer whose session proved a key the server trusts (under `access:
 * "keys"`; with "open" nobody is, as any fresh key would do) is vouched
 * for, for an hour (at most
 * `VOUCHED_PEERS_MAX` peers, least recently vouched out): the global rate
 * does not count its sessions, so a handshake flood from many addresses
 * cannot keep the server's own clients from reconnecting. An upgrade hands
 * the vouched peers to the new process.
 */
export class Admission {
  #limits: ServerLimits;
  #host: AdmissionHost;
  #perPeer = new Map<string, number>();
  #rate: RateLimiter | null;
  #global: RateLimiter | null;
  #denials: RateLimiter;
  /** Vouched peer → when, in insertion order (the first is the oldest). */
  #vouched = new Map<string, number>();

  constructor(limits: ServerLimits, trackedSources: number, host: AdmissionHost) {
    this.#limits = limits;
    this.#host = host;
    this.#rate =
      limits.sessionRatePerPeer > 0
        ? new RateLimiter({ ratePerSecond: limits.sessionRatePerPeer, burst: limits.sessionBurstPerPeer, maxSources: trackedSources })
        : null;
    this.#global = limits.sessionRateGlobal > 0 ? new RateLimiter({ ratePerSecond: limits.sessionRateGlobal, burst: limits.sessionBurstGlobal, maxSources: 1 }) : null;
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
              : this.#global !== null && !this.#isVouched(key) && !this.#global.take("")
                ? "sessionRateGlobal"
                : !this.#host.makeRoom()
                  ? "maxSessions"
                  : null;
    if (why === null) this.#perPeer.set(key, open + 1);
    return why;
  }

  /** A session from `peer` proved a key the server trusts: its peer is vouched for (see the class). */
  vouch(peer: string): void {
    this.#remember(peerKey(peer), Date.now());
  }

  /** The peers vouched for now, with when (ms since the epoch): what an upgrade hands over. */
  vouchedPeers(): [string, number][] {
    this.#expire(Date.now());
    return [...this.#vouched];
  }

  /** Takes over the vouched peers of the process this one replaces (entries that are not a peer and a time are skipped). */
  adoptVouched(peers: unknown): void {
    if (!Array.isArray(peers)) return;
    const now = Date.now();
    const ok = peers
      .slice(-VOUCHED_PEERS_MAX)
      .filter((p): p is [string, number] => Array.isArray(p) && typeof p[0] === "string" && p[0].length <= 64 && typeof p[1] === "number" && p[1] <= now)
      .sort((a, b) => a[1] - b[1]);
    for (const [key, at] of ok) this.#remember(key, at);
    this.#expire(now);
  }

  #remember(key: string, at: number): void {
    this.#vouched.delete(key);
    this.#vouched.set(key, at);
    if (this.#vouched.size > VOUCHED_PEERS_MAX) this.#vouched.delete(this.#vouched.keys().next().value!);
  }

  #isVouched(key: string): boolean {
    const at = this.#vouched.get(key);
    if (at === undefined) return false;
    if (Date.now() - at <= VOUCHED_PEER_MS) return true;
    this.#vouched.delete(key);
    return false;
  }

  #expire(now: number): void {
    for (const [key, at] of this.#vouched) {
      if (now - at <= VOUCHED_PEER_MS) break; // in order of vouching: the rest are newer
      this.#vouched.delete(key);
    }
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
