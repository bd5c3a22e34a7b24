import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { promises as dns } from "node:dns";
import net from "node:net";
import { SignatureError, TimeoutError } from "../errors.ts";
import { NONCE_SIZE } from "../protocol/constants.ts";
import { bytesToUuid, keyFingerprint, verifySignature } from "../protocol/keys.ts";
import { decodeProbeResponse, encodeProbeRequest, udpBoundMessage, udpSignedMessage } from "../protocol/probe.ts";
import { clientHandshake, startSealed } from "./client_handshake.ts";
import { processClientKey } from "./client_key.ts";
import { TARGET } from "../target.ts";
import { checkMs } from "../duration.ts";
import { canonicalAddress, formatHostPort, stripBrackets, stripZone } from "../address.ts";

/** What an identify probe learned about the server behind one address. */
export interface Identification {
  serverId: string;
  publicKey: Buffer;
  keyFingerprint: string;
  generation: number;
  address: string;
  port: number;
  transport: "udp" | "tcp";
  rttMs: number;
  /** The server signed the address and port it was probed at (UDP, when asked with `bound`): no relay elsewhere can have answered it (protocol.md §7.7). */
  bound: boolean;
}

export interface IdentifyOptions {
  timeoutMs?: number;
  /** UDP only: how many datagrams to send within the timeout (default 3). */
  attempts?: number;
  /** UDP only: aborting it ends the probe (the socket is closed) with the signal's reason. */
  signal?: AbortSignal;
  /** UDP only: ask for an answer bound to the probed address (§7.7); a server that cannot bind it answers unbound (`bound: false`). */
  bound?: boolean;
}

/**
 * C1 over UDP: sends a signed-identity probe (one datagram each way) and
 * verifies the signature over our fresh nonce. Resends up to `attempts`
 * times within `timeoutMs`. Only a reply from the probed address and port is
 * read (a name is resolved first, and its address probed). A reply whose
 * signature fails is ignored (it may be forged); if no good reply arrives,
 * the error says a bad one was seen.
 */
export async function identifyUdp(host: string, port: number, options: IdentifyOptions = {}): Promise<Identification> {
  let address = stripBrackets(host);
  let family: 4 | 6;
  if (net.isIP(stripZone(address)) === 0) {
    const found = await dns.lookup(address);
    address = found.address;
    family = found.family === 6 ? 6 : 4;
  } else {
    family = net.isIPv6(stripZone(address)) ? 6 : 4;
  }
  const expected = canonicalAddress(address);
  const timeoutMs = options.timeoutMs ?? 1000;
  const attempts = Math.max(1, options.attempts ?? 3);
  const nonce = randomBytes(NONCE_SIZE);
  const request = encodeProbeRequest(nonce, options.bound === true);
  const signal = options.signal;
  if (signal?.aborted) return Promise.reject(abortReason(signal));
  const sock = dgram.createSocket(family === 6 ? "udp6" : "udp4");
  return new Promise<Identification>((resolve, reject) => {
    let badSignature = false;
    let sent = 0;
    let start = 0;
    const timers: ReturnType<typeof setTimeout>[] = [];
    let done = false;
    const onAbort = (): void => finish(abortReason(signal!));
    const finish = (err: Error | null, result?: Identification): void => {
      if (done) return;
      done = true;
      signal?.removeEventListener("abort", onAbort);
      for (const t of timers) clearTimeout(t);
      try {
        sock.close();
      } catch {
        // already closed
      }
      if (err) reject(err);
      else resolve(result!);
    };
    const send = (): void => {
      if (sent === 0) start = performance.now();
      sent++;
      sock.send(request, port, address, (err) => {
        if (err && sent === 1) finish(err);
      });
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    sock.on("error", (err) => finish(err));
    sock.on("message", (msg, rinfo) => {
      if (rinfo.port !== port || canonicalAddress(rinfo.address) !== expected) return; // not the probed address: never trusted
      const r = decodeProbeResponse(msg);
      if (r === null) return;
      const signed = r.bound ? udpBoundMessage(nonce, r.serverId, r.generation, expected, port) : udpSignedMessage(nonce, r.serverId, r.generation);
      if (signed === null || !verifySignature(signed, r.signature, r.publicKey)) {
        badSignature = true;
        return;
      }
      finish(null, {
        serverId: bytesToUuid(r.serverId),
        publicKey: Buffer.from(r.publicKey),
        keyFingerprint: keyFingerprint(r.publicKey),
        generation: r.generation,
        address,
        port,
        transport: "udp",
        rttMs: performance.now() - start,
        bound: r.bound === true,
      });
    });
    sock.bind(0, () => {
      send();
      for (let i = 1; i < attempts; i++) timers.push(setTimeout(send, (timeoutMs * i) / attempts));
      timers.push(
        setTimeout(() => {
          const where = formatHostPort(address, port);
          finish(
            badSignature
              ? new SignatureError(`Cannot identify ${where}: a reply came but its signature does not verify`)
              : new TimeoutError("PERILINK_PROBE_TIMEOUT", `Cannot identify ${where}: no UDP answer in ${timeoutMs} ms; is a perilink server listening there?`),
          );
        }, timeoutMs),
      );
    });
  });
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error("identification aborted");
}

/**
 * C1 over TCP: the identity from a session handshake, whose signature over
 * both hellos clientHandshake verifies. Only the handshake: this process's
 * proof goes out as a session's would, then the connection closes; no
 * session is set up for it.
 */
export async function identifyTcp(host: string, port: number, options: IdentifyOptions = {}): Promise<Identification> {
  const address = stripBrackets(host);
  const start = performance.now();
  const timeoutMs = checkMs(options.timeoutMs ?? 1000, "identifyTcp option", "timeoutMs");
  const h = await clientHandshake({ host: address, port, timeoutMs, maxFrame: TARGET.client.maxFrameBytes });
  const rttMs = performance.now() - start;
  startSealed(h, processClientKey());
  h.socket.destroy();
  const publicKey = Buffer.from(h.hello.publicKey);
  return {
    serverId: bytesToUuid(h.hello.serverId),
    publicKey,
    keyFingerprint: keyFingerprint(publicKey),
    generation: h.hello.generation,
    address,
    port,
    transport: "tcp",
    rttMs,
    bound: false, // a session proves who holds the key, not where: a relay could carry it
  };
}
