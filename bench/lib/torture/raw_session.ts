import { randomBytes } from "node:crypto";
import net from "node:net";
import { MAX_MAX_FRAME, PROTOCOL_VERSION, SERVER_HELLO_SIZE } from "../../../src/protocol/constants.ts";
import { FrameWriter } from "../../../src/protocol/frame_writer.ts";
import { decodeServerHello, encodeClientHello } from "../../../src/protocol/handshake.ts";

/**
 * Raw protocol pieces for the attacks: a client hello, one whole frame as
 * bytes, and a connection that completes the handshake by hand (no client
 * library, so an attack does exactly what it says on the wire).
 */

/** A valid client hello announcing the largest frame limit (so every PONG fits) and a fresh nonce. */
export function clientHello(): Buffer {
  return encodeClientHello({ version: PROTOCOL_VERSION, maxFrame: MAX_MAX_FRAME, nonce: randomBytes(16) });
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
}

/**
 * Connects from `localAddress`, sends a client hello and reads the 140-byte
 * server hello. Resolves with the socket paused (nothing more is read unless
 * the caller resumes it) and an error listener attached; rejects when the
 * connection fails or closes first, or after `timeoutMs`.
 */
export function openSession(host: string, port: number, localAddress: string, timeoutMs: number, track?: Set<net.Socket>): Promise<OpenedSession> {
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
      const hello = decodeServerHello(got.subarray(0, SERVER_HELLO_SIZE));
      resolve({ socket, status: hello.status, maxFrame: hello.status === 0 ? hello.maxFrame : 0 });
    };
    const onData = (chunk: Buffer): void => {
      got = Buffer.concat([got, chunk]);
      if (got.length >= SERVER_HELLO_SIZE) finish(null);
    };
    const onClose = (): void => finish(new Error("closed before the server hello"));
    const timer = setTimeout(() => finish(new Error(`no server hello within ${timeoutMs} ms`)), timeoutMs);
    socket.on("data", onData);
    socket.on("close", onClose);
    socket.once("connect", () => socket.write(clientHello()));
  });
}
