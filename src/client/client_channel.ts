import { TimeoutError } from "../errors.ts";
import { EventEmitter } from "node:events";
import type { BodySource, OutgoingBody } from "../protocol/outgoing_body.ts";
import type { ResponseBody, Want } from "./request_table.ts";

/** Per-request options of `ClientChannel.request()`. */
export interface RequestOptions {
  /** Aborting it cancels the request: the caller sees the signal's reason, the in-flight slot is free at once. */
  signal?: AbortSignal;
  /** Deadline in ms (default: the session's `requestTimeoutMs`); 0 for none. A streamed body's deadline starts again whenever bytes move. */
  timeoutMs?: number;
  /** The most a response read whole may hold (default 16 × the client's maxFrame); past it PERILINK_BODY_TOO_LARGE. */
  maxBytes?: number;
}

/** What a channel needs from the session it lives on. */
export interface ChannelSession {
  request(channel: number, payload: BodySource | OutgoingBody, options?: RequestOptions, want?: Want): Promise<Buffer | ResponseBody>;
  send(channel: number, payload: Uint8Array | string): void;
  /** A promise while the session's socket holds too much unsent output, else null. */
  writable?(): Promise<void> | null;
  closeChannel(channel: number): void;
}

/** One logical connection of one application over a session. Emits `message` and `close`. */
export class ClientChannel extends EventEmitter {
  readonly id: number;
  /** Resolves when the server accepted the channel; rejects with its refusal. */
  readonly ready: Promise<ClientChannel>;
  /** Set when the server refused the channel. */
  failure: Error | null = null;
  #session: ChannelSession;

  constructor(session: ChannelSession, id: number, ready: Promise<ClientChannel>) {
    super();
    this.#session = session;
    this.id = id;
    this.ready = ready;
  }

  /** Sends a request (bytes, text, or a streamed body) and resolves with the whole response. */
  request(payload: BodySource | OutgoingBody, options?: RequestOptions): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    return this.#session.request(this.id, payload, options) as Promise<Buffer>;
  }

  /** Sends a request and resolves, once the response starts, with its body to read as it arrives. */
  stream(payload: BodySource | OutgoingBody, options?: RequestOptions): Promise<ResponseBody> {
    if (this.failure) return Promise.reject(this.failure);
    return this.#session.request(this.id, payload, options, "body") as Promise<ResponseBody>;
  }

  /** A promise while its session's socket holds too much unsent output (a sender waits for it), else null. */
  writable(): Promise<void> | null {
    return this.#session.writable?.() ?? null;
  }

  send(payload: Uint8Array | string): void {
    this.#session.send(this.id, payload);
  }

  close(): void {
    this.#session.closeChannel(this.id);
  }
}

/**
 * The settle functions of a channel open whose promise rejects with
 * `PERILINK_REQUEST_TIMEOUT` when the server has answered neither OK nor
 * ERROR within `ms` (0: it waits as long as the session lives): a server
 * that never answers an open cannot leave its caller waiting for ever.
 */
export function openDeadline(resolve: (c: ClientChannel) => void, reject: (e: Error) => void, ms: number, app: string): { resolve(c: ClientChannel): void; reject(e: Error): void } {
  const timer = ms > 0 ? setTimeout(() => reject(new TimeoutError("PERILINK_REQUEST_TIMEOUT", `Cannot open channel for app "${app}": the server did not answer in ${ms} ms`)), ms) : null;
  timer?.unref?.();
  const done = (): void => {
    if (timer !== null) clearTimeout(timer);
  };
  return { resolve: (c) => (done(), resolve(c)), reject: (e) => (done(), reject(e)) };
}
