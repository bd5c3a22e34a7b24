import type { ClientKey } from "./client_key.ts";
import type { ServerCheck } from "./client_handshake.ts";

/** Options of `ClientSession.connect()`. */
export interface ClientSessionOptions {
  host: string;
  port: number;
  /** Handshake deadline (connect + hello), ms. */
  timeoutMs?: number;
  /** Largest frame payload we accept. */
  maxFrame?: number;
  /** Default per-request deadline, ms; 0 for none. */
  requestTimeoutMs?: number;
  /** Local address to connect from. */
  localAddress?: string;
  /** With requests outstanding, how long the session may read nothing before it sends a PING. */
  silenceMs?: number;
  /** How long a PING may go unanswered before the line is taken as dead and the session destroyed; 0 for never. */
  pingTimeoutMs?: number;
  /** Aborting it ends a handshake in progress (the socket is destroyed). */
  signal?: AbortSignal;
  /** The key this client proves in the sealed handshake (default: one made for this process). */
  clientKey?: ClientKey | Promise<ClientKey>;
  /** Checks the server's id and key before the client proves its key (client_handshake.ts): the pins, the server expected. */
  checkServer?: ServerCheck;
  /** @internal The session's credit for response bodies goes back as they arrive (incoming_body.ts ReceiveWindow.onArrival): the host agent's. */
  creditOnArrival?: boolean;
  /** @internal For tests only: the first stream id (default 1), to reach the end of the id range quickly. */
  firstStreamId?: number;
}
