import net from "node:net";
import { ConfigError } from "../errors.ts";

/** One `--listen` entry: a numeric address, or `auto` for every address of the device. */
export type ListenSpec =
  | { kind: "address"; address: string; family: 4 | 6; port: number }
  | { kind: "auto"; port: number };

function parsePort(text: string, entry: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) {
    throw new ConfigError(`Cannot use listen address "${entry}": port must be a number from 0 to 65535`);
  }
  return Number(text);
}

/**
 * Parses `HOST:PORT`, `[IPV6]:PORT`, `[fe80::1%eth0]:PORT` or `auto:PORT`.
 * Host names are refused: a listener binds addresses, not names.
 */
export function parseListenSpec(entry: string): ListenSpec {
  const hint = 'use "127.0.0.1:1025", "[::1]:1025", "[fe80::1%eth0]:1025" or "auto:1025"';
  if (typeof entry !== "string" || entry.length === 0) {
    throw new ConfigError(`Cannot use listen address: it is empty; ${hint}`);
  }
  if (entry.startsWith("[")) {
    const close = entry.indexOf("]");
    if (close < 0 || entry[close + 1] !== ":") throw new ConfigError(`Cannot use listen address "${entry}": ${hint}`);
    const address = entry.slice(1, close);
    const port = parsePort(entry.slice(close + 2), entry);
    const pct = address.indexOf("%");
    const bare = pct < 0 ? address : address.slice(0, pct);
    if (net.isIPv6(bare) !== true) throw new ConfigError(`Cannot use listen address "${entry}": "${bare}" is not an IPv6 address`);
    if (pct >= 0) {
      const zone = address.slice(pct + 1);
      if (!/^[A-Za-z][\w.-]{0,14}$/.test(zone)) {
        throw new ConfigError(`Cannot use listen address "${entry}": the zone must be an interface name such as eth0, not "${zone}"`);
      }
    }
    return { kind: "address", address, family: 6, port };
  }
  const colon = entry.lastIndexOf(":");
  if (colon < 0) throw new ConfigError(`Cannot use listen address "${entry}": the port is missing; ${hint}`);
  const host = entry.slice(0, colon);
  const port = parsePort(entry.slice(colon + 1), entry);
  if (host === "auto") return { kind: "auto", port };
  if (host.includes(":")) throw new ConfigError(`Cannot use listen address "${entry}": write IPv6 addresses in brackets; ${hint}`);
  if (!net.isIPv4(host)) throw new ConfigError(`Cannot use listen address "${entry}": "${host}" is not a numeric address; ${hint}`);
  return { kind: "address", address: host, family: 4, port };
}
