import { randomBytes } from "node:crypto";
import net from "node:net";
import { FRAME_HEADER_SIZE } from "../../src/protocol/constants.ts";
import { encodeClientHello } from "../../src/protocol/handshake.ts";

export interface RawPeer {
  sock: net.Socket;
  /** Everything the server sent so far (empty for a peer that never reads). */
  data(): Buffer;
  closed: Promise<void>;
}

/**
 * A raw TCP peer: collects what the server sends and when it closes. `read: false` never reads a byte;
 * `allowHalfOpen` keeps our side open after the server's FIN.
 */
export async function rawPeer(port: number, options: { read?: boolean; localAddress?: string; allowHalfOpen?: boolean } = {}): Promise<RawPeer> {
  const sock = net.connect({ port, host: "127.0.0.1", localAddress: options.localAddress, allowHalfOpen: options.allowHalfOpen });
  const chunks: Buffer[] = [];
  if (options.read === false) sock.pause();
  else sock.on("data", (c: Buffer) => chunks.push(c));
  sock.on("error", () => {});
  const closed = new Promise<void>((r) => sock.once("close", () => r()));
  await new Promise<void>((resolve, reject) => {
    sock.once("connect", () => resolve());
    sock.once("error", reject);
  });
  return { sock, data: () => Buffer.concat(chunks), closed };
}

/** A valid client hello. */
export const hello = (maxFrame = 65536): Buffer => encodeClientHello({ version: 1, maxFrame, nonce: randomBytes(16) });

/** One frame with its 16-byte header; `lengthOverride` writes another length than the payload's. */
export function frame(type: number, channel: number, stream: number, payload: Buffer, lengthOverride?: number): Buffer {
  const h = Buffer.alloc(FRAME_HEADER_SIZE);
  h.writeUInt32BE(lengthOverride ?? payload.length, 0);
  h[4] = type;
  h.writeUInt32BE(channel, 8);
  h.writeUInt32BE(stream, 12);
  return Buffer.concat([h, payload]);
}

/** The payload of a CHANNEL_OPEN for app `name` (docs/protocol.md §4.1). */
export function channelOpen(name = "a"): Buffer {
  return Buffer.concat([Buffer.from([name.length]), Buffer.from(name), Buffer.from([0, 0, 0])]);
}
