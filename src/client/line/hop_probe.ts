/**
 * Router count and round-trip time to a server, from its own identify
 * responder: one probe per TTL 1..maxHops, all at once, each from its own
 * socket so its answer says which TTL it was. A probe whose TTL runs out on
 * the way is dropped by a router (whose ICMP time-exceeded never reaches a
 * UDP socket here), so the smallest answered TTL is the hop count to the
 * server: routers = that − 1. Only an answer from the probed address and
 * port, signed over that probe's nonce by the expected server, counts.
 */
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import net from "node:net";
import { NONCE_SIZE } from "../../protocol/constants.ts";
import { bytesToUuid, verifySignature } from "../../protocol/keys.ts";
import { decodeProbeResponse, encodeProbeRequest, udpSignedMessage } from "../../protocol/probe.ts";

export interface HopProbeResult {
  /** Routers between us and the server, or null when no probe was answered. */
  routers: number | null;
  /** The shortest round-trip time of the answered probes, ms. */
  rttMs: number | null;
  probesSent: number;
}

export interface HopProbeOptions {
  maxHops: number;
  timeoutMs: number;
  /** Answers signed by another server do not count. */
  serverId?: string;
  /** Aborting it ends the probe at once with what it has. */
  signal?: AbortSignal;
}

/** After the first answer, how long lower TTLs still get to answer (they travel the same path). */
const SETTLE_MIN_MS = 20;

export function probeHops(address: string, port: number, opts: HopProbeOptions): Promise<HopProbeResult> {
  const bare = address.split("%")[0]!;
  const type = net.isIPv6(bare) ? "udp6" : "udp4";
  const expected = bare.toLowerCase();
  return new Promise((resolve) => {
    const socks: dgram.Socket[] = [];
    let answered = Infinity;
    let rttMs: number | null = null;
    let sent = 0;
    let done = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", finish);
      for (const s of socks) {
        try {
          s.close();
        } catch {
          // already closed
        }
      }
      resolve({ routers: answered === Infinity ? null : answered - 1, rttMs, probesSent: sent });
    };
    timer = setTimeout(finish, opts.timeoutMs);
    if (opts.signal?.aborted) return finish();
    opts.signal?.addEventListener("abort", finish, { once: true });
    for (let ttl = 1; ttl <= opts.maxHops; ttl++) {
      const nonce = randomBytes(NONCE_SIZE);
      const s = dgram.createSocket(type);
      let sentAt = 0;
      socks.push(s);
      s.on("error", () => {}); // unreachable, no route: this TTL simply gets no answer
      s.on("message", (msg, rinfo) => {
        const now = performance.now(); // before the signature check: its cost is not the line's
        if (done || rinfo.port !== port || rinfo.address.split("%")[0]!.toLowerCase() !== expected) return;
        const r = decodeProbeResponse(msg);
        if (r === null || !verifySignature(udpSignedMessage(nonce, r.serverId, r.generation), r.signature, r.publicKey)) return;
        if (opts.serverId !== undefined && bytesToUuid(r.serverId) !== opts.serverId) return;
        const rtt = now - sentAt;
        if (rttMs === null) {
          clearTimeout(timer);
          timer = setTimeout(finish, Math.max(SETTLE_MIN_MS, 2 * rtt));
        }
        if (rttMs === null || rtt < rttMs) rttMs = rtt; // the fastest of the answered probes
        if (ttl < answered) answered = ttl;
        if (answered === 1) finish(); // nothing lower to wait for
      });
      s.bind(0, () => {
        if (done) return;
        try {
          s.setTTL(ttl);
        } catch {
          return;
        }
        sent++;
        sentAt = performance.now();
        s.send(encodeProbeRequest(nonce), port, address, () => {});
      });
    }
  });
}
