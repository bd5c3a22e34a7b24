import { addressFamily, isLinkLocal, stripZone } from "../address.ts";
import { encodeAddresses } from "../protocol/payloads.ts";

/** An address and port the server listens on. */
interface Listening {
  readonly address: string;
  readonly port: number;
}

/**
 * The ADDRESSES payload (docs/protocol.md §5.4) for a session that arrived on
 * `localAddress`: the addresses the server listens on that such a client can
 * use — not link-local ones (their zone is the server's own interface), not
 * loopback ones unless the session itself came over loopback — at most
 * MAX_ADVERTISED, the session's own address first. Null when that would
 * tell the client nothing: no address, or only the one it came to.
 */
export function advertisedFor(listening: readonly Listening[], localAddress: string): Buffer | null {
  const local = stripZone(localAddress).replace(/^::ffff:(?=\d+\.)/, "");
  const viaLoopback = isLoopback(local);
  const seen = new Set<string>();
  const out: { host: string; port: number }[] = [];
  for (const l of listening) {
    const host = stripZone(l.address);
    const family = addressFamily(host);
    if (family === 0 || (family === 6 && host.includes(".")) || host === "0.0.0.0" || host === "::") continue; // a wildcard names no address
    if (isLinkLocal(host) || host.startsWith("169.254.")) continue;
    if (isLoopback(host) !== viaLoopback) continue;
    const key = `${host} ${l.port}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (host === local) out.unshift({ host, port: l.port });
    else out.push({ host, port: l.port });
  }
  // Only the address the session arrived on: the client knows it already.
  if (out.length === 0 || (out.length === 1 && out[0]!.host === local)) return null;
  return encodeAddresses(out);
}

function isLoopback(host: string): boolean {
  return host === "::1" || host.startsWith("127.");
}
