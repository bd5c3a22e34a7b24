import net from "node:net";
import { canonicalAddress, ipv6Groups, mappedIPv4 } from "../address.ts";
import { ProtocolError } from "../errors.ts";
import { MAX_ADVERTISED, WireError } from "./constants.ts";

/** What a CHANNEL_OPEN frame carries: the application and the address it asked for. */
export interface ChannelOpen {
  app: string;
  requestedHost: string;
  requestedPort: number;
}

/** A code and a reason: the payload of ERROR and GOAWAY frames. */
export interface CodedReason {
  code: number;
  reason: string;
}

const MAX_NAME = 255;

function bad(what: string): ProtocolError {
  return new ProtocolError(WireError.ProtocolError, `Cannot decode ${what}`);
}

/** u8 appLen ‖ app ‖ u8 hostLen ‖ host ‖ u16 port. */
export function encodeChannelOpen(open: ChannelOpen): Buffer {
  const app = Buffer.from(open.app, "utf8");
  const host = Buffer.from(open.requestedHost, "utf8");
  if (app.length === 0 || app.length > MAX_NAME) throw new RangeError(`application id must be 1..${MAX_NAME} bytes of UTF-8`);
  if (host.length > MAX_NAME) throw new RangeError(`requested host must be at most ${MAX_NAME} bytes of UTF-8`);
  const b = Buffer.allocUnsafe(1 + app.length + 1 + host.length + 2);
  let o = 0;
  b[o++] = app.length;
  o += app.copy(b, o);
  b[o++] = host.length;
  o += host.copy(b, o);
  b.writeUInt16BE(open.requestedPort & 0xffff, o);
  return b;
}

export function decodeChannelOpen(b: Buffer): ChannelOpen {
  if (b.length < 4) throw bad("channel open: too short");
  const appLen = b[0]!;
  if (appLen === 0 || b.length < 1 + appLen + 1 + 2) throw bad("channel open: bad application id length");
  const app = b.toString("utf8", 1, 1 + appLen);
  const hostLen = b[1 + appLen]!;
  const hostStart = 2 + appLen;
  if (b.length !== hostStart + hostLen + 2) throw bad("channel open: bad length");
  const requestedHost = b.toString("utf8", hostStart, hostStart + hostLen);
  const requestedPort = b.readUInt16BE(hostStart + hostLen);
  return { app, requestedHost, requestedPort };
}

/** u16 code ‖ UTF-8 reason (truncated to fit `max` bytes). */
export function encodeCodedReason(code: number, reason: string, max = 1024): Buffer {
  const text = Buffer.from(reason, "utf8");
  const len = Math.min(text.length, Math.max(0, max - 2));
  const b = Buffer.allocUnsafe(2 + len);
  b.writeUInt16BE(code & 0xffff, 0);
  text.copy(b, 2, 0, len);
  return b;
}

export function decodeCodedReason(b: Buffer): CodedReason {
  if (b.length < 2) throw bad("error payload: too short");
  return { code: b.readUInt16BE(0), reason: b.toString("utf8", 2) };
}

/** A WINDOW payload (§4.7): the u32 increment. */
export function windowPayload(increment: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(increment, 0);
  return b;
}

/** An address the server listens on, as ADDRESSES carries it (§5.4). */
export interface AdvertisedAddress {
  host: string;
  port: number;
}

/** ADDRESSES payload (numeric IPv4 or IPv6 hosts, no zone): u8 count ‖ count × (u8 family 4|6 ‖ 4|16 address bytes ‖ u16 port); at most MAX_ADVERTISED. */
export function encodeAddresses(list: readonly AdvertisedAddress[]): Buffer {
  const parts: Buffer[] = [Buffer.from([Math.min(list.length, MAX_ADVERTISED)])];
  for (const a of list.slice(0, MAX_ADVERTISED)) {
    const v4 = net.isIPv4(a.host);
    const b = Buffer.alloc(v4 ? 7 : 19);
    b[0] = v4 ? 4 : 6;
    if (v4) a.host.split(".").forEach((o, i) => (b[1 + i] = Number(o)));
    else ipv6Groups(a.host)!.forEach((g, i) => b.writeUInt16BE(g, 1 + 2 * i));
    b.writeUInt16BE(a.port, v4 ? 5 : 17);
    parts.push(b);
  }
  return Buffer.concat(parts);
}

/** Reads an ADDRESSES payload; anything malformed (a count above MAX_ADVERTISED, a bad family, a length that does not match) is a ProtocolError. */
export function decodeAddresses(b: Buffer): AdvertisedAddress[] {
  const bad = (why: string): never => {
    throw new ProtocolError(WireError.ProtocolError, `Cannot accept ADDRESSES: ${why}`);
  };
  if (b.length < 1) bad("empty payload");
  const count = b[0]!;
  if (count > MAX_ADVERTISED) bad(`${count} addresses, more than ${MAX_ADVERTISED}`);
  const out: AdvertisedAddress[] = [];
  let off = 1;
  for (let i = 0; i < count; i++) {
    const family = b[off];
    const size = family === 4 ? 4 : family === 6 ? 16 : bad(`address family ${family}`);
    if (off + 1 + size + 2 > b.length) bad("payload shorter than its count");
    const raw = b.subarray(off + 1, off + 1 + size);
    const groups = family === 6 ? Array.from({ length: 8 }, (_, g) => raw.readUInt16BE(2 * g)) : null;
    // An IPv4-mapped address is read as the IPv4 address it stands for, so the IPv4 checks apply to it.
    const host = groups === null ? [...raw].join(".") : (mappedIPv4(groups) ?? canonicalAddress(groups.map((g) => g.toString(16)).join(":")));
    const port = b.readUInt16BE(off + 1 + size);
    if (port === 0) bad("port 0");
    out.push({ host, port });
    off += 1 + size + 2;
  }
  if (off !== b.length) bad("trailing bytes");
  return out;
}
