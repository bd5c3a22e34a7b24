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

export interface RequestContext extends ChannelContext {
  readonly stream: number;
}

export type AppResult = Uint8Array | string | void | null | undefined;

/** A perilink application: request/response and, optionally, one-way messages. */
export interface SessionApp {
  request(payload: Uint8Array, ctx: RequestContext): AppResult | Promise<AppResult>;
  message?(payload: Uint8Array, ctx: ChannelContext): void | Promise<void>;
}

/** Raw mode (S6): any `node:net` server, e.g. an `http.Server`, hosted on the managed listeners. */
export interface RawApp {
  createServer(): net.Server;
}

export type LoadedApp = { kind: "session"; name: string; app: SessionApp } | { kind: "raw"; name: string; server: net.Server };
