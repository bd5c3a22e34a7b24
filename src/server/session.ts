import type net from "node:net";
import { ProtocolError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { CLIENT_HELLO_SIZE, FrameType, PROTOCOL_VERSION, WireError } from "../protocol/constants.ts";
import { FrameDecoder, type FrameSink } from "../protocol/frame_decoder.ts";
import { FrameWriter } from "../protocol/frame_writer.ts";
import { decodeClientHello, encodeServerHello, encodeServerRefusal, tcpSignedMessage } from "../protocol/handshake.ts";
import { decodeChannelOpen, decodeCodedReason, encodeCodedReason } from "../protocol/payloads.ts";
import type { AppResult, SessionApp } from "./app.ts";
import type { BudgetHolder, BufferBudget } from "./buffer_budget.ts";
import type { Identity } from "./identity.ts";
import { InflightRequests } from "./inflight_requests.ts";
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
  readonly budget: BufferBudget;
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
 * In `open`, frames multiplex channels and requests. Every frame the peer sends
 * counts against the session's budgets, whatever its type: reading stops
 * (decoder and socket paused) while more than `maxInflightPerSession` requests
 * run (a client that ignores the limit it was told), while the session's
 * unsent output (PONGs, CHANNEL_OKs, ERRORs and responses alike) is over
 * `maxSessionOutputBytes`, or while the server as a whole is over
 * `maxBufferedBytes` and this session holds more than its share. A peer that
 * lets its paused session make no progress for `writeTimeoutMs` is cut off
 * (`session_cut_off` in the log says why). A handler that runs longer than
 * `requestTimeoutMs` is answered for (ERROR Timeout) and its slot freed.
 * Every request stream gets exactly one answer: a response, or an ERROR
 * (Cancelled for one the client cancelled or whose channel closed). Nothing is
 * written after the session ended its side.
 */
export class ServerSession implements FrameSink, BudgetHolder {
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
  #inflight: InflightRequests;
  #lastStream = 0;
  #goAwayStream = 0;
  #paused = false;
  /** Requests answered Cancelled whose handlers still run. */
  #abandoned = 0;
  /** The decoder asked the budget for memory for a frame in progress and was refused: it waits. */
  #growthRefused = false;
  /** When the last bytes arrived (for choosing idle sessions to evict). */
  #lastReadAt = Date.now();
  /** Bytes charged to the server's buffer budget. */
  #charged = 0;
  #waitsForBudget = false;
  #stallTimer: ReturnType<typeof setTimeout> | null = null;
  #sentAtStall = 0;
  #readAtStall = 0;
  #checkStallBound = (): void => this.#checkStall();
  /** Our side has ended (FIN sent or about to be): nothing more is written. */
  #ended = false;
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
    this.#inflight = new InflightRequests(host.limits.requestTimeoutMs, (req) => this.#onRequestExpired(req));
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
    if (now - this.openedAt < minAgeMs) return false;
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
    this.#host.log.info("session_evicted", { peer: this.remoteAddress, state: this.state, why: "idle while the server is at maxSessions" });
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
    this.#lastReadAt = Date.now();
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
    this.#updateFlow();
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
    this.#inflight.add(req);
    host.stats.inflight++;
    if (this.#inflight.size - this.#abandoned > host.limits.maxInflightPerSession) this.#updateFlow();
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
    if (!this.#inflight.take(req)) return; // its deadline passed, or the session closed
    this.#host.stats.inflight--;
    if (req.answered) this.#abandoned--;
    else this.#reply(req, value, failure);
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

  /** The handler outlived `requestTimeoutMs`: answer for it, free its slot, abort its signal. */
  #onRequestExpired(req: ServerRequest): void {
    const host = this.#host;
    host.stats.inflight--;
    host.stats.requestTimeouts++;
    req.abort("request timed out");
    host.log.info("request_timeout", { peer: this.remoteAddress, app: req.app, stream: req.stream, ms: host.limits.requestTimeoutMs });
    if (req.answered) this.#abandoned--;
    else if (this.#state !== CLOSED) {
      const ms = host.limits.requestTimeoutMs;
      this.#sendError(req.channelId, req.stream, WireError.Timeout, `Cannot answer request: its handler ran longer than requestTimeoutMs (${ms} ms)`);
    }
    this.#updateFlow();
    this.#maybeFinishDrain();
  }

  #sendError(channel: number, stream: number, code: number, message: string): void {
    this.#writer.frame(FrameType.Error, channel, stream, encodeCodedReason(code, message));
  }

  // ── flow control and endings ────────────────────────────────────────────

  #updateFlow(): void {
    if (this.#state === CLOSED) return;
    const socket = this.#socket;
    const limits = this.#host.limits;
    const decoder = this.#decoder;
    const unsent = socket.writableLength + this.#writer.pending;
    const held = unsent + (decoder === null ? 0 : decoder.buffered);
    const budget = this.#host.budget;
    budget.charge(this.#charged, held);
    this.#charged = held;
    const midFrame = decoder !== null && decoder.midFrame;
    if (!midFrame) budget.frameDone(this);
    // A frame in progress asks the budget for its memory itself (reserve); pausing it would
    // only keep it from finishing and freeing what it holds.
    this.#waitsForBudget = !midFrame && budget.mustWait(this, held);
    // A client that keeps to the announced maxInflight never trips the first test, so its
    // CANCEL and PING frames always get through; one that does not is simply not read.
    const running = this.#inflight.size;
    const blocked =
      running - this.#abandoned > limits.maxInflightPerSession ||
      running > 2 * limits.maxInflightPerSession ||
      unsent > limits.maxSessionOutputBytes ||
      this.#waitsForBudget ||
      this.#growthRefused;
    if (blocked && !this.#paused) {
      this.#paused = true;
      decoder?.pause();
      socket.pause();
    } else if (!blocked && this.#paused) {
      this.#paused = false;
      socket.resume();
      try {
        decoder?.resume();
      } catch (err) {
        this.#protocolFailure(err);
        return;
      }
      if (this.#growthRefused && !this.#paused) {
        // The held bytes asked for memory again and were refused again: wait on.
        this.#paused = true;
        socket.pause();
      }
    }
    this.#watchStall();
  }

  /** FrameSink: memory for a frame arriving in parts, from the server's budget. */
  reserve(bytes: number): boolean {
    if (this.#host.budget.reserve(this, bytes)) {
      this.#charged += bytes;
      return true;
    }
    this.#growthRefused = true;
    return false;
  }

  /** BudgetHolder: report what this session holds now. */
  recharge(): number {
    if (this.#state === CLOSED) return 0;
    const held = this.#socket.writableLength + this.#writer.pending + (this.#decoder === null ? 0 : this.#decoder.buffered);
    this.#host.budget.charge(this.#charged, held);
    this.#charged = held;
    return held;
  }

  /** BudgetHolder: the server has room again, or is over budget while this session holds much. */
  wake(): void {
    this.#growthRefused = false; // ask again
    this.#updateFlow();
  }

  /** Bytes the kernel has taken from us so far: it grows only while the peer reads. */
  #sent(): number {
    return this.#socket.bytesWritten - this.#socket.writableLength;
  }

  /**
   * Watches a session whose peer owes us progress: output queued that the
   * kernel cannot take (the peer does not read), or a frame it began and does
   * not finish (and that we do not hold back). No progress for
   * `writeTimeoutMs` cuts it off.
   */
  #watchStall(): void {
    if (this.#stallTimer !== null) return;
    const socket = this.#socket;
    const owesRead = !this.#paused && this.#decoder !== null && this.#decoder.midFrame;
    if (socket.writableLength === 0 && !owesRead) return;
    this.#sentAtStall = this.#sent();
    this.#readAtStall = socket.bytesRead;
    this.#stallTimer = setTimeout(this.#checkStallBound, this.#host.limits.writeTimeoutMs);
    this.#stallTimer.unref?.();
  }

  #checkStall(): void {
    this.#stallTimer = null;
    if (this.#state === CLOSED) return;
    this.#writer.flush(); // what is packed is not the peer's fault
    const socket = this.#socket;
    if (socket.writableLength > 0 && this.#sent() === this.#sentAtStall) {
      this.#cutOff("write_timeout");
      return;
    }
    if (!this.#paused && this.#decoder !== null && this.#decoder.midFrame && socket.bytesRead === this.#readAtStall) {
      this.#cutOff("read_timeout");
      return;
    }
    this.#watchStall();
  }

  /** Ends a session whose peer does not let it make progress; the log says why. */
  #cutOff(reason: "write_timeout" | "read_timeout"): void {
    this.#host.stats.sessionsCutOff++;
    this.#host.log.info("session_cut_off", { peer: this.remoteAddress, reason, unsentBytes: this.#socket.writableLength, heldBytes: this.#charged });
    this.#socket.destroy();
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
      this.#host.log.info("session_stalled", { peer: this.remoteAddress, unsentBytes: socket.writableLength });
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
    this.#host.log.info("session_refused", { peer: this.remoteAddress, status, why });
    this.#state = CLOSED;
    this.#endOurSide(LINGER_AFTER_END_MS, encodeServerRefusal(status));
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
    if (this.#stallTimer) clearTimeout(this.#stallTimer);
    this.#stallTimer = null;
    this.#state = CLOSED;
    this.#host.budget.release(this, this.#charged);
    this.#charged = 0;
    for (const ch of this.#channels.values()) ch.abort("session closed");
    for (const req of this.#inflight.values()) req.abort("session closed");
    this.#host.stats.inflight -= this.#inflight.size;
    this.#inflight.stop();
    this.#host.stats.channelsOpen -= this.#channels.size;
    this.#channels.clear();
    this.#host.sessionClosed(this);
    this.#closedResolve();
  }
}

const EMPTY = Buffer.alloc(0);
