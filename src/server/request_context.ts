import { WholeBody, type IncomingBody } from "../protocol/incoming_body.ts";
import type { ChannelOpen } from "../protocol/payloads.ts";
import type { ChannelContext, RequestBody, RequestContext } from "./app.ts";

/** What a channel reads of the session it belongs to (ServerSession implements it). */
export interface ChannelHost extends Pick<ChannelContext, "localAddress" | "localPort" | "remoteAddress" | "remotePort" | "serverId" | "generation" | "clientKey"> {
  /** The sealed handshake's transcript hash (pairing proofs are bound to it); null before the handshake. */
  readonly transcript: Buffer | null;
  /** Sends a one-way message on a channel; ignored once the session or channel has closed. */
  sendMessage(channel: number, payload: Uint8Array | string): void;
  /** Async message handlers started past the in-flight limit, or one settled: flow control looks again. */
  messagesChanged?(): void;
}

/** Abort controllers, made only for contexts whose handler asked for `signal`. */
const controllers = new WeakMap<object, AbortController>();

function lazySignal(owner: object, abortedWith: string | null): AbortSignal {
  let c = controllers.get(owner);
  if (!c) {
    c = new AbortController();
    if (abortedWith !== null) c.abort(new Error(abortedWith));
    controllers.set(owner, c);
  }
  return c.signal;
}

/**
 * An open channel: one logical connection of one client application. It is
 * the `ctx` of one-way messages, and requests read their context through it,
 * so a request allocates one small object and no copy of these fields.
 */
export class ServerChannel implements ChannelContext {
  readonly channel: number;
  readonly app: string;
  readonly requestedHost: string;
  readonly requestedPort: number;
  #session: ChannelHost;

  constructor(session: ChannelHost, channel: number, open: ChannelOpen) {
    this.#session = session;
    this.channel = channel;
    this.app = open.app;
    this.requestedHost = open.requestedHost;
    this.requestedPort = open.requestedPort;
  }

  get localAddress(): string {
    return this.#session.localAddress;
  }
  get localPort(): number {
    return this.#session.localPort;
  }
  get remoteAddress(): string {
    return this.#session.remoteAddress;
  }
  get remotePort(): number {
    return this.#session.remotePort;
  }
  get serverId(): string {
    return this.#session.serverId;
  }
  get generation(): number {
    return this.#session.generation;
  }
  get clientKey(): string {
    return this.#session.clientKey;
  }
  /** @internal For pairing: the session's transcript hash. */
  get transcript(): Buffer | null {
    return this.#session.transcript;
  }
  #reason: string | null = null;

  /** Created on first use: most handlers never look at it. */
  get signal(): AbortSignal {
    return lazySignal(this, this.#reason);
  }

  send(payload: Uint8Array | string): void {
    this.#session.sendMessage(this.channel, payload);
  }

  abort(reason: string): void {
    this.#reason ??= reason;
    controllers.get(this)?.abort(new Error(reason));
  }
}

/** One request in flight; `dropped` once its channel or session went away. */
export class ServerRequest implements RequestContext {
  readonly stream: number;
  #channel: ServerChannel;
  #reason: string | null = null;
  dropped = false;
  /** Its one answer went out before its handler returned (cancelled): what the handler returns is dropped. */
  answered = false;
  /** When its handler started or its body last moved, for the session's request deadline (set only for handlers that run on). */
  startedAt = 0;
  /** When it arrived, for the latency histogram. */
  readonly arrivedAt = performance.now();
  /** The body, streamed (DATA frames) or whole (the REQUEST's payload). */
  #body: IncomingBody | WholeBody | Buffer;

  constructor(channel: ServerChannel, stream: number, body: IncomingBody | Buffer) {
    this.#channel = channel;
    this.stream = stream;
    this.#body = body;
  }

  /** Made on first use for a whole body: most handlers read `payload`. */
  get body(): RequestBody {
    const b = this.#body;
    return b instanceof Uint8Array ? (this.#body = new WholeBody(b)) : b;
  }

  get channelId(): number {
    return this.#channel.channel;
  }
  get channel(): number {
    return this.#channel.channel;
  }
  get app(): string {
    return this.#channel.app;
  }
  get requestedHost(): string {
    return this.#channel.requestedHost;
  }
  get requestedPort(): number {
    return this.#channel.requestedPort;
  }
  get localAddress(): string {
    return this.#channel.localAddress;
  }
  get localPort(): number {
    return this.#channel.localPort;
  }
  get remoteAddress(): string {
    return this.#channel.remoteAddress;
  }
  get remotePort(): number {
    return this.#channel.remotePort;
  }
  get serverId(): string {
    return this.#channel.serverId;
  }
  get generation(): number {
    return this.#channel.generation;
  }
  get clientKey(): string {
    return this.#channel.clientKey;
  }
  /** @internal For pairing: the session's transcript hash. */
  get transcript(): Buffer | null {
    return this.#channel.transcript;
  }
  get signal(): AbortSignal {
    return lazySignal(this, this.#reason);
  }

  send(payload: Uint8Array | string): void {
    this.#channel.send(payload);
  }

  /** Marks the response as unwanted and aborts the handler's signal. */
  abort(reason: string): void {
    this.dropped = true;
    this.#reason ??= reason;
    controllers.get(this)?.abort(new Error(reason));
  }
}
