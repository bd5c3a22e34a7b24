import { PROTOCOL_VERSION, WireError } from "../protocol/constants.ts";
import { decodeClientHello, encodeServerHello, tcpSignedMessage } from "../protocol/handshake.ts";
import type { Identity } from "./identity.ts";
import type { ServerLimits } from "./limits.ts";

/** What the server says about itself in its hello. */
export interface HelloSource {
  readonly identity: Identity;
  readonly generation: number;
  readonly limits: ServerLimits;
}

/** The outcome of a whole client hello: the server hello to send, or why the client is refused. */
export type HelloOutcome =
  | { ok: true; reply: Buffer; peerMaxFrame: number }
  | { ok: false; status: number; why: string };

/**
 * The session's opening exchange (docs/protocol.md §3), server side: the
 * client hello's bytes in (`CLIENT_HELLO_SIZE` of them, gathered by the
 * session), the signed server hello out. The signature covers the client's
 * nonce, so a recorded hello cannot be replayed to another client.
 */
export function answerClientHello(hello: Buffer, server: HelloSource): HelloOutcome {
  const h = decodeClientHello(hello);
  if (h.version !== PROTOCOL_VERSION) return { ok: false, status: WireError.VersionUnsupported, why: `client speaks version ${h.version}` };
  const id = server.identity;
  const limits = server.limits;
  const reply = encodeServerHello({
    version: PROTOCOL_VERSION,
    status: 0,
    serverId: id.serverIdBytes,
    publicKey: id.publicKey,
    signature: id.sign(tcpSignedMessage(h.nonce, id.serverIdBytes)),
    maxFrame: limits.maxFrameBytes,
    maxChannels: limits.maxChannelsPerSession,
    maxInflight: limits.maxInflightPerSession,
    generation: server.generation,
    idleTimeoutMs: limits.idleTimeoutMs,
  });
  return { ok: true, reply, peerMaxFrame: h.maxFrame };
}
