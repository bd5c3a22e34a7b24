/**
 * Wire protocol constants. docs/protocol.md is the specification; every
 * number here is named there. Sessions speak version 2 (sealed_handshake.ts);
 * the UDP identify probe is unchanged from version 1.
 */

/** "PLNK" as a big-endian u32: starts every hello and every UDP probe. */
export const MAGIC = 0x504c4e4b;
/** The version byte of the UDP probe (§7). */
export const PROTOCOL_VERSION = 1;

/** A protocol v1 client hello (refused, in the v1 layout: handshake.ts). */
export const CLIENT_HELLO_SIZE = 32;
/** A protocol v1 server hello, the layout of the refusal a v1 client gets. */
export const SERVER_HELLO_SIZE = 140;
/** Frame header: length u32, type u8, flags u8, reserved u16, channel u32, stream u32. */
export const FRAME_HEADER_SIZE = 16;

export const NONCE_SIZE = 16;
export const SERVER_ID_SIZE = 16;
export const PUBLIC_KEY_SIZE = 32;
export const SIGNATURE_SIZE = 64;

/** A probe request is padded to this size; shorter datagrams get no answer. */
export const PROBE_REQUEST_SIZE = 128;
/** A probe response is this size: never larger than the request it answers. */
export const PROBE_RESPONSE_SIZE = 124;
export const PROBE_TYPE_REQUEST = 1;
export const PROBE_TYPE_RESPONSE = 2;

/** Smallest frame payload limit a peer may announce. */
export const MIN_MAX_FRAME = 1024;
/** Largest frame payload limit a peer may announce (16 MiB). */
export const MAX_MAX_FRAME = 16 * 1024 * 1024;
/** Largest PING payload a receiver accepts (a bigger one is a protocol error): PING costs the peer as much as it costs us. */
export const MAX_PING_PAYLOAD = 64;

/** Domain separation of the probe's signed message (the handshake's are in key_exchange.ts). */
export const UDP_SIGNATURE_CONTEXT = "perilink/udp/1";
/** The context of a probe answer bound to the address and port it was received on (§7.7). */
export const UDP_BOUND_SIGNATURE_CONTEXT = "perilink/udp/2";
/** Probe request and response flag (byte 6): the answer is bound to the address probed (§7.7). */
export const PROBE_FLAG_BOUND = 0x01;

// Enums, not objects: the bundler puts each value in place of its name (no lookup, no name
// in the bundle), and the reverse mapping names a code (wireErrorName).
export enum FrameType {
  ChannelOpen = 1,
  ChannelOk = 2,
  ChannelClose = 3,
  Request = 4,
  Response = 5,
  Message = 6,
  Cancel = 7,
  Ping = 8,
  Pong = 9,
  GoAway = 10,
  Error = 11,
  /** A chunk of a streamed request or response body (§4.7). */
  Data = 12,
  /** Flow-control credit for DATA: stream 0 for the session, else that stream (§4.7). */
  Window = 13,
  /** S→C: the addresses the server listens on for this port group (§5.4). */
  Addresses = 14,
}
export type FrameTypeValue = FrameType;
export const MAX_FRAME_TYPE = 14;
/** The most addresses one ADDRESSES frame lists. */
export const MAX_ADVERTISED = 16;

/** Frame flags (§3.1). */
export enum FrameFlag {
  /** On REQUEST or RESPONSE: the body goes on in DATA frames of the same stream. */
  Streamed = 0x01,
  /** On DATA: the last chunk of its body. */
  End = 0x02,
}

/** A WINDOW payload: one u32 increment. */
export const WINDOW_PAYLOAD_SIZE = 4;
/** The largest window a receiver may open, per stream or per session (2^31 − 1, as in HTTP/2). */
export const MAX_WINDOW = 0x7fff_ffff;

/** What a stream may send before any WINDOW: the receiver's announced maxFrame (§4.7). */
export function initialStreamWindow(receiverMaxFrame: number): number {
  return receiverMaxFrame;
}
/** What all the streams of a session together may send before any WINDOW: four of the receiver's frames. */
export function initialSessionWindow(receiverMaxFrame: number): number {
  return 4 * receiverMaxFrame;
}

/** Numeric error codes carried in ERROR and GOAWAY frames and in the server hello status. */
export enum WireError {
  None = 0,
  ProtocolError = 1,
  FrameTooLarge = 2,
  LimitExceeded = 3,
  UnknownChannel = 4,
  ApplicationError = 5,
  RefusedStream = 6,
  Cancelled = 7,
  Internal = 8,
  Timeout = 9,
  VersionUnsupported = 10,
  ServerBusy = 11,
  ShuttingDown = 12,
  /** The client's key is not trusted for the channel's app (server `access: "keys"`). */
  AccessDenied = 13,
  /** DATA beyond the credit the receiver gave, or a WINDOW past 2^31 − 1 (§4.7). */
  FlowControl = 14,
}
export type WireErrorValue = WireError;

/** The name of a wire error code, or `Unknown(n)`. */
export function wireErrorName(code: number): string {
  return WireError[code] ?? `Unknown(${code})`;
}
