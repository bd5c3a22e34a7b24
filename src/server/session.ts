import type net from "node:net";
import { ProtocolError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { CLIENT_HELLO_SIZE, FrameType, PROTOCOL_VERSION, WireError } from "../protocol/constants.ts";
import { FrameDecoder, type FrameSink } from "../protocol/frame_decoder.ts";
import { FrameWriter } from "../protocol/frame_writer.ts";
import { decodeClientHello, encodeServerHello, encodeServerRefusal, tcpSignedMessage } from "../protocol/handshake.ts";
import { decodeChannelOpen, decodeCodedReason, encodeCodedReason } from "../protocol/payloads.ts";
import type { AppResult, SessionApp } from "./app.ts";
import type { Identity } from "./identity.ts";
import type { ServerLimits } from "./limits.ts";
import { ServerChannel, ServerRequest } from "./request_context.ts";
import type { ServerStats } from "./server_stats.ts";

/** What a session needs from the server that owns it. */
export interface SessionHost {
  readonly identity: Identity;
  readonly generation: number;
  readonly limits: ServerLimits;
  readonly app: SessionApp;
  readonly log: Logger;
  readonly stats: ServerStats;
  readonly writeSlabBytes: number;
  sessionClosed(session: ServerSession): void;
}

const HANDSHAKE = 0;
const OPEN = 1;
const DRAINING = 2;
const CLOSED = 3;
const STATE_NAMES = ["handshake", "open", "draining", "closed"] as const;

/** How long a session that sent GOAWAY and ended its side waits for the peer to close. */
const LINGER_AFTER_END_MS = 2000;

/**
 * One TCP session (S3), server side. Its states, read top to bottom:
 *
 *   handshake ──hello ok──▶ open ──goAway()──▶ draining ──last request done──▶ closed
 *       │                    │                                                  ▲
 *       └── bad hello / timeout / protocol error / socket error ────────────────┘
 *
 * In `open`, frames multiplex channels and requests. Reading stops (decoder and
 * socket paused) while more than `maxInflightPerSession` requests run (a client
 * that ignores the limit it was told) or the socket's write buffer is over its
 * high-water mark, so a fast or stalled peer cannot make the server buffer
 * without bound. Every request stream gets exactly one answer: a response, or
 * an ERROR (Cancelled for one the client cancelled or whose channel closed).
 */
export class ServerSession implements FrameSink {
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  readonly openedAt = Date.now();

  #socket: net.Socket;
  #host: SessionHost;
  #state = HANDSHAKE;
  #hello: Buffer | null = null;
  #decoder: FrameDecoder | null = null;
  #writer: FrameWriter;
  #peerMaxFrame = 0;
  #channels = new Map<number, ServerChannel>();
  #requests = new Map<number, ServerRequest>();
  #lastStream = 0;
  #goAwayStream = 0;
  #paused = false;
  #goAwayAfterHello: { code: number; reason: string } | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #closedResolve!: () => void;
  readonly closed: Promise<void> = new Promise((r) => (this.#closedResolve = r));

  constructor(socket: net.Socket, host: SessionHost) {
    this.#socket = socket;
    this.#host = host;
    this.remoteAddress = socket.remoteAddress ?? "";
    this.remotePort = socket.remotePort ?? 0;
    this.localAddress = socket.localAddress ?? "";
    this.localPort = socket.localPort ?? 0;
    this.#writer = new FrameWriter(socket, host.writeSlabBytes);
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    socket.on("drain", () => this.#updateFlow());
    socket.on("timeout", () => this.#onTimeout());
    socket.on("error", (err) => this.#host.log.debug("session_socket_error", { peer: this.remoteAddress, error: err }));
    socket.on("close", () => this.#onClose());
    socket.on("end", () => this.#onPeerEnd());
    this.#timer = setTimeout(() => this.#abort("handshake_timeout"), host.limits.handshakeTimeoutMs);
    this.#timer.unref?.();
  }

  get state(): (typeof STATE_NAMES)[number] {
    return STATE_NAMES[this.#state]!;
  }
  get inflight(): number {
    return this.#requests.size;
  }
  get channelCount(): number {
    return this.#channels.size;
  }

  /**
   * Sends GOAWAY with the last stream id this session will process, refuses
   * later streams, and ends the session once every started request has
   * answered. Resolves when the socket has closed.
   */
  goAway(code: number = WireError.ShuttingDown, reason = "server draining"): Promise<void> {
    if (this.#state === HANDSHAKE) {
      // Accepted, so it is served: the GOAWAY follows the hello, and the client moves on at once.
      this.#goAwayAfterHello = { code, reason };
    } else if (this.#state === OPEN) {
      this.#state = DRAINING;
      this.#goAwayStream = this.#lastStream;
      this.#writer.frame(FrameType.GoAway, 0, this.#goAwayStream, encodeCodedReason(code, reason));
      this.#maybeFinishDrain();
    }
    return this.closed;
  }

  /** Closes the socket now; running requests see their signal abort. */
  destroy(): void {
    this.#socket.destroy();
  }

  // ── input ────────────────────────────────────────────────────────────────

  #onData(chunk: Buffer): void {
    if (this.#state === CLOSED) return; // after a protocol error nothing more is read
    try {
      if (this.#state === HANDSHAKE) {
        chunk = this.#readHello(chunk);
        if (this.#state === HANDSHAKE || chunk.length === 0) return;
      }
      this.#decoder?.push(chunk);
    } catch (err) {
      this.#protocolFailure(err);
    }
  }

  #readHello(chunk: Buffer): Buffer {
    const have = this.#hello;
    const buf = have === null ? chunk : Buffer.concat([have, chunk]);
    if (buf.length < CLIENT_HELLO_SIZE) {
      this.#hello = buf;
      return EMPTY;
    }
    this.#hello = null;
    const hello = decodeClientHello(buf);
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (hello.version !== PROTOCOL_VERSION) {
      this.#refuse(WireError.VersionUnsupported, `client speaks version ${hello.version}`);
      return EMPTY;
    }
    const host = this.#host;
    const id = host.identity;
    this.#peerMaxFrame = hello.maxFrame;
    this.#socket.write(
      encodeServerHello({
        version: PROTOCOL_VERSION,
        status: 0,
        serverId: id.serverIdBytes,
        publicKey: id.publicKey,
        signature: id.sign(tcpSignedMessage(hello.nonce, id.serverIdBytes)),
        maxFrame: host.limits.maxFrameBytes,
        maxChannels: host.limits.maxChannelsPerSession,
        maxInflight: host.limits.maxInflightPerSession,
        generation: host.generation,
        idleTimeoutMs: host.limits.idleTimeoutMs,
      }),
    );
    this.#state = OPEN;
    this.#decoder = new FrameDecoder(this, host.limits.maxFrameBytes);
    this.#socket.setTimeout(host.limits.idleTimeoutMs);
    if (this.#goAwayAfterHello) void this.goAway(this.#goAwayAfterHello.code, this.#goAwayAfterHello.reason);
    return buf.subarray(CLIENT_HELLO_SIZE);
  }

  /** FrameSink: one decoded frame. */
  onFrame(type: number, _flags: number, channel: number, stream: number, payload: Buffer): void {
    switch (type) {
      case FrameType.Request:
        return this.#onRequest(channel, stream, payload);
      case FrameType.Message:
        return this.#onMessage(channel, payload);
      case FrameType.ChannelOpen:
        return this.#onChannelOpen(channel, payload);
      case FrameType.ChannelClose:
        return this.#onChannelClose(channel);
      case FrameType.Cancel:
        this.#requests.get(stream)?.abort("cancelled by client");
        return;
      case FrameType.Ping:
        this.#writer.frame(FrameType.Pong, 0, stream, payload);
        return;
      case FrameType.Pong:
        return;
      case FrameType.GoAway:
        // The client will send nothing more; finish what runs, then close.
        if (this.#state === OPEN) {
          this.#state = DRAINING;
          this.#goAwayStream = this.#lastStream;
          this.#maybeFinishDrain();
        }
        return;
      case FrameType.Error: {
        const { code, reason } = decodeCodedReason(payload);
        this.#host.log.debug("peer_error", { peer: this.remoteAddress, code, reason });
        if (channel === 0) this.#abort("peer_error");
        return;
      }
      default:
        throw new ProtocolError(WireError.ProtocolError, `Cannot accept frame type ${type} from a client`);
    }
  }

  #onChannelOpen(id: number, payload: Buffer): void {
    if (id === 0 || this.#channels.has(id)) {
      throw new ProtocolError(WireError.ProtocolError, `Cannot open channel ${id}: ${id === 0 ? "0 is reserved" : "already open"}`);
    }
    const open = decodeChannelOpen(payload);
    if (this.#state !== OPEN) {
      this.#sendError(id, 0, WireError.ShuttingDown, "Cannot open channel: the session is draining; open it on a new session");
      return;
    }
    if (this.#channels.size >= this.#host.limits.maxChannelsPerSession) {
      this.#sendError(id, 0, WireError.LimitExceeded, `Cannot open channel: this session has ${this.#channels.size} channels, the limit`);
      return;
    }
    this.#channels.set(id, new ServerChannel(this, id, open));
    this.#host.stats.channelsOpen++;
    this.#writer.frame(FrameType.ChannelOk, id, 0);
  }

  #onChannelClose(id: number): void {
    const ch = this.#channels.get(id);
    if (!ch) return;
    this.#channels.delete(id);
    this.#host.stats.channelsOpen--;
    ch.abort("channel closed");
    for (const req of this.#requests.values()) if (req.channelId === id) req.abort("channel closed");
  }

  #onRequest(channelId: number, stream: number, payload: Buffer): void {
    if (stream <= this.#lastStream) {
      throw new ProtocolError(WireError.ProtocolError, `Cannot accept request: stream id ${stream} is not above ${this.#lastStream}`);
    }
    this.#lastStream = stream;
    if (this.#state !== OPEN && stream > this.#goAwayStream) {
      this.#sendError(channelId, stream, WireError.RefusedStream, "Cannot start request: the session is draining; send it again on a new session");
      return;
    }
    const ch = this.#channels.get(channelId);
    if (!ch) {
      this.#sendError(channelId, stream, WireError.UnknownChannel, `Cannot start request: channel ${channelId} is not open`);
      return;
    }
    const host = this.#host;
    const req = new ServerRequest(ch, stream);
    host.stats.requests++;
    let result: AppResult | Promise<AppResult>;
    try {
      result = host.app.request(payload, req);
    } catch (err) {
      this.#reply(req, undefined, err);
      this.#updateFlow();
      return;
    }
    if (result === null || typeof result !== "object" || typeof (result as Promise<AppResult>).then !== "function") {
      // Answered at once: no bookkeeping (a map insert and delete per request was most of our
      // garbage); only the check that the peer still reads what we write.
      this.#reply(req, result as AppResult, undefined);
      this.#updateFlow();
      return;
    }
    this.#requests.set(stream, req);
    host.stats.inflight++;
    if (this.#requests.size > host.limits.maxInflightPerSession) this.#updateFlow();
    this.#await(req, result as Promise<AppResult>);
  }

  async #await(req: ServerRequest, pending: Promise<AppResult>): Promise<void> {
    let value: AppResult;
    let failure: unknown;
    try {
      value = await pending;
    } catch (err) {
      failure = err ?? new Error("request handler rejected");
    }
    this.#requests.delete(req.stream);
    this.#host.stats.inflight--;
    this.#reply(req, value, failure);
    this.#updateFlow();
    this.#maybeFinishDrain();
  }

  /** Sends the request's one answer (docs/protocol.md §4.2), unless the session is gone. */
  #reply(req: ServerRequest, value: AppResult, err: unknown): void {
    if (this.#state === CLOSED) return;
    if (req.dropped) {
      // Every stream gets exactly one answer, so the client can count its in-flight slots.
      this.#sendError(req.channelId, req.stream, WireError.Cancelled, "request cancelled");
    } else if (err !== undefined) {
      const message = err instanceof Error ? err.message : String(err);
      this.#host.log.debug("request_failed", { stream: req.stream, app: req.app, message });
      this.#sendError(req.channelId, req.stream, WireError.ApplicationError, message);
    } else {
      this.#respond(req, value);
    }
  }

  #respond(req: ServerRequest, value: AppResult): void {
    if (value !== undefined && value !== null && typeof value !== "string" && !(value instanceof Uint8Array)) {
      this.#sendError(req.channelId, req.stream, WireError.ApplicationError, "Cannot send response: the handler returned neither bytes nor a string");
      return;
    }
    const size = value == null ? 0 : typeof value === "string" ? Buffer.byteLength(value) : value.byteLength;
    if (size > this.#peerMaxFrame) {
      this.#sendError(req.channelId, req.stream, WireError.FrameTooLarge, `Cannot send response: ${size} bytes exceed the client's frame limit of ${this.#peerMaxFrame}`);
      return;
    }
    this.#writer.frame(FrameType.Response, req.channelId, req.stream, value ?? undefined);
  }

  #onMessage(channelId: number, payload: Buffer): void {
    const ch = this.#channels.get(channelId);
    if (!ch) {
      this.#sendError(channelId, 0, WireError.UnknownChannel, `Cannot deliver message: channel ${channelId} is not open`);
      return;
    }
    this.#host.stats.messages++;
    const handler = this.#host.app.message;
    if (!handler) return;
    try {
      const r = handler.call(this.#host.app, payload, ch);
      if (r && typeof (r as Promise<void>).then === "function") {
        (r as Promise<void>).catch((err: unknown) => this.#host.log.warn("message_handler_failed", { app: ch.app, error: err }));
      }
    } catch (err) {
      this.#host.log.warn("message_handler_failed", { app: ch.app, error: err });
    }
  }

  // ── output (used by channels) ───────────────────────────────────────────

  /** Sends a one-way message on a channel; ignored once the session or channel has closed. */
  sendMessage(channelId: number, payload: Uint8Array | string): void {
    if (this.#state === CLOSED || this.#state === HANDSHAKE || !this.#channels.has(channelId)) return;
    const size = typeof payload === "string" ? Buffer.byteLength(payload) : payload.byteLength;
    if (size > this.#peerMaxFrame) {
      throw new RangeError(`Cannot send message: ${size} bytes exceed the client's frame limit of ${this.#peerMaxFrame}`);
    }
    this.#writer.frame(FrameType.Message, channelId, 0, payload);
  }

  get host(): SessionHost {
    return this.#host;
  }

  #sendError(channel: number, stream: number, code: number, message: string): void {
    this.#writer.frame(FrameType.Error, channel, stream, encodeCodedReason(code, message));
  }

  // ── flow control and endings ────────────────────────────────────────────

  #updateFlow(): void {
    if (this.#state === CLOSED) return;
    const socket = this.#socket;
    // A client that keeps to the announced maxInflight never trips the first test, so its
    // CANCEL and PING frames always get through; one that does not is simply not read.
    const blocked =
      this.#requests.size > this.#host.limits.maxInflightPerSession || socket.writableLength > socket.writableHighWaterMark;
    if (blocked && !this.#paused) {
      this.#paused = true;
      this.#decoder?.pause();
      socket.pause();
    } else if (!blocked && this.#paused) {
      this.#paused = false;
      socket.resume();
      try {
        this.#decoder?.resume();
      } catch (err) {
        this.#protocolFailure(err);
      }
    }
  }

  #maybeFinishDrain(): void {
    if (this.#state !== DRAINING || this.#requests.size > 0) return;
    this.#writer.flush();
    this.#socket.end();
    const t = setTimeout(() => this.#socket.destroy(), LINGER_AFTER_END_MS);
    t.unref?.();
  }

  #onTimeout(): void {
    const socket = this.#socket;
    if (socket.writableLength > 0) {
      this.#host.log.info("session_stalled", { peer: this.remoteAddress, unsentBytes: socket.writableLength });
      socket.destroy();
    } else if (this.#requests.size === 0) {
      this.#host.log.debug("session_idle", { peer: this.remoteAddress });
      this.goAway(WireError.Timeout, "idle timeout");
    }
  }

  #onPeerEnd(): void {
    // The client half-closed: it sends nothing more. Answer what runs, then end.
    if (this.#state === OPEN) {
      this.#state = DRAINING;
      this.#goAwayStream = this.#lastStream;
    }
    if (this.#state === DRAINING) this.#maybeFinishDrain();
    else this.#socket.end();
  }

  #refuse(status: number, why: string): void {
    this.#host.log.info("session_refused", { peer: this.remoteAddress, status, why });
    this.#state = CLOSED;
    this.#socket.end(encodeServerRefusal(status));
    const t = setTimeout(() => this.#socket.destroy(), LINGER_AFTER_END_MS);
    t.unref?.();
  }

  #protocolFailure(err: unknown): void {
    const e = err instanceof ProtocolError ? err : new ProtocolError(WireError.Internal, (err as Error)?.message ?? String(err));
    this.#host.stats.protocolErrors++;
    this.#host.log.info("session_protocol_error", { peer: this.remoteAddress, error: e });
    if (this.#state === HANDSHAKE) {
      this.#socket.destroy();
      return;
    }
    this.#sendError(0, 0, e.wireCode, e.message);
    this.#writer.flush();
    this.#state = CLOSED;
    this.#decoder = null;
    this.#socket.end();
    const t = setTimeout(() => this.#socket.destroy(), 200);
    t.unref?.();
  }

  #abort(why: string): void {
    this.#host.log.debug("session_aborted", { peer: this.remoteAddress, why });
    this.#socket.destroy();
  }

  #onClose(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#state = CLOSED;
    for (const ch of this.#channels.values()) ch.abort("session closed");
    for (const req of this.#requests.values()) req.abort("session closed");
    this.#host.stats.channelsOpen -= this.#channels.size;
    this.#channels.clear();
    this.#host.sessionClosed(this);
    this.#closedResolve();
  }
}

const EMPTY = Buffer.alloc(0);
