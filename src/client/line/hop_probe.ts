/**
 * Router count and round-trip time to a server, from its own identify
 * responder. A probe whose TTL runs out on the way is dropped by a router
 * (whose ICMP time-exceeded never reaches a UDP socket here); one that
 * arrives is answered. So the smallest answered TTL is the hop count:
 * routers = that − 1.
 *
 * First a probe with the full `maxHops` TTL (resent up to twice within
 * `timeoutMs`): no answer means the server is not reachable this way. Then
 * a binary search over 1..maxHops, each probe waiting a few round trips:
 * log2(maxHops) more probes (3 for 8 hops), so a measure costs the server at
 * most 4 signatures and spends little of its per-source probe budget, which
 * the client's own identify probes share. Only an answer from the probed
 * address and port, signed over that probe's nonce by the expected server,
 * counts; a lost probe can only make the count larger.
 */
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import net from "node:net";
import { NONCE_SIZE } from "../../protocol/constants.ts";
import { bytesToUuid, verifySignature } from "../../protocol/keys.ts";
import { decodeProbeResponse, encodeProbeRequest, udpSignedMessage } from "../../protocol/probe.ts";
import { detectRuntime } from "../../runtime/runtime.ts";
import { stripZone } from "../../address.ts";

export interface HopProbeResult {
  /** True when the full-TTL probe was answered. */
  reachable: boolean;
  /** Routers between us and the server, or null when not known (unreachable, or hop limits not settable here). */
  routers: number | null;
  /** The fastest answered probe's round-trip time, ms. */
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
  /**
   * Pads the full-TTL probe to this many bytes (the largest datagram the
   * outgoing link carries). Sent with DF, it teaches the kernel the path MTU
   * when a router on the way has a smaller one (its "fragmentation needed"
   * reaches the kernel, not us); the resends then go out fragmented and are
   * answered. The server takes any probe of at least 128 bytes and answers
   * with 124.
   */
  padTo?: number;
}

/** How long a TTL-limited probe waits: this many round trips of the full probe, at least `MIN_WAIT_MS`. */
const WAIT_RTTS = 4;
const MIN_WAIT_MS = 20;
/** The largest padded probe (a jumbo-frame link's MTU gets no bigger datagram than this). */
const MAX_PAD = 9000;

export async function probeHops(address: string, port: number, opts: HopProbeOptions): Promise<HopProbeResult> {
  const bare = stripZone(address);
  const expected = bare.toLowerCase();
  const sock = dgram.createSocket(net.isIPv6(bare) ? "udp6" : "udp4");
  let probesSent = 0;
  /** The probe in flight: its nonce, send time and how to settle it. */
  let current: { nonce: Buffer; sentAt: number; settle(rtt: number | null): void } | null = null;
  const onAbort = (): void => current?.settle(null);
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  sock.on("error", () => current?.settle(null)); // no route, unreachable: this probe gets no answer
  sock.on("message", (msg, rinfo) => {
    const now = performance.now(); // before the signature check: its cost is not the line's
    const c = current;
    if (c === null || rinfo.port !== port || stripZone(rinfo.address).toLowerCase() !== expected) return;
    const r = decodeProbeResponse(msg);
    if (r === null || !verifySignature(udpSignedMessage(c.nonce, r.serverId, r.generation), r.signature, r.publicKey)) return;
    if (opts.serverId !== undefined && bytesToUuid(r.serverId) !== opts.serverId) return;
    c.settle(now - c.sentAt);
  });

  /** One probe at `ttl`, sent `attempts` times within `waitMs`; resolves with its RTT or null. */
  const probe = (ttl: number, waitMs: number, attempts: number, padTo = 0): Promise<number | null> =>
    new Promise((resolve) => {
      if (opts.signal?.aborted) return resolve(null);
      const nonce = randomBytes(NONCE_SIZE);
      const base = encodeProbeRequest(nonce);
      const request = padTo > base.length ? Buffer.concat([base, Buffer.alloc(padTo - base.length)]) : base;
      const timers: ReturnType<typeof setTimeout>[] = [];
      const c = {
        nonce,
        sentAt: 0,
        settle(rtt: number | null): void {
          if (current !== c) return;
          current = null;
          for (const t of timers) clearTimeout(t);
          resolve(rtt);
        },
      };
      current = c;
      const send = (): void => {
        if (current !== c) return;
        try {
          sock.setTTL(ttl);
        } catch {
          return c.settle(null);
        }
        probesSent++;
        c.sentAt = performance.now();
        sock.send(request, port, address, () => {});
      };
      send();
      for (let i = 1; i < attempts; i++) timers.push(setTimeout(send, (waitMs * i) / attempts));
      timers.push(setTimeout(() => c.settle(null), waitMs));
    });

  try {
    await new Promise<void>((resolve, reject) => {
      sock.once("error", reject);
      sock.bind(0, () => {
        sock.off("error", reject);
        resolve();
      });
    });
    const full = await probe(opts.maxHops, opts.timeoutMs, 3, Math.min(opts.padTo ?? 0, MAX_PAD));
    if (full === null) return { reachable: false, routers: null, rttMs: null, probesSent };
    if (net.isIPv6(bare) && !detectRuntime().canLimitIpv6Hops) return { reachable: true, routers: null, rttMs: full, probesSent };
    let rtt = full;
    const waitMs = Math.max(MIN_WAIT_MS, WAIT_RTTS * full);
    let lo = 1;
    let hi = opts.maxHops; // answered at hi
    while (lo < hi && !opts.signal?.aborted) {
      const mid = (lo + hi) >> 1;
      const r = await probe(mid, waitMs, 1);
      if (r === null) lo = mid + 1;
      else {
        hi = mid;
        if (r < rtt) rtt = r;
      }
    }
    return { reachable: true, routers: hi - 1, rttMs: rtt, probesSent };
  } catch {
    return { reachable: false, routers: null, rttMs: null, probesSent };
  } finally {
    opts.signal?.removeEventListener("abort", onAbort);
    try {
      sock.close();
    } catch {
      // already closed
    }
  }
}
