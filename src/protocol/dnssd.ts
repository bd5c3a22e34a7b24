/**
 * What a perilink server advertises with DNS-SD (RFC 6763) and what a
 * browser reads back: the service type, the TXT keys, and their limits. The
 * server's responder, its avahi service file and the client's browser share
 * this one definition. TXT is a hint only: a browser trusts the signed UDP
 * probe of the address it found, never what the TXT claims.
 */

/** The service type (RFC 6763 §7) and the enumeration name (§9). */
export const SERVICE_TYPE = "_perilink._tcp.local";
export const SERVICES_ENUMERATION = "_services._dns-sd._udp.local";

/** What the TXT record carries (RFC 6763 §6: `key=value` strings, short keys). */
export interface ServiceTxt {
  /** The server id (a UUID). */
  id: string;
  /** The key fingerprint, `SHA256:…`. */
  fp: string;
  /** The program version. */
  ver: string;
  /** Every port the server listens on, in order. */
  ports: number[];
}

/** RFC 6763 §6.1: one string is at most 255 bytes; we keep each value shorter, and read at most this many strings. */
const MAX_VALUE_CHARS = 200;
const MAX_TXT_STRINGS = 16;
export const MAX_TXT_PORTS = 16;

/** The TXT strings of a server, `key=value` each. */
export function encodeTxt(t: ServiceTxt): string[] {
  return [`id=${t.id}`, `fp=${t.fp}`, `ver=${t.ver}`, `ports=${t.ports.slice(0, MAX_TXT_PORTS).join(",")}`];
}

/**
 * The TXT a peer sent, read leniently: unknown keys and malformed values are
 * left out (a key given twice: the first counts, RFC 6763 §6.4). Never throws.
 */
export function decodeTxt(data: unknown): Partial<ServiceTxt> {
  const strings = (Array.isArray(data) ? data : [data]).slice(0, MAX_TXT_STRINGS);
  const out: Partial<ServiceTxt> = {};
  const seen = new Set<string>();
  for (const s of strings) {
    const text = typeof s === "string" ? s : s instanceof Uint8Array ? new TextDecoder().decode(s) : "";
    const eq = text.indexOf("=");
    if (eq <= 0 || text.length - eq - 1 > MAX_VALUE_CHARS) continue;
    const key = text.slice(0, eq).toLowerCase();
    const value = text.slice(eq + 1);
    if (seen.has(key)) continue;
    seen.add(key);
    if (key === "id" && /^[0-9a-f-]{36}$/i.test(value)) out.id = value.toLowerCase();
    else if (key === "fp" && /^SHA256:[A-Za-z0-9+/=]{1,64}$/.test(value)) out.fp = value;
    else if (key === "ver" && /^[\x21-\x7e]{1,64}$/.test(value)) out.ver = value;
    else if (key === "ports") {
      const ports = value.split(",", MAX_TXT_PORTS).map(Number);
      if (ports.length > 0 && ports.every((p) => Number.isInteger(p) && p > 0 && p < 65536)) out.ports = ports;
    }
  }
  return out;
}

/** An instance name (RFC 6763 §4.1.1: up to 63 bytes of UTF-8) from a host name. */
export function instanceLabel(hostname: string): string {
  const label = hostname.split(".")[0]!.replace(/[\x00-\x1f\x7f]/g, "") || "perilink";
  let out = "";
  for (const ch of label) {
    if (new TextEncoder().encode(out + ch).length > 63) break;
    out += ch;
  }
  return out;
}

/** A host name as a single `.local` label (RFC 6762 §3), for the SRV target and the address records. */
export function localHostName(hostname: string): string {
  const label = hostname.split(".")[0]!.toLowerCase().replace(/[^a-z0-9-]/g, "-").slice(0, 63) || "perilink";
  return `${label}.local`;
}
