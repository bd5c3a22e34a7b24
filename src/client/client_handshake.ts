import net from "node:net";
import { KeyMismatchError, ProtocolError, ServerBusyError, SessionClosedError, TimeoutError } from "../errors.ts";
import { bytesToUuid, keyFingerprint } from "../protocol/keys.ts";
import { MAGIC, WireError, wireErrorName } from "../protocol/constants.ts";
import { supportedCiphers } from "../protocol/record_layer.ts";
import { ClientHandshakeV2, SEALED_VERSION, SERVER_HELLO_V2_SIZE, type SealedKeys, type ServerHelloV2 } from "../protocol/sealed_handshake.ts";
import { formatHostPort } from "../address.ts";
import { RecordOpener } from "../protocol/record_layer.ts";
import type { FrameDecoder } from "../protocol/frame_decoder.ts";
import { clientAuth, ourFeatures, recordPlaintextFor } from "../protocol/sealed_handshake.ts";
import { TARGET } from "../target.ts";
import { SealingSink } from "../protocol/sealing_sink.ts";
import type { ClientKey } from "./client_key.ts";
import { serverChanged } from "./known_servers.ts";
import { sealPlaintextFor } from "../runtime/record_size.ts";

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

/** A connected socket whose server proved its identity, the session's keys, and the bytes that came after its hello. */
export interface Handshake {
  socket: net.Socket;
  hello: ServerHelloV2;
  sealed: SealedKeys;
  /** Records the server sent right behind its hello, in the same read (e.g. a GOAWAY). */
  rest: Buffer;
}

/** The feature bits the client announces: a device's target keeps records small (§2.5). */
const FEATURES = ourFeatures(TARGET.largeRecords !== false);

/**
 * The client half of the sealed handshake (protocol v2, docs/protocol.md
 * §2): connect, send our hello with a fresh ephemeral key and the ciphers
 * we have, read the server hello and verify its signature over both hellos.
 * Every failure rejects only after the socket has closed, so a caller that
 * sees the rejection holds no socket any more.
 */
export function clientHandshake(options: HandshakeOptions): Promise<Handshake> {
  const { host, port, timeoutMs, maxFrame, signal } = options;
  const where = formatHostPort(host, port);
  const reason = (): Error =>
    signal?.reason instanceof Error ? signal.reason : new SessionClosedError(`Cannot open session to ${where}: the attempt was aborted`);
  if (signal?.aborted) return Promise.reject(reason());
  const hs = new ClientHandshakeV2({ ciphers: supportedCiphers(), maxFrame, features: FEATURES });
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
      // A protocol v1 server refuses our hello in its own 140-byte layout: tell at once.
      if (got.length >= 8 && got.readUInt32BE(0) === MAGIC && got[4] !== SEALED_VERSION) {
        fail(new ProtocolError(WireError.VersionUnsupported, `Cannot open session to ${where}: the server speaks protocol version ${got[4]}, not ${SEALED_VERSION}; upgrade it`));
        return;
      }
      if (got.length < SERVER_HELLO_V2_SIZE) return;
      let result: ReturnType<ClientHandshakeV2["finish"]>;
      try {
        result = hs.finish(got);
      } catch (err) {
        const e = err as Error;
        fail(e instanceof ProtocolError ? new ProtocolError(e.wireCode, `Cannot open session to ${where}: ${e.message}`) : e);
        return;
      }
      const { hello, sealed } = result;
      if (sealed === null) {
        const why = `Cannot open session to ${where}: server refused (${wireErrorName(hello.status)})`;
        fail(hello.status === WireError.ServerBusy ? new ServerBusyError(`${why}; it is at its session limit, try again later`) : new ProtocolError(hello.status, why));
        return;
      }
      cleanup();
      socket.pause(); // the session resumes it once it listens: no byte is read with no one to take it
      resolve({ socket, hello, sealed, rest: Buffer.from(got.subarray(SERVER_HELLO_V2_SIZE)) });
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.once("connect", () => socket.write(hs.hello));
    socket.on("error", onError);
    socket.on("close", onClose);
    socket.on("data", onData);
  });
}

/**
 * Both directions sealed from here on (protocol v2): our proof of `key`
 * goes out as the first record, then the frames through `sink`; the server's
 * records are opened by `opener` before the frame decoder sees them.
 */
export function startSealed(h: Handshake, key: ClientKey): { sink: SealingSink; opener: RecordOpener } {
  const { cipher, keys, transcript } = h.sealed;
  const sink = new SealingSink(h.socket, cipher, keys.clientToServer, { maxPlaintext: sealPlaintextFor(h.hello.features) });
  sink.write(clientAuth(key.publicKey, key.sign, transcript));
  return { sink, opener: new RecordOpener(cipher, keys.serverToClient, { maxPlaintext: recordPlaintextFor(FEATURES) }) };
}

/**
 * Opens what `chunk` completes (into the caller's scratch array `opened`) and passes the frames to `decoder`. Throws a
 * `ProtocolError` (a `RecordError`: forged, replayed, cut) after the
 * authentic records before the fault have been passed on.
 */
export function openRecords(opener: RecordOpener, chunk: Buffer, decoder: FrameDecoder, opened: Buffer[]): void {
  let failure: unknown = null;
  try {
    opener.push(chunk, opened);
  } catch (err) {
    failure = err;
  }
  try {
    for (let i = 0; i < opened.length; i++) decoder.push(opened[i]!);
  } finally {
    opened.length = 0;
  }
  if (failure !== null) throw failure;
}

/** What a session checks of the server's hello before the client proves its key: throws to refuse it. */
export type ServerCheck = (serverId: string, publicKey: Buffer, host: string, port: number) => void;

/** A check that the hello is from the server `expect` names (`PERILINK_SERVER_CHANGED`, `PERILINK_KEY_MISMATCH` otherwise). */
export function expectServer(expect: { serverId: string; publicKey: Buffer }): ServerCheck {
  return (id, key, host, port) => {
    if (id !== expect.serverId) {
      // The address led to this server before (the table's entry for it): the same error as the known-servers record's.
      throw serverChanged(host, port, { serverId: expect.serverId, keyFingerprint: keyFingerprint(expect.publicKey) }, { serverId: id, keyFingerprint: keyFingerprint(key) }, host);
    }
    if (Buffer.compare(key, expect.publicKey) !== 0) {
      throw new KeyMismatchError(id, `Cannot trust ${formatHostPort(host, port)}: server ${id} answered with key ${keyFingerprint(key)}, not the one pinned for it; it may be an impostor`);
    }
  };
}

/** Runs `check` on the hello; when it throws, the socket is destroyed and the error passed on — before the client proves anything. */
export function checkServer(h: Handshake, check: ServerCheck, host: string, port: number): void {
  try {
    check(bytesToUuid(h.hello.serverId), Buffer.from(h.hello.publicKey), host, port);
  } catch (err) {
    h.socket.destroy();
    throw err;
  }
}
