/**
 * A listening socket this process did not bind: handed over open by the
 * process it replaces (S4) or passed by systemd (socket activation, S7). The
 * listener set adopts it for the endpoint with its address and port.
 *
 * A perilink parent names each socket `<tcp|udp>@<address, URI-encoded>@<port>`
 * in `LISTEN_FDNAMES` (names may not contain ':'), so the new process can
 * match them to its configured endpoints; a systemd unit may use the same form.
 */

export type Transport = "tcp" | "udp";

export interface InheritedSocket {
  fd: number;
  transport: Transport;
  address: string;
  port: number;
  /** Passed by systemd (socket activation) rather than by a perilink parent. */
  fromSystemd?: boolean;
  /**
   * The handle that owns `fd`, for a socket this process kept open unwatched
   * (listener_set.ts `closeKeeping()`): listened on as it is, closed through it.
   */
  handle?: { readonly fd: number; close(): void };
}

export function socketName(transport: Transport, address: string, port: number): string {
  return `${transport}@${encodeURIComponent(address)}@${port}`;
}

export function parseSocketName(name: string): { transport: Transport; address: string; port: number } | null {
  const m = /^(tcp|udp)@([^@]+)@(\d{1,5})$/.exec(name);
  if (!m) return null;
  let address: string;
  try {
    address = decodeURIComponent(m[2]!);
  } catch {
    return null;
  }
  return { transport: m[1] as Transport, address, port: Number(m[3]) };
}
