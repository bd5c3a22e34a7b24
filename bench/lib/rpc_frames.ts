/**
 * The frames of the length-prefixed echo RPC (bench/lib/raw_rpc.ts and
 * bench/lib/raw_rpc_batched.ts): a 4-byte big-endian payload length, a 4-byte
 * request id, then the payload.
 */

/** Length and id, before the payload. */
export const HEADER_SIZE = 8;

/** Encodes one message. */
export function encodeMessage(id: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER_SIZE + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.writeUInt32BE(id, 4);
  out.set(payload, HEADER_SIZE);
  return out;
}

/** Returns a `data` handler that splits the byte stream into messages. */
export function messageReader(onMessage: (id: number, payload: Buffer) => void): (chunk: Buffer) => void {
  let rest: Buffer = Buffer.alloc(0);
  return (chunk) => {
    const buf = rest.length === 0 ? chunk : Buffer.concat([rest, chunk]);
    let off = 0;
    while (buf.length - off >= HEADER_SIZE) {
      const len = buf.readUInt32BE(off);
      if (buf.length - off - HEADER_SIZE < len) break;
      onMessage(buf.readUInt32BE(off + 4), buf.subarray(off + HEADER_SIZE, off + HEADER_SIZE + len));
      off += HEADER_SIZE + len;
    }
    rest = buf.subarray(off);
  };
}
