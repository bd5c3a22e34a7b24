import { CLIENT_HELLO_SIZE, MAGIC, NONCE_SIZE, SERVER_HELLO_SIZE } from "./constants.ts";

/**
 * The protocol v1 hello layouts (32-byte client hello, 140-byte server
 * hello), kept only to tell a v1 peer, in its own layout, that this side
 * speaks version 2 (docs/protocol.md §2): a v2 server answers a v1 client
 * hello with a v1 refusal. Sessions use sealed_handshake.ts.
 */

export interface ClientHello {
  version: number;
  /** Largest frame payload the client accepts. */
  maxFrame: number;
  nonce: Uint8Array;
}

export function encodeClientHello(hello: ClientHello): Buffer {
  const b = Buffer.alloc(CLIENT_HELLO_SIZE);
  b.writeUInt32BE(MAGIC, 0);
  b[4] = hello.version;
  b.writeUInt32BE(hello.maxFrame, 8);
  b.set(hello.nonce.subarray(0, NONCE_SIZE), 16);
  return b;
}

/** A refusal: status set, every other field zero. */
export function encodeServerRefusal(status: number): Buffer {
  const b = Buffer.alloc(SERVER_HELLO_SIZE);
  b.writeUInt32BE(MAGIC, 0);
  b[4] = 1;
  b[5] = status;
  return b;
}
