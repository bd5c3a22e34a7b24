import { randomBytes } from "node:crypto";
import net from "node:net";
import { ProtocolError, ServerBusyError, SessionClosedError, SignatureError, TimeoutError } from "../errors.ts";
import { NONCE_SIZE, PROTOCOL_VERSION, SERVER_HELLO_SIZE, WireError, wireErrorName } from "../protocol/constants.ts";
import { decodeServerHello, encodeClientHello, tcpSignedMessage, type ServerHello } from "../protocol/handshake.ts";
import { verifySignature } from "../protocol/keys.ts";
import { formatHostPort } from "../address.ts";

export interface HandshakeOptions {
  host: string;
  port: number;
  /** Deadline for connect + server hello, ms. */
  timeoutMs: number;
  /** Largest frame payload we accept (announced in our hello). */
  maxFrame: number;
  localAddress?: string;
  /** Aborting it ends the attempt: the socket is destroyed and the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** A connected socket whose server proved its identity, and the bytes that came after its hello. */
export interface Handshake {
  socket: net.Socket;
  hello: ServerHello;
  /** Frames the server sent right behind its hello, in the same read (e.g. a GOAWAY). */
  rest: Buffer;
}

/**
 * The client half of the session handshake (docs/protocol.md §2): connect,
 * send our hello with a fresh nonce, read the server hello and verify its
 * signature over that nonce. Every failure rejects only after the socket has
 * closed, so a caller that sees the rejection holds no socket any more.
 */
export function clientHandshake(options: HandshakeOptions): Promise<Handshake> {
  const { host, port, timeoutMs, maxFrame, signal } = options;
  const where = formatHostPort(host, port);
  const reason = (): Error =>
    signal?.reason instanceof Error ? signal.reason : new SessionClosedError(`Cannot open session to ${where}: the attempt was aborted`);
  if (signal?.aborted) return Promise.reject(reason());
  const nonce = randomBytes(NONCE_SIZE);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, noDelay: true, localAddress: options.localAddress });
    let got: Buffer = Buffer.alloc(0);
    let done = false;
    let socketClosed = false;
    const cleanup = (): void => {
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      socket.off("data", onData);
      socket.off("error", onError);
      socket.off("close", onClose);
    };
    const fail = (err: Error): void => {
      if (done) return;
      cleanup();
      if (socketClosed) {
        reject(err);
        return;
      }
      socket.once("close", () => reject(err));
      socket.on("error", () => {}); // late errors of a socket being destroyed are of no interest
      socket.destroy();
    };
    const onAbort = (): void => fail(reason());
    const onError = (err: Error): void => fail(new SessionClosedError(`Cannot open session to ${where}: ${err.message}`, { cause: err }));
    const onClose = (): void => {
      socketClosed = true;
      fail(new SessionClosedError(`Cannot open session to ${where}: the server closed the connection`));
    };
    const timer = setTimeout(
      () => fail(new TimeoutError("PERILINK_HANDSHAKE_TIMEOUT", `Cannot open session to ${where}: no handshake in ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onData = (chunk: Buffer): void => {
      got = got.length === 0 ? chunk : Buffer.concat([got, chunk]);
      if (got.length < SERVER_HELLO_SIZE) return;
      let hello: ServerHello;
      try {
        hello = decodeServerHello(got);
      } catch (err) {
        fail(err as Error);
        return;
      }
      if (hello.version !== PROTOCOL_VERSION) {
        fail(new ProtocolError(WireError.VersionUnsupported, `Cannot open session to ${where}: the server speaks protocol version ${hello.version}, not ${PROTOCOL_VERSION}`));
        return;
      }
      if (hello.status !== 0) {
        const why = `Cannot open session to ${where}: server refused (${wireErrorName(hello.status)})`;
        fail(hello.status === WireError.ServerBusy ? new ServerBusyError(`${why}; it is at its session limit, try again later`) : new ProtocolError(hello.status, why));
        return;
      }
      if (!verifySignature(tcpSignedMessage(nonce, hello.serverId), hello.signature, hello.publicKey)) {
        fail(new SignatureError(`Cannot open session to ${where}: the server's signature over our nonce does not verify`));
        return;
      }
      cleanup();
      socket.pause(); // the session resumes it once it listens: no byte is read with no one to take it
      resolve({ socket, hello, rest: Buffer.from(got.subarray(SERVER_HELLO_SIZE)) });
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.once("connect", () => socket.write(encodeClientHello({ version: PROTOCOL_VERSION, maxFrame, nonce })));
    socket.on("error", onError);
    socket.on("close", onClose);
    socket.on("data", onData);
  });
}
