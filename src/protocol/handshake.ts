import { ProtocolError } from "../errors.ts";
import {
  CLIENT_HELLO_SIZE,
  MAGIC,
  MAX_MAX_FRAME,
  MIN_MAX_FRAME,
  NONCE_SIZE,
  PROTOCOL_VERSION,
  PUBLIC_KEY_SIZE,
  SERVER_HELLO_SIZE,
  SERVER_ID_SIZE,
  SIGNATURE_SIZE,
  TCP_SIGNATURE_CONTEXT,
  WireError,
} from "./constants.ts";

export interface ClientHello {
  version: number;
  /** Largest frame payload the client accepts. */
  maxFrame: number;
  nonce: Uint8Array;
}

export interface ServerHello {
  version: number;
  /** 0 when the session is accepted; else a `WireError` code and the server closes. */
  status: number;
  serverId: Uint8Array;
  publicKey: Uint8Array;
  signature: Uint8Array;
  /** Largest frame payload the server accepts. */
  maxFrame: number;
  maxChannels: number;
  maxInflight: number;
  generation: number;
  idleTimeoutMs: number;
}

export function encodeClientHello(hello: ClientHello): Buffer {
  const b = Buffer.alloc(CLIENT_HELLO_SIZE);
  b.writeUInt32BE(MAGIC, 0);
  b[4] = hello.version;
  b.writeUInt32BE(hello.maxFrame, 8);
  b.set(hello.nonce.subarray(0, NONCE_SIZE), 16);
  return b;
}

/**
 * Decodes the 32-byte client hello. A wrong magic is a `ProtocolError`; a
 * version other than ours is returned as is, for the server to answer with
 * `VersionUnsupported`.
 */
export function decodeClientHello(b: Buffer): ClientHello {
  if (b.length < CLIENT_HELLO_SIZE) {
    throw new ProtocolError(WireError.ProtocolError, `Cannot decode client hello: ${b.length} of ${CLIENT_HELLO_SIZE} bytes`);
  }
  if (b.readUInt32BE(0) !== MAGIC) {
    throw new ProtocolError(WireError.ProtocolError, "Cannot decode client hello: bad magic (not a perilink client)");
  }
  const maxFrame = b.readUInt32BE(8);
  const version = b[4]!;
  if (version === PROTOCOL_VERSION && (maxFrame < MIN_MAX_FRAME || maxFrame > MAX_MAX_FRAME)) {
    throw new ProtocolError(
      WireError.ProtocolError,
      `Cannot decode client hello: maxFrame ${maxFrame} outside ${MIN_MAX_FRAME}..${MAX_MAX_FRAME}`,
    );
  }
  return { version, maxFrame, nonce: b.subarray(16, 16 + NONCE_SIZE) };
}

export function encodeServerHello(hello: ServerHello): Buffer {
  const b = Buffer.alloc(SERVER_HELLO_SIZE);
  b.writeUInt32BE(MAGIC, 0);
  b[4] = hello.version;
  b[5] = hello.status;
  let o = 8;
  b.set(hello.serverId, o);
  o += SERVER_ID_SIZE;
  b.set(hello.publicKey, o);
  o += PUBLIC_KEY_SIZE;
  b.set(hello.signature, o);
  o += SIGNATURE_SIZE;
  b.writeUInt32BE(hello.maxFrame, o);
  b.writeUInt32BE(hello.maxChannels, o + 4);
  b.writeUInt32BE(hello.maxInflight, o + 8);
  b.writeUInt32BE(hello.generation, o + 12);
  b.writeUInt32BE(hello.idleTimeoutMs, o + 16);
  return b;
}

/** A refusal: status set, every other field zero. */
export function encodeServerRefusal(status: number): Buffer {
  const b = Buffer.alloc(SERVER_HELLO_SIZE);
  b.writeUInt32BE(MAGIC, 0);
  b[4] = PROTOCOL_VERSION;
  b[5] = status;
  return b;
}

export function decodeServerHello(b: Buffer): ServerHello {
  if (b.length < SERVER_HELLO_SIZE) {
    throw new ProtocolError(WireError.ProtocolError, `Cannot decode server hello: ${b.length} of ${SERVER_HELLO_SIZE} bytes`);
  }
  if (b.readUInt32BE(0) !== MAGIC) {
    throw new ProtocolError(WireError.ProtocolError, "Cannot decode server hello: bad magic (not a perilink server)");
  }
  let o = 8;
  const serverId = b.subarray(o, (o += SERVER_ID_SIZE));
  const publicKey = b.subarray(o, (o += PUBLIC_KEY_SIZE));
  const signature = b.subarray(o, (o += SIGNATURE_SIZE));
  const hello: ServerHello = {
    version: b[4]!,
    status: b[5]!,
    serverId,
    publicKey,
    signature,
    maxFrame: b.readUInt32BE(o),
    maxChannels: b.readUInt32BE(o + 4),
    maxInflight: b.readUInt32BE(o + 8),
    generation: b.readUInt32BE(o + 12),
    idleTimeoutMs: b.readUInt32BE(o + 16),
  };
  if (hello.status === 0 && (hello.maxFrame < MIN_MAX_FRAME || hello.maxFrame > MAX_MAX_FRAME)) {
    throw new ProtocolError(
      WireError.ProtocolError,
      `Cannot decode server hello: maxFrame ${hello.maxFrame} outside ${MIN_MAX_FRAME}..${MAX_MAX_FRAME}`,
    );
  }
  return hello;
}

/** The bytes the server signs in the TCP handshake: context ‖ nonce ‖ serverId. */
export function tcpSignedMessage(nonce: Uint8Array, serverId: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(TCP_SIGNATURE_CONTEXT, "ascii"), nonce, serverId]);
}
