import type dgram from "node:dgram";
import type { Logger } from "../logger.ts";
import type { Target } from "../target.ts";
import { decodeProbeRequest, encodeProbeResponse, udpBoundMessage, udpSignedMessage, wantsBound } from "../protocol/probe.ts";
import type { Identity } from "./identity.ts";
import { peerKey } from "./peer_key.ts";
import { RateLimiter } from "./rate_limiter.ts";
import type { ServerStats } from "./server_stats.ts";

/** Probe rate limits (S1): per source (`ratePerSecond`, `burst`, `trackedSources`) and for the whole server (`global…`). */
export type ProbeLimits = Target["probe"];

/**
 * Answers UDP identify probes (S1) on every listener: one datagram in, one
 * datagram out, never larger than the request, signed over the client's nonce.
 * Anything that is not a well-formed probe, or exceeds its source's rate
 * (sources keyed by `peerKey()`: IPv4 address, IPv6 /64) or the server's
 * global signing rate, is dropped without an answer.
 */
export class ProbeResponder {
  #identity: Identity;
  #generation: () => number;
  #limiter: RateLimiter;
  #stats: ServerStats;
  #log: Logger;

  constructor(identity: Identity, generation: () => number, limits: ProbeLimits, stats: ServerStats, log: Logger) {
    this.#identity = identity;
    this.#generation = generation;
    this.#limiter = new RateLimiter({
      ratePerSecond: limits.ratePerSecond,
      burst: limits.burst,
      maxSources: limits.trackedSources,
      globalRatePerSecond: limits.globalRatePerSecond,
      globalBurst: limits.globalBurst,
    });
    this.#stats = stats;
    this.#log = log;
  }

  onDatagram(msg: Buffer, rinfo: dgram.RemoteInfo, udp: dgram.Socket): void {
    const nonce = decodeProbeRequest(msg);
    if (nonce === null || !this.#limiter.take(peerKey(rinfo.address))) {
      this.#stats.probesDropped++;
      return;
    }
    this.#stats.probes++;
    const id = this.#identity;
    const generation = this.#generation();
    // Bound to where it was received when asked, and when the socket has one address (not a wildcard).
    const bound = wantsBound(msg) ? this.#boundMessage(udp, nonce, id.serverIdBytes, generation) : null;
    const reply = encodeProbeResponse({
      serverId: id.serverIdBytes,
      publicKey: id.publicKey,
      signature: id.sign(bound ?? udpSignedMessage(nonce, id.serverIdBytes, generation)),
      generation,
      bound: bound !== null,
    });
    udp.send(reply, rinfo.port, rinfo.address, (err) => {
      if (err) this.#log.debug("probe_send_failed", { peer: rinfo.address, error: err });
    });
  }

  #local = new WeakMap<dgram.Socket, { address: string; port: number } | null>();

  #boundMessage(udp: dgram.Socket, nonce: Buffer, serverId: Uint8Array, generation: number): Buffer | null {
    let local = this.#local.get(udp);
    if (local === undefined) {
      try {
        const a = udp.address();
        local = a.address === "0.0.0.0" || a.address === "::" ? null : { address: a.address, port: a.port };
      } catch {
        local = null;
      }
      this.#local.set(udp, local);
    }
    return local === null ? null : udpBoundMessage(nonce, serverId, generation, local.address, local.port);
  }
}
