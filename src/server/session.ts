import type net from "node:net";
import { ProtocolError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { CLIENT_HELLO_SIZE, FrameType, PROTOCOL_VERSION, WireError } from "../protocol/constants.ts";
import { FrameDecoder, type FrameSink } from "../protocol/frame_decoder.ts";
import { FrameWriter } from "../protocol/frame_writer.ts";
import { decodeClientHello, encodeServerHello, encodeServerRefusal, tcpSignedMessage } from "../protocol/handshake.ts";
import { decodeChannelOpen, decodeCodedReason, encodeCodedReason } from "../protocol/payloads.ts";
import type { AppResult, SessionApp } from "./app.ts";
import type { BufferBudget } from "./buffer_budget.ts";
import type { Identity } from "./identity.ts";
import { InflightRequests } from "./inflight_requests.ts";
import type { ServerLimits } from "./limits.ts";
import { ServerChannel, ServerRequest } from "./request_context.ts";
import { SessionFlow, type FlowSession } from "./session_flow.ts";
import type { ServerStats } from "./server_stats.ts";

/** What a session needs from the server that owns it. */
export interface SessionHost {
  readonly identity: Identity;
  readonly generation: number;
  readonly limits: ServerLimits;
  readonly app: SessionApp;
  readonly log: Logger;
  /** For events a peer can cause at will: at most one line a second each. */
  readonly peerLog: Logger;
  readonly stats: ServerStats;
  readonly writeSlabBytes: number;
  readonly budget: BufferBudget;
  sessionClosed(session: ServerSession): void;
}

/** Where a socket keeps its session, for the listeners every session shares. */
const SESSION = Symbol("perilink.serverSession");
type SessionSocket = net.Socket & { [SESSION]: ServerSession };

/** No channel open yet: shared by every session until its first channel (never written). */
const NO_CHANNELS: ReadonlyMap<number, ServerChannel> = new Map();

/** No handler running yet: shared by every session until its first (never added to). */
const NO_REQUESTS = new InflightRequests(1, () => {});

/** `closed` of a session whose socket closed before anyone asked. */
const CLOSED_ALREADY: Promise<void> = Promise.resolve();

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
 * In `open`, frames multiplex channels and requests. Every frame the peer sends
 * counts against the session's budgets, whatever its type: whether it reads on
 * is decided in one place, `SessionFlow` (session_flow.ts). A handler that runs
 * longer than `requestTimeoutMs` is answered for (ERROR Timeout) and its slot
 * freed (inflight_requests.ts). Every request stream gets exactly one answer:
 * a response, or an ERROR (Cancelled at once for one the client cancelled or
 * whose channel closed). Nothing is written after the session ended its side.
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
  #channels = NO_CHANNELS as Map<number, ServerChannel>;
  /** Requests whose handlers run; the shared empty set until the first handler that does not answer at once. */
  #inflight: InflightRequests = NO_REQUESTS;
  /** Whether this session reads on; the server's buffer budget holds it as one of its holders. */
  readonly flow: SessionFlow;
  #lastStream = 0;
  #goAwayStream = 0;
  /** Requests answered Cancelled whose handlers still run. */
  #abandoned = 0;
  /** When the last bytes arrived (for choosing idle sessions to evict). */
  #lastReadAt = performance.now();
  /** When it was accepted, on the monotonic clock (eviction must not follow a clock step). */
  #openedMono = performance.now();
  /** Our side has ended (FIN sent or about to be): nothing more is written. */
  #ended = false;
  #goAwayAfterHello: { code: number; reason: string } | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  /** `closed`, made when first asked for (most sessions close without anyone waiting). */
  #closed: Promise<void> | null = null;
  #closedResolve: (() => void) | null = null;

  constructor(socket: net.Socket, host: SessionHost) {
    this.#socket = socket;
    this.#host = host;
    this.remoteAddress = socket.remoteAddress ?? "";
    this.remotePort = socket.remotePort ?? 0;
    this.localAddress = socket.localAddress ?? "";
    this.localPort = socket.localPort ?? 0;
    this.#writer = new FrameWriter(socket, host.writeSlabBytes);
    this.flow = new SessionFlow(new ServerSession.#FlowView(this));
    // The listeners are the same functions for every session (a closure each per session was
    // most of an idle session's JS heap); they find the session on the socket.
    (socket as SessionSocket)[SESSION] = this;
    const on = ServerSession.#listeners;
    socket.on("data", on.data);
    socket.on("drain", on.drain);
    socket.on("timeout", on.timeout);
    socket.on("error", on.error);
    socket.on("close", on.close);
    socket.on("end", on.end);
    this.#timer = setTimeout(() => this.#abort("handshake_timeout"), host.limits.handshakeTimeoutMs);
    this.#timer.unref?.();
  }

  /** Resolves when the socket has closed. */
  get closed(): Promise<void> {
    return (this.#closed ??= new Promise((r) => (this.#closedResolve = r)));
  }

  get state(): (typeof STATE_NAMES)[number] {
    return STATE_NAMES[this.#state]!;
  }
  get inflight(): number {
    return this.#inflight.size;
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

  /**
   * Whether this session may give its slot to a newcomer when the server is
   * full: it has held the slot `minAgeMs` and does nothing with it (still in
   * its handshake, or open with no channel, no request, nothing unread and
   * nothing received for `minAgeMs`).
   */
  idleSince(now: number, minAgeMs: number): boolean {
    if (now - this.#openedMono < minAgeMs) return false;
    if (this.#state === HANDSHAKE) return true;
    return (
      this.#state === OPEN &&
      this.#channels.size === 0 &&
      this.#inflight.size === 0 &&
      now - this.#lastReadAt >= minAgeMs &&
      this.#decoder !== null &&
      this.#decoder.idle
    );
  }

  /** Gives up the slot: a session in its handshake is closed, an open one gets GOAWAY ServerBusy. */
  evict(): void {
    this.#host.peerLog.info("session_evicted", { peer: this.remoteAddress, state: this.state, why: "idle while the server is at maxSessions" });
    if (this.#state === HANDSHAKE) this.#socket.destroy();
    else void this.goAway(WireError.ServerBusy, "server at its session limit: idle session closed");
  }

  /** Closes the socket now; running requests see their signal abort. */
  destroy(): void {
    this.#socket.destroy();
  }

  // ── input ────────────────────────────────────────────────────────────────

  #onData(chunk: Buffer): void {
    if (this.#state === CLOSED) return; // after a protocol error nothing more is read
    this.#lastReadAt = performance.now();
    try {
      if (this.#state === HANDSHAKE) {
        chunk = this.#readHello(chunk);
        if (this.#state === HANDSHAKE || chunk.length === 0) return;
      }
      this.#decoder?.push(chunk);
    } catch (err) {
      this.#protocolFailure(err);
      return;
    }
    // Whatever the frames were, what they made us hold counts: stop reading when over budget.
    this.flow.update();
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
    this.flow.frameDone();
    switch (type) {
      case FrameType.Request:
        return this.#onRequest(channel, stream, payload);
      case FrameType.Message:
        return this.#onMessage(channel, payload);
      case FrameType.ChannelOpen:
        return this.#onChannelOpen(channel, payload);
      case FrameType.ChannelClose:
        return this.#onChannelClose(channel);
      case FrameType.Cancel: {
        const req = this.#inflight.get(stream);
        if (req !== undefined) this.#answerCancelled(req, "cancelled by client");
        return;
      }
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
    if (this.#channels === NO_CHANNELS) this.#channels = new Map();
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
    for (const req of this.#inflight.values()) if (req.channelId === id) this.#answerCancelled(req, "channel closed");
  }

  /**
   * Answers a running request at once with ERROR Cancelled and frees its slot
   * for the client; its handler is aborted and may run on (what it returns is
   * dropped), counted apart so that abandoned handlers stay bounded too.
   */
  #answerCancelled(req: ServerRequest, why: string): void {
    if (req.answered) return;
    req.abort(why);
    req.answered = true;
    this.#abandoned++;
    this.#sendError(req.channelId, req.stream, WireError.Cancelled, "request cancelled");
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
      this.flow.update();
      return;
    }
    if (result === null || typeof result !== "object" || typeof (result as Promise<AppResult>).then !== "function") {
      // Answered at once: no bookkeeping (a map insert and delete per request was most of our
      // garbage); only the check that the peer still reads what we write.
      this.#reply(req, result as AppResult, undefined);
      this.flow.update();
      return;
    }
    if (this.#inflight === NO_REQUESTS) this.#inflight = this.#newInflight();
    this.#inflight.add(req);
    host.stats.inflight++;
    const max = host.limits.maxInflightPerSession;
    if (this.#inflight.size - this.#abandoned > max || this.#inflight.size > 2 * max) this.flow.update();
    this.#await(req, result as Promise<AppResult>);
  }

  /** Apart from #onRequest, which runs per request: a closure there would cost a context on every call. */
  #newInflight(): InflightRequests {
    return new InflightRequests(this.#host.limits.requestTimeoutMs, (r) => this.#onRequestExpired(r));
  }

  async #await(req: ServerRequest, pending: Promise<AppResult>): Promise<void> {
    let value: AppResult;
    let failure: unknown;
    try {
      value = await pending;
    } catch (err) {
      failure = err ?? new Error("request handler rejected");
    }
    if (!this.#inflight.take(req)) return; // its deadline passed, or the session closed
    this.#host.stats.inflight--;
    if (req.answered) this.#abandoned--;
    else this.#reply(req, value, failure);
    this.flow.update();
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

  /** The handler outlived `requestTimeoutMs`: answer for it, free its slot, abort its signal. */
  #onRequestExpired(req: ServerRequest): void {
    const host = this.#host;
    host.stats.inflight--;
    host.stats.requestTimeouts++;
    req.abort("request timed out");
    host.peerLog.info("request_timeout", { peer: this.remoteAddress, app: req.app, stream: req.stream, ms: host.limits.requestTimeoutMs });
    if (req.answered) this.#abandoned--;
    else if (this.#state !== CLOSED) {
      const ms = host.limits.requestTimeoutMs;
      this.#sendError(req.channelId, req.stream, WireError.Timeout, `Cannot answer request: its handler ran longer than requestTimeoutMs (${ms} ms)`);
    }
    this.flow.update();
    this.#maybeFinishDrain();
  }

  #sendError(channel: number, stream: number, code: number, message: string): void {
    this.#writer.frame(FrameType.Error, channel, stream, encodeCodedReason(code, message));
  }

  // ── flow control and endings ────────────────────────────────────────────

  /** The flow control's view of this session: one small object, its methods shared. */
  static #FlowView = class implements FlowSession {
    #s: ServerSession;
    constructor(s: ServerSession) {
      this.#s = s;
    }
    get socket(): net.Socket {
      return this.#s.#socket;
    }
    get writer(): FrameWriter {
      return this.#s.#writer;
    }
    get limits(): ServerLimits {
      return this.#s.#host.limits;
    }
    get budget(): BufferBudget {
      return this.#s.#host.budget;
    }
    decoder(): FrameDecoder | null {
      return this.#s.#decoder;
    }
    running(): number {
      return this.#s.#inflight.size;
    }
    abandoned(): number {
      return this.#s.#abandoned;
    }
    closed(): boolean {
      return this.#s.#state === CLOSED;
    }
    resumeFailed(err: unknown): void {
      this.#s.#protocolFailure(err);
    }
    stalled(reason: "write_timeout" | "read_timeout", heldBytes: number): void {
      const s = this.#s;
      s.#host.stats.sessionsCutOff++;
      s.#host.peerLog.info("session_cut_off", { peer: s.remoteAddress, reason, unsentBytes: s.#socket.writableLength, heldBytes });
      s.#socket.destroy();
    }
  };

  /** The socket's listeners, shared by every session (`this` is the socket). */
  static #listeners = {
    data(this: SessionSocket, chunk: Buffer): void {
      this[SESSION].#onData(chunk);
    },
    drain(this: SessionSocket): void {
      this[SESSION].flow.update();
    },
    timeout(this: SessionSocket): void {
      this[SESSION].#onTimeout();
    },
    error(this: SessionSocket, err: Error): void {
      const s = this[SESSION];
      s.#host.log.debug("session_socket_error", { peer: s.remoteAddress, error: err });
    },
    close(this: SessionSocket): void {
      this[SESSION].#onClose();
    },
    end(this: SessionSocket): void {
      this[SESSION].#onPeerEnd();
    },
  };

  /** FrameSink: memory for a frame arriving in parts. */
  reserve(bytes: number): boolean {
    return this.flow.reserve(bytes);
  }

  #maybeFinishDrain(): void {
    if (this.#state !== DRAINING || this.#inflight.size > 0) return;
    this.#endOurSide(LINGER_AFTER_END_MS);
  }

  /** Sends what is packed, then our FIN (with `last` bytes, if any); the socket is destroyed after `lingerMs`. */
  #endOurSide(lingerMs: number, last?: Buffer): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#writer.flush();
    if (last === undefined) this.#socket.end();
    else this.#socket.end(last);
    const t = setTimeout(() => this.#socket.destroy(), lingerMs);
    t.unref?.();
  }

  #onTimeout(): void {
    const socket = this.#socket;
    if (socket.writableLength > 0) {
      this.#host.peerLog.info("session_stalled", { peer: this.remoteAddress, unsentBytes: socket.writableLength });
      socket.destroy();
    } else if (this.#inflight.size === 0) {
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
    else this.#endOurSide(LINGER_AFTER_END_MS);
  }

  #refuse(status: number, why: string): void {
    this.#host.peerLog.info("session_refused", { peer: this.remoteAddress, status, why });
    this.#state = CLOSED;
    this.#endOurSide(LINGER_AFTER_END_MS, encodeServerRefusal(status));
  }

  #protocolFailure(err: unknown): void {
    const e = err instanceof ProtocolError ? err : new ProtocolError(WireError.Internal, (err as Error)?.message ?? String(err));
    this.#host.stats.protocolErrors++;
    this.#host.peerLog.info("session_protocol_error", { peer: this.remoteAddress, error: e });
    if (this.#state === HANDSHAKE) {
      this.#socket.destroy();
      return;
    }
    this.#sendError(0, 0, e.wireCode, e.message);
    this.#state = CLOSED;
    this.#decoder = null;
    this.#socket.pause(); // nothing more is read: what a broken peer still sends costs us nothing
    this.#endOurSide(200);
  }

  #abort(why: string): void {
    this.#host.log.debug("session_aborted", { peer: this.remoteAddress, why });
    this.#socket.destroy();
  }

  #onClose(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#state = CLOSED;
    this.flow.release();
    for (const ch of this.#channels.values()) ch.abort("session closed");
    for (const req of this.#inflight.values()) req.abort("session closed");
    this.#host.stats.inflight -= this.#inflight.size;
    this.#inflight.stop();
    this.#host.stats.channelsOpen -= this.#channels.size;
    this.#channels.clear();
    this.#host.sessionClosed(this);
    if (this.#closed === null) this.#closed = CLOSED_ALREADY;
    else this.#closedResolve?.();
    this.#closedResolve = null;
  }
}

const EMPTY = Buffer.alloc(0);
