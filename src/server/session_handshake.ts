import { MAGIC, WireError } from "../protocol/constants.ts";
import type { FrameDecoder } from "../protocol/frame_decoder.ts";
import { encodeServerRefusal } from "../protocol/handshake.ts";
import type net from "node:net";
import { supportedCiphers, type CipherName } from "../protocol/record_layer.ts";
import { hasAesInstructions } from "../runtime/cpu_features.ts";
import { SealingSink } from "../protocol/sealing_sink.ts";
import { answerClientHelloV2, CLIENT_HELLO_V2_SIZE, ourFeatures, recordPlaintextFor, type ServerAnswer } from "../protocol/sealed_handshake.ts";
import { TARGET } from "../target.ts";
import type { Identity } from "./identity.ts";
import type { ServerLimits } from "./limits.ts";
import { SealedInput, type KeyCheck } from "./session_input.ts";
import type { SessionOutput } from "./session_output.ts";
import { sealPlaintextFor } from "../runtime/record_size.ts";

/** What the server says about itself in its hello. */
export interface HelloSource {
  readonly identity: Identity;
  readonly generation: number;
  readonly limits: ServerLimits;
}

/**
 * The ciphers this process offers, preferred first (looked up once): the
 * server picks, so it prefers what its own CPU does fastest — AES-256-GCM
 * with AES instructions (x86 servers), ChaCha20-Poly1305 without (a
 * Raspberry Pi): about 10% more requests a second on x64 with AES-GCM.
 */
let ciphers: CipherName[] | null = null;
const preferred = (): CipherName[] => {
  const all = supportedCiphers();
  return hasAesInstructions() ? [...all.filter((c) => c === "aes-256-gcm"), ...all.filter((c) => c !== "aes-256-gcm")] : all;
};

/** The feature bits the server announces: a device's target keeps records small (§2.5). */
const FEATURES = ourFeatures(TARGET.largeRecords !== false);

/** Bytes of a client hello the server needs before it can answer. */
export const CLIENT_HELLO_BYTES = CLIENT_HELLO_V2_SIZE;

/**
 * A protocol v1 client sends a 32-byte hello and waits for a 140-byte v1
 * answer: once its first 8 bytes show version 1, it is told in its own
 * layout that this server speaks only v2 (instead of waiting for bytes
 * that never come). Null when the bytes are not a v1 hello.
 */
export function refusalForV1(hello: Buffer): Buffer | null {
  if (hello.length < 8 || hello.readUInt32BE(0) !== MAGIC || hello[4] !== 1) return null;
  return encodeServerRefusal(WireError.VersionUnsupported);
}

/**
 * The session's opening exchange (protocol v2, docs/protocol.md §2),
 * server side: the whole client hello in (`CLIENT_HELLO_BYTES`, gathered by
 * the session), the signed server hello and the session's keys out, or a
 * refusal. The signature covers both hellos whole, so nothing in either can
 * be changed on the way and the cipher cannot be downgraded.
 */
export function answerClientHello(hello: Buffer, server: HelloSource): ServerAnswer {
  const id = server.identity;
  const limits = server.limits;
  return answerClientHelloV2(hello, {
    serverId: id.serverIdBytes,
    publicKey: id.publicKey,
    maxFrame: limits.maxFrameBytes,
    maxChannels: limits.maxChannelsPerSession,
    maxInflight: limits.maxInflightPerSession,
    generation: server.generation,
    idleTimeoutMs: limits.idleTimeoutMs,
    ciphers: (ciphers ??= preferred()),
    features: FEATURES,
    sign: (m) => id.sign(m),
  });
}

/**
 * The session is accepted: its hello goes out in the clear, and from then on
 * both directions are sealed records. Returns the input side, which opens
 * the client's records (its proof first) for `decoder`.
 */
export function startSealed<S>(socket: net.Socket, out: SessionOutput, answer: Extract<ServerAnswer, { ok: true }>, decoder: FrameDecoder, check: KeyCheck<S>, session: S): SealedInput {
  const { cipher, keys, transcript } = answer.sealed;
  out.peerMaxFrame = answer.peerMaxFrame;
  out.peerFeatures = answer.peerFeatures;
  socket.write(answer.reply);
  out.setSink(new SealingSink(socket, cipher, keys.serverToClient, { maxPlaintext: sealPlaintextFor(answer.peerFeatures) }));
  return new SealedInput(cipher, keys.clientToServer, transcript, decoder, check as KeyCheck, session, recordPlaintextFor(FEATURES));
}
