import { ProtocolError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { FrameType, WireError } from "../protocol/constants.ts";
import { PAIR_APP } from "../protocol/pairing_code.ts";
import { decodeChannelOpen } from "../protocol/payloads.ts";
import type { SessionApp } from "./app.ts";
import type { ServerLimits } from "./limits.ts";
import { ServerChannel, type ChannelHost } from "./request_context.ts";
import type { ServerStats } from "./server_stats.ts";
import type { SessionOutput } from "./session_output.ts";
import type { TrustedKeys } from "./trusted_keys.ts";

/** What the channels of every session need from the server. */
export interface ChannelServer {
  readonly app: SessionApp;
  readonly limits: ServerLimits;
  readonly stats: ServerStats;
  readonly log: Logger;
  /** Who may open channels (`access: "keys"`); null when any client may (`access: "open"`). */
  readonly access: TrustedKeys | null;
  /** A channel of `session` was refused access: false when its peer has used up its refusals (the session then ends). */
  accessDenied(session: ChannelHost, app: string): boolean;
}

/** Why a peer's session ends once it has used up its access refusals. */
export const REFUSED_TOO_OFTEN = "Cannot go on: this host was refused access too often; wait, or have its key trusted on the device";

/** No channel open yet: shared by every session until its first channel (never written). */
const NO_CHANNELS: ReadonlyMap<number, ServerChannel> = new Map();

/**
 * The open channels of one server session (S3): one logical connection of one
 * client application each, opened by CHANNEL_OPEN and bounded by
 * `maxChannelsPerSession`; one-way messages are delivered to the app's
 * `message` handler. A channel id used twice, or 0, is a protocol error.
 */
export class SessionChannels {
  #server: ChannelServer;
  #session: ChannelHost;
  #out: SessionOutput;
  #map = NO_CHANNELS as Map<number, ServerChannel>;
  #pairing = 0;
  /** Async message handlers still running, and the payload bytes they keep: counted like requests by flow control. */
  pendingMessages = 0;
  pendingMessageBytes = 0;

  constructor(server: ChannelServer, session: ChannelHost, out: SessionOutput) {
    this.#server = server;
    this.#session = session;
    this.#out = out;
  }

  get size(): number {
    return this.#map.size;
  }

  /** Open channels other than pairing ones: what makes a session busy (a stranger's pairing channel keeps no slot). */
  get working(): number {
    return this.#map.size - this.#pairing;
  }

  get(id: number): ServerChannel | undefined {
    return this.#map.get(id);
  }

  has(id: number): boolean {
    return this.#map.has(id);
  }

  /** CHANNEL_OPEN: opens it, or answers why not (draining, at the limit). */
  open(id: number, payload: Buffer, accepting: boolean): void {
    if (id === 0 || this.#map.has(id)) {
      throw new ProtocolError(WireError.ProtocolError, `Cannot open channel ${id}: ${id === 0 ? "0 is reserved" : "already open"}`);
    }
    const open = decodeChannelOpen(payload);
    const owner = this.#server;
    if (!accepting) {
      this.#out.error(id, 0, WireError.ShuttingDown, "Cannot open channel: the session is draining; open it on a new session");
      return;
    }
    const fp = this.#session.clientKey;
    if (owner.access !== null && open.app !== PAIR_APP && !owner.access.allows(fp, open.app)) {
      const also = owner.access.knows(fp, false) ? ` for app "${open.app}"` : ""; // allows() just read the files
      this.#out.error(
        id,
        0,
        WireError.AccessDenied,
        `Cannot open channel for app "${open.app}": this server does not trust the client key ${fp}${also}; on the device run "perilink trust add ${fp}${also && ` --app ${open.app}`}", or pair with "perilink pair"`,
      );
      if (!owner.accessDenied(this.#session, open.app)) {
        throw new ProtocolError(WireError.AccessDenied, REFUSED_TOO_OFTEN);
      }
      return;
    }
    if (this.#map.size >= owner.limits.maxChannelsPerSession) {
      this.#out.error(id, 0, WireError.LimitExceeded, `Cannot open channel: this session has ${this.#map.size} channels, the limit`);
      return;
    }
    if (this.#map === NO_CHANNELS) this.#map = new Map();
    this.#map.set(id, new ServerChannel(this.#session, id, open));
    if (open.app === PAIR_APP) this.#pairing++;
    owner.stats.channelsOpen++;
    this.#out.frame(FrameType.ChannelOk, id, 0);
  }

  /** CHANNEL_CLOSE: false when it was not open. Its context's signal aborts. */
  close(id: number): boolean {
    const ch = this.#map.get(id);
    if (!ch) return false;
    this.#map.delete(id);
    if (ch.app === PAIR_APP) this.#pairing--;
    this.#server.stats.channelsOpen--;
    ch.abort("channel closed");
    return true;
  }

  /** MESSAGE: one-way, to the app's `message` handler; a handler's failure is logged, never answered. */
  message(id: number, payload: Buffer): void {
    const owner = this.#server;
    const ch = this.#map.get(id);
    if (!ch) {
      this.#out.error(id, 0, WireError.UnknownChannel, `Cannot deliver message: channel ${id} is not open`);
      return;
    }
    owner.stats.messages++;
    const app = owner.app;
    if (!app.message || ch.app === PAIR_APP) return; // pairing takes requests only: nothing of a stranger's reaches the app
    // A small payload is copied: a handler that keeps it across an await must not pin the whole record it came in.
    const own = payload.byteLength * 4 < payload.buffer.byteLength ? Buffer.from(payload) : payload;
    try {
      const r = app.message(own, ch);
      if (r && typeof (r as Promise<void>).then === "function") this.#track(r as Promise<void>, own.byteLength, ch.app);
    } catch (err) {
      owner.log.warn("message_handler_failed", { app: ch.app, error: err });
    }
  }

  /**
   * An async handler runs on: it holds one of the session's in-flight slots
   * and its payload's bytes until it settles (a flood of messages to a slow
   * handler is read no faster than the handlers finish).
   */
  #track(r: Promise<void>, bytes: number, app: string): void {
    this.pendingMessages++;
    this.pendingMessageBytes += bytes;
    if (this.pendingMessages > this.#server.limits.maxInflightPerSession) this.#session.messagesChanged?.();
    const done = (): void => {
      this.pendingMessages--;
      this.pendingMessageBytes -= bytes;
      this.#session.messagesChanged?.();
    };
    r.then(done, (err: unknown) => {
      this.#server.log.warn("message_handler_failed", { app, error: err });
      done();
    });
  }

  /** The session closed: every channel's signal aborts. */
  closeAll(): void {
    for (const ch of this.#map.values()) ch.abort("session closed");
    this.#server.stats.channelsOpen -= this.#map.size;
    this.#map.clear();
    this.#pairing = 0;
  }
}
