import type dgram from "node:dgram";
import type net from "node:net";

/** What an application learns about the channel a request or message arrived on. */
export interface ChannelContext {
  /** The application id the client named when it opened the channel. */
  readonly app: string;
  /** The address and port the client application asked for (it may have used a name). */
  readonly requestedHost: string;
  readonly requestedPort: number;
  /** The local address and port the session arrived on. */
  readonly localAddress: string;
  readonly localPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly serverId: string;
  readonly generation: number;
  /** The fingerprint (`SHA256:…`) of the key the client proved in the sealed handshake. */
  readonly clientKey: string;
  readonly channel: number;
  /** Aborted when the client cancels, closes the channel, or the session ends. */
  readonly signal: AbortSignal;
  /** Sends a one-way message to the client on this channel. */
  send(payload: Uint8Array | string): void;
}

/** A request's body: whole, or streamed in chunks of any total size (docs/apps.md, "Streams"). Read it once. */
export interface RequestBody extends AsyncIterable<Uint8Array> {
  /** True when the client streamed it (then the handler's `payload` is empty). */
  readonly streamed: boolean;
  /** The whole body, at most `limit` bytes (default 16 × maxFrameBytes); past it PERILINK_BODY_TOO_LARGE. */
  bytes(limit?: number): Promise<Uint8Array>;
  text(limit?: number): Promise<string>;
  /** The body as a web ReadableStream. */
  readable(): ReadableStream<Uint8Array>;
}

export interface RequestContext extends ChannelContext {
  readonly stream: number;
  /**
   * The request's body. With `streams: true` on the app, a streamed request
   * reaches the handler at once and its bytes arrive here; otherwise the
   * server gathers a streamed body (up to maxFrameBytes) into `payload`.
   */
  readonly body: RequestBody;
}

/**
 * What a request handler answers: bytes or text (one frame), nothing, or a
 * streamed body — an async iterable of chunks, a ReadableStream or a Blob —
 * sent within the client's flow-control credit.
 */
export type AppResult = Uint8Array | string | void | null | undefined | AsyncIterable<Uint8Array | string> | ReadableStream<Uint8Array> | Blob;

/** Something whose descriptor `handoff.put()` passes on: a descriptor number, a TCP server or socket, a UDP socket. */
export type HandoffItem = number | net.Server | net.Socket | dgram.Socket;

/**
 * What an application passes from one generation of its server process to
 * the next at an upgrade (docs/apps.md, "Upgrades"): named descriptors and
 * one small JSON state. Given to the `ready()` and `drain()` hooks.
 */
export interface Handoff {
  /**
   * The descriptor the previous generation put under `name`, once: the app
   * owns it from then on. Undefined when there is none, when it was taken
   * already, and after `ready()` has settled (what was not taken by then is
   * closed).
   */
  take(name: string): number | undefined;
  /** The state the previous generation put (parsed JSON), or undefined. */
  state(): unknown;
  /**
   * Passes `item`'s descriptor to the next generation under `name` at every
   * later upgrade (it stays this process's too; `null` withdraws it). Names
   * are 1 to 64 of `A-Z a-z 0-9 . _ -`.
   */
  put(name: string, item: HandoffItem | null): void;
  /** The state the next generation's `state()` returns: JSON, at most 64 KiB as text; a copy is taken now. */
  putState(value: unknown): void;
  /** True once a new generation accepts in this one's place (in `drain()`: what was put went to it). */
  readonly handedOver: boolean;
}

/**
 * Optional hooks of an app's life across upgrades. `ready()` runs before
 * the process accepts (at a fresh start, and in the new process of an
 * upgrade while the old one still serves); a rejection or a timeout
 * (`limits.readyTimeoutMs`) stops the start, and an upgrade rolls back.
 * `drain()` runs when the process drains, alongside the requests it
 * finishes, within the drain deadline.
 */
export interface AppHooks {
  ready?(handoff: Handoff): void | Promise<void>;
  drain?(handoff: Handoff): void | Promise<void>;
}

/** A perilink application: request/response and, optionally, one-way messages. */
export interface SessionApp extends AppHooks {
  /** True when the handler reads streamed request bodies from `ctx.body` itself (else they are gathered into `payload`). */
  readonly streams?: boolean;
  request(payload: Uint8Array, ctx: RequestContext): AppResult | Promise<AppResult>;
  message?(payload: Uint8Array, ctx: ChannelContext): void | Promise<void>;
}

/** Raw mode (S6): any `node:net` server, e.g. an `http.Server`, hosted on the managed listeners. */
export interface RawApp extends AppHooks {
  createServer(): net.Server;
}

export type LoadedApp = ({ kind: "session"; name: string; app: SessionApp } | { kind: "raw"; name: string; server: net.Server }) & { hooks?: AppHooks };
