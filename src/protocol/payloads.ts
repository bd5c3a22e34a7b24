import { ProtocolError } from "../errors.ts";
import { WireError } from "./constants.ts";

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
