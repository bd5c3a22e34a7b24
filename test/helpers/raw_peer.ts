import net from "node:net";
import { processClientKey } from "../../src/client/client_key.ts";
import { FRAME_HEADER_SIZE } from "../../src/protocol/constants.ts";
import { RecordOpener, RecordSealer, type CipherName } from "../../src/protocol/record_layer.ts";
import { clientAuth, ClientHandshakeV2, OUR_FEATURES, recordPlaintextFor, SERVER_HELLO_V2_SIZE } from "../../src/protocol/sealed_handshake.ts";

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

/** A valid client hello (protocol v2), with a fresh ephemeral key. */
export const hello = (maxFrame = 65536): Buffer => new ClientHandshakeV2({ ciphers: ["chacha20-poly1305"], maxFrame }).hello;

export interface SealedPeer {
  /** The TCP socket underneath: `destroyed`, `end()`, `pause()`… (write through `write`). */
  sock: net.Socket;
  /** Seals `plaintext` (frames, whole or in part) into one record and writes it; false on backpressure. */
  write(plaintext: Buffer): boolean;
  /** The plaintext of every record the server sent after its hello (empty for a peer that never reads). */
  data(): Buffer;
  /** The plaintext size of each record the server sent, in order. */
  records: number[];
  closed: Promise<void>;
  /** The status of the server's refusal (e.g. ServerBusy), or 0 when the session was accepted. */
  refused: number;
  /** The cipher the server chose, or null when it refused. */
  cipher: CipherName | null;
}

/**
 * A raw peer past the sealed handshake (protocol v2), its key proven: what
 * it writes reaches the server's frame decoder as it is — whole frames,
 * parts of frames, trickles — inside one record per write. `read: false`
 * reads the server hello, then never another byte.
 */
export async function sealedPeer(
  port: number,
  options: { read?: boolean; localAddress?: string; allowHalfOpen?: boolean; maxFrame?: number; ciphers?: CipherName[]; features?: number } = {},
): Promise<SealedPeer> {
  const sock = net.connect({ port, host: "127.0.0.1", localAddress: options.localAddress, allowHalfOpen: options.allowHalfOpen });
  sock.on("error", () => {});
  const closed = new Promise<void>((r) => sock.once("close", () => r()));
  const hs = new ClientHandshakeV2({ ciphers: options.ciphers ?? ["chacha20-poly1305"], maxFrame: options.maxFrame ?? 65536, features: options.features });
  const got = await new Promise<Buffer>((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c]);
      if (buf.length < SERVER_HELLO_V2_SIZE) return;
      clearTimeout(timer);
      sock.off("data", onData);
      sock.pause();
      resolve(buf);
    };
    sock.once("connect", () => sock.write(hs.hello));
    sock.on("data", onData);
    sock.once("close", () => reject(new Error("the server closed before its hello")));
    // Bounded: a server that neither answers nor closes fails the test instead of hanging it.
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no server hello within 10 s (${buf.length} bytes came)`));
    }, 10_000);
    sock.once("close", () => clearTimeout(timer));
  });
  const { sealed } = hs.finish(got.subarray(0, SERVER_HELLO_V2_SIZE));
  // Refused (as a raw v1 peer was, silently): what it writes goes nowhere.
  if (sealed === null) return { sock, write: () => false, data: () => Buffer.alloc(0), records: [], closed, refused: got[5]!, cipher: null };
  const sealer = new RecordSealer(sealed.cipher, sealed.keys.clientToServer);
  // Records as large as this peer announced it opens (§2.5); its own stay of the default size.
  const opener = new RecordOpener(sealed.cipher, sealed.keys.serverToClient, { maxPlaintext: recordPlaintextFor(options.features ?? OUR_FEATURES) });
  const chunks: Buffer[] = [];
  const records: number[] = [];
  const write = (plaintext: Buffer): boolean => {
    let ok = true;
    for (const r of sealer.seal([plaintext], plaintext.length)) ok = sock.write(r);
    return ok;
  };
  const key = processClientKey();
  write(clientAuth(key.publicKey, key.sign, sealed.transcript));
  if (options.read !== false) {
    const take = (c: Buffer): void => {
      try {
        const from = chunks.length;
        opener.push(c, chunks);
        for (let i = from; i < chunks.length; i++) records.push(chunks[i]!.length);
      } catch {
        sock.destroy();
      }
    };
    if (got.length > SERVER_HELLO_V2_SIZE) take(got.subarray(SERVER_HELLO_V2_SIZE));
    sock.on("data", take);
    sock.resume();
  }
  return { sock, write, data: () => Buffer.concat(chunks), records, closed, refused: 0, cipher: sealed.cipher };
}

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
