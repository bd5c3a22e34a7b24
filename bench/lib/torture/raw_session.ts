import net from "node:net";
import { processClientKey, type ClientKey } from "../../../src/client/client_key.ts";
import { MAX_MAX_FRAME } from "../../../src/protocol/constants.ts";
import { FrameWriter } from "../../../src/protocol/frame_writer.ts";
import { RecordSealer } from "../../../src/protocol/record_layer.ts";
import { clientAuth, ClientHandshakeV2, SERVER_HELLO_V2_SIZE } from "../../../src/protocol/sealed_handshake.ts";

/**
 * Raw protocol pieces for the attacks: a client hello, one whole frame as
 * bytes, and a connection that completes the handshake by hand (no client
 * library, so an attack does exactly what it says on the wire).
 */

/** A valid client hello (protocol v2) announcing the largest frame limit (so every PONG fits) and a fresh ephemeral key. */
export function clientHello(): Buffer {
  return new ClientHandshakeV2({ ciphers: ["chacha20-poly1305"], maxFrame: MAX_MAX_FRAME }).hello;
}

/** One frame (header and payload) as a single buffer, encoded by the project's own frame writer. */
export function encodeFrame(type: number, channel: number, stream: number, payload: Uint8Array): Buffer {
  const parts: Buffer[] = [];
  const sink = {
    destroyed: false,
    writableEnded: false,
    write(chunk: Uint8Array): boolean {
      parts.push(Buffer.from(chunk));
      return true;
    },
    cork(): void {},
    uncork(): void {},
  };
  const writer = new FrameWriter(sink);
  writer.frame(type, channel, stream, payload);
  writer.flush();
  return Buffer.concat(parts);
}

export interface OpenedSession {
  socket: net.Socket;
  /** Server hello status: 0 accepted, 11 ServerBusy, …. */
  status: number;
  /** The server's maxFrame (0 in a refusal). */
  maxFrame: number;
  /** Seals `plaintext` (frames) as one record and writes it (the attacker pays for the encryption too). */
  send(plaintext: Buffer): boolean;
}

/**
 * Connects from `localAddress`, completes the sealed handshake (its client
 * hello, the server hello, the proof of `key`: by default one made for this
 * process, which a device with `access: "keys"` does not trust). Resolves with the socket paused (nothing more is read unless
 * the caller resumes it) and an error listener attached; rejects when the
 * connection fails or closes first, or after `timeoutMs`.
 */
export function openSession(host: string, port: number, localAddress: string, timeoutMs: number, track?: Set<net.Socket>, key: ClientKey = processClientKey()): Promise<OpenedSession> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, localAddress });
    track?.add(socket);
    socket.once("close", () => track?.delete(socket));
    socket.on("error", () => {});
    let got = Buffer.alloc(0);
    const finish = (err: Error | null): void => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", onClose);
      if (err) {
        socket.destroy();
        reject(err);
        return;
      }
      socket.pause();
      let result: ReturnType<ClientHandshakeV2["finish"]>;
      try {
        result = hs.finish(got.subarray(0, SERVER_HELLO_V2_SIZE));
      } catch (e) {
        socket.destroy();
        reject(e as Error);
        return;
      }
      const { hello, sealed } = result;
      if (sealed === null) {
        resolve({ socket, status: hello.status, maxFrame: 0, send: () => false });
        return;
      }
      const sealer = new RecordSealer(sealed.cipher, sealed.keys.clientToServer);
      const send = (plaintext: Buffer): boolean => {
        let ok = true;
        for (const r of sealer.seal([plaintext], plaintext.length)) ok = socket.write(r);
        return ok;
      };
      send(clientAuth(key.publicKey, key.sign, sealed.transcript));
      resolve({ socket, status: 0, maxFrame: hello.maxFrame, send });
    };
    const onData = (chunk: Buffer): void => {
      got = Buffer.concat([got, chunk]);
      if (got.length >= SERVER_HELLO_V2_SIZE) finish(null);
    };
    const onClose = (): void => finish(new Error("closed before the server hello"));
    const timer = setTimeout(() => finish(new Error(`no server hello within ${timeoutMs} ms`)), timeoutMs);
    socket.on("data", onData);
    socket.on("close", onClose);
    const hs = new ClientHandshakeV2({ ciphers: ["chacha20-poly1305"], maxFrame: MAX_MAX_FRAME });
    socket.once("connect", () => socket.write(hs.hello));
  });
}

/**
 * A flood worker's next session: one paced turn (false: the attack is over),
 * counted in `attempts`; one that got no server hello counts in `noHello`
 * and comes back null.
 */
export async function pacedSession(
  pace: { take(): Promise<boolean> },
  stopper: { readonly stopped: boolean },
  counters: Record<string, number>,
  target: { host: string; port: number },
  source: string,
  track: Set<net.Socket>,
): Promise<OpenedSession | null | false> {
  if (!(await pace.take()) || stopper.stopped) return false;
  counters.attempts!++;
  try {
    return await openSession(target.host, target.port, source, 5000, track);
  } catch {
    if (!stopper.stopped) counters.noHello!++;
    return null;
  }
}
