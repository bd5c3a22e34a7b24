import type net from "node:net";
import { ProtocolError } from "../errors.ts";
import { FrameFlag, FrameType, WireError } from "../protocol/constants.ts";
import { FrameDecoder, type FrameSink } from "../protocol/frame_decoder.ts";
import type { FrameWriter } from "../protocol/frame_writer.ts";
import { decodeCodedReason, encodeCodedReason } from "../protocol/payloads.ts";
import type { BufferBudget } from "./buffer_budget.ts";
import type { ServerLimits } from "./limits.ts";
import { ServerRequest, type ChannelHost } from "./request_context.ts";
import { SessionChannels, type ChannelServer } from "./session_channels.ts";
import { SessionOutput } from "./session_output.ts";
import { SessionFlow, type FlowInput, type FlowSession } from "./session_flow.ts";
import { answerClientHello, CLIENT_HELLO_BYTES, refusalForV1, startSealed, type HelloSource } from "./session_handshake.ts";
import { Feature } from "../protocol/sealed_handshake.ts";
import type { KeyVerdict, SealedInput } from "./session_input.ts";
import { SessionRequests, type RequestHost, type RequestOwner } from "./session_requests.ts";
import { SessionStreams } from "./session_streams.ts";

/** What a session needs from the server that owns it. */
export interface SessionHost extends HelloSource, ChannelServer, RequestHost {
  readonly writeSlabBytes: number;
  readonly budget: BufferBudget;
  /** The client proved its key, before any of its frames is decoded (a stranger's session may be ended here). */
  keyProven(session: ServerSession): KeyVerdict;
  /** Whether the session's key is trusted now (a stranger's may have been paired since). */
  keyTrusted(session: ServerSession): boolean;
  /** The ADDRESSES payload for a session that arrived on `localAddress` (advertised.ts), or null: none to tell. */
  advertised?(localAddress: string): Buffer | null;
  sessionClosed(session: ServerSession): void;
}

/** Where a socket keeps its session, for the listeners every session shares. */
const SESSION = Symbol("perilink.serverSession");
type SessionSocket = net.Socket & { [SESSION]: ServerSession };

const CLOSED_ALREADY: Promise<void> = Promise.resolve(); // `closed` of a session whose socket closed before anyone asked

const HANDSHAKE = 0, OPEN = 1, DRAINING = 2, CLOSED = 3;
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
 * is decided in one place, `SessionFlow` (session_flow.ts). Every request
 * stream gets exactly one answer, from one settle path (session_requests.ts).
 * The opening exchange is session_handshake.ts. Nothing is written after the
 * session ended its side.
 */
export class ServerSession implements FrameSink, ChannelHost {
  readonly remoteAddress: string; readonly remotePort: number;
  readonly localAddress: string; readonly localPort: number;

  #socket: net.Socket;
  #host: SessionHost;
  #state = HANDSHAKE;
  #hello: Buffer | null = null;
  #input: SealedInput | null = null; // records → the client's proof → frames, from the handshake on
  #out: SessionOutput;
  #channels: SessionChannels | null = null; // at the first CHANNEL_OPEN or MESSAGE
  /** Whether this session reads on; the server's buffer budget holds it as one of its holders. */
  readonly flow: SessionFlow;
  #requests: SessionRequests | null = null; // at the first REQUEST
  #streams: SessionStreams | null = null; // at the first streamed body or WINDOW
  #lastStream = 0;
  #goAwayStream = 0;
  /** When the last bytes arrived (for choosing idle sessions to evict). */
  #lastReadAt = performance.now();
  /** When it was accepted, on the monotonic clock (eviction must not follow a clock step). */
  #openedMono = performance.now();
  #goAwayAfterHello: { code: number; reason: string } | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #closed: Promise<void> | null = null; // made when first asked for: most sessions close unwatched
  #closedResolve: (() => void) | null = null;

  constructor(socket: net.Socket, host: SessionHost) {
    this.#socket = socket;
    this.#host = host;
    this.remoteAddress = socket.remoteAddress ?? "";
    this.remotePort = socket.remotePort ?? 0;
    this.localAddress = socket.localAddress ?? "";
    this.localPort = socket.localPort ?? 0;
    this.#out = new SessionOutput(socket, host.writeSlabBytes);
    this.flow = new SessionFlow(new ServerSession.#View(this));
    // The listeners are the same functions for every session (a closure each per session was
    // most of an idle session's JS heap); they find the session on the socket.
    (socket as SessionSocket)[SESSION] = this;
    for (const [event, listener] of ServerSession.#listenerList) socket.on(event, listener);
    this.#timer = setTimeout(() => this.#abort("handshake_timeout"), host.limits.handshakeTimeoutMs);
    this.#timer.unref?.();
  }

  /** Resolves when the socket has closed. */
  get closed(): Promise<void> { return (this.#closed ??= new Promise((r) => (this.#closedResolve = r))); }

  get state(): (typeof STATE_NAMES)[number] { return STATE_NAMES[this.#state]!; } // ChannelHost: it and below, what the channels' contexts read
  get serverId(): string { return this.#host.identity.serverId; }
  get generation(): number { return this.#host.generation; }
  get clientKey(): string { return this.#input?.fingerprint ?? ""; }
  get transcript(): Buffer | null { return this.#input?.transcript ?? null; }
  get bytesMoved(): readonly [number, number] { return [this.#socket.bytesRead, this.#socket.bytesWritten]; } // metrics: bytes read, written

  /** Sends GOAWAY (last stream id processed), refuses later streams, ends once every started request answered; resolves on close. */
  goAway(code: number = WireError.ShuttingDown, reason = "server draining"): Promise<void> {
    if (this.#state === HANDSHAKE) {
      // Accepted, so it is served: the GOAWAY follows the hello, and the client moves on at once.
      this.#goAwayAfterHello = { code, reason };
    } else if (this.#state === OPEN) {
      this.#out.frame(FrameType.GoAway, 0, this.#lastStream, encodeCodedReason(code, reason));
      this.#beginDrain();
    }
    return this.closed;
  }

  /**
   * How readily this session gives its slot to a newcomer when the server is
   * full (lower first; null: not at all). It must have held the slot
   * `minAgeMs` and run nothing: 0 — in its handshake, or a stranger's (a key
   * the server does not know: pings keep no slot); then, with nothing unread
   * and nothing received for `minAgeMs`, 1 — no channel open, 2 — channels
   * open but quiet (oldest-quiet first, see `quietSince`).
   */
  evictionRank(now: number, minAgeMs: number): number | null {
    if (now - this.#openedMono < minAgeMs) return null;
    if (this.#state === HANDSHAKE) return 0;
    if (this.#state !== OPEN || this.#running() > 0 || this.#input === null) return null;
    if (this.#host.access?.knows(this.#input.fingerprint, false) === false) return 0;
    if (now - this.#lastReadAt < minAgeMs || !this.#input.idle) return null;
    return (this.#channels?.working ?? 0) === 0 ? 1 : 2;
  }

  /** When this session last read anything (performance.now() ms). */
  get quietSince(): number { return this.#lastReadAt; }
  /** Whether handlers run here now (a drain tells such sessions first). */
  get busy(): boolean { return this.#running() > 0; }

  /** Gives up the slot: a session in its handshake is closed, an open one gets GOAWAY ServerBusy. */
  evict(): void {
    this.#host.peerLog.info("session_evicted", { peer: this.remoteAddress, state: this.state, why: "idle while the server is at maxSessions" });
    if (this.#state === HANDSHAKE) this.#socket.destroy();
    else void this.goAway(WireError.ServerBusy, "server at its session limit: idle session closed");
  }

  /** Closes the socket now; running requests see their signal abort. */
  destroy(): void { this.#socket.destroy(); }

  /** Sends the addresses the server listens on for this session's port group (docs/protocol.md §5.4), if there are any to tell. */
  advertise(): void {
    const list = this.#state === OPEN && (this.#out.peerFeatures & Feature.Addresses) !== 0 ? this.#host.advertised?.(this.localAddress) : null;
    if (list) this.#out.frame(FrameType.Addresses, 0, 0, list);
  }

  #onData(chunk: Buffer): void {
    if (this.#state === CLOSED) return; // after a protocol error nothing more is read
    this.#lastReadAt = performance.now();
    try {
      if (this.#state === HANDSHAKE) {
        chunk = this.#readHello(chunk);
        if (this.#state === HANDSHAKE || chunk.length === 0) return;
      }
      const input = this.#input;
      if (input === null) return;
      input.take(chunk);
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
    const v1 = refusalForV1(buf);
    if (v1 !== null) {
      this.#refuse(WireError.VersionUnsupported, "client speaks protocol version 1", v1);
      return EMPTY;
    }
    if (buf.length < CLIENT_HELLO_BYTES) {
      this.#hello = buf;
      return EMPTY;
    }
    this.#hello = null;
    this.#clearTimer();
    const host = this.#host;
    const answer = answerClientHello(buf, host);
    if (!answer.ok) {
      this.#refuse(answer.status, answer.why, answer.reply);
      return EMPTY;
    }
    this.#input = startSealed(this.#socket, this.#out, answer, new FrameDecoder(this, host.limits.maxFrameBytes), host, this);
    this.#state = OPEN;
    this.advertise();
    this.#socket.setTimeout(host.limits.idleTimeoutMs);
    if (this.#goAwayAfterHello) void this.goAway(this.#goAwayAfterHello.code, this.#goAwayAfterHello.reason);
    return buf.subarray(CLIENT_HELLO_BYTES);
  }

  /** FrameSink: one decoded frame. */
  onFrame(type: number, flags: number, channel: number, stream: number, payload: Buffer): void {
    this.flow.frameDone();
    switch (type) {
      case FrameType.Request:
        return this.#onRequest(channel, stream, payload, flags);
      case FrameType.Data:
        return this.#strm().data(stream, this.#lastStream, flags, payload);
      case FrameType.Window:
        return this.#strm().windowFrame(stream, payload);
      case FrameType.Message:
        return this.#chans().message(channel, payload);
      case FrameType.ChannelOpen:
        return this.#chans().open(channel, payload, this.#state === OPEN);
      case FrameType.ChannelClose:
        if (this.#channels?.close(channel)) this.#requests?.cancelChannel(channel);
        return;
      case FrameType.Cancel:
        return this.#requests?.cancelStream(stream);
      case FrameType.Ping:
        this.#out.frame(FrameType.Pong, 0, stream, payload);
        return;
      case FrameType.Pong:
        return;
      case FrameType.GoAway:
        // The client will send nothing more; finish what runs, then close.
        if (this.#state === OPEN) this.#beginDrain();
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

  #onRequest(channelId: number, stream: number, payload: Buffer, flags: number): void {
    if (stream <= this.#lastStream) {
      throw new ProtocolError(WireError.ProtocolError, `Cannot accept request: stream id ${stream} is not above ${this.#lastStream}`);
    }
    this.#lastStream = stream;
    if (this.#state !== OPEN && stream > this.#goAwayStream) {
      this.#out.error(channelId, stream, WireError.RefusedStream, "Cannot start request: the session is draining; send it again on a new session");
      return;
    }
    const ch = this.#channels?.get(channelId);
    if (!ch) {
      this.#out.error(channelId, stream, WireError.UnknownChannel, `Cannot start request: channel ${channelId} is not open`);
      return;
    }
    this.#host.stats.requests++;
    const body = (flags & FrameFlag.Streamed) !== 0 ? this.#strm().openBody(stream, payload) : null;
    (this.#requests ??= this.#newRequests()).run(new ServerRequest(ch, stream, body ?? payload), payload, body);
  }

  /** ChannelHost: async message handlers started past the limit, or one settled. */
  messagesChanged(): void { this.flow.update(); this.#maybeFinishDrain(); }

  /** Sends a one-way message on a channel; ignored once the session or channel has closed. */
  sendMessage(channelId: number, payload: Uint8Array | string): void {
    if (this.#state === CLOSED || this.#state === HANDSHAKE || this.#channels?.has(channelId) !== true) return;
    this.#out.message(channelId, payload);
  }

  /** What flow control and the request table see of this session: one small object, its methods shared. */
  static #View = class implements FlowSession, RequestOwner {
    #s: ServerSession;
    constructor(s: ServerSession) { this.#s = s; }
    get socket(): net.Socket { return this.#s.#socket; }
    get writer(): FrameWriter { return this.#s.#out; }
    get out(): SessionOutput { return this.#s.#out; }
    get limits(): ServerLimits { return this.#s.#host.limits; }
    get budget(): BufferBudget { return this.#s.#host.budget; }
    get remoteAddress(): string { return this.#s.remoteAddress; }
    decoder(): FlowInput | null { return this.#s.#input; }
    running(): number { return this.#s.#running(); }
    pinnedBytes(): number { return (this.#s.#channels?.pendingMessageBytes ?? 0) + (this.#s.#streams?.bufferedBytes ?? 0); }
    abandoned(): number { return this.#s.#requests?.abandoned ?? 0; }
    closed(): boolean { return this.#s.#state === CLOSED; }
    flowUpdate(): void { this.#s.flow.update(); }
    settled(): void {
      this.#s.flow.update();
      this.#s.#maybeFinishDrain();
    }
    resumeFailed(err: unknown): void { this.#s.#protocolFailure(err); }
    streams(): SessionStreams { return this.#s.#strm(); }
    streamDone(stream: number, why: string): void { this.#s.#streams?.endStream(stream, why); }
    stalled(reason: "write_timeout" | "read_timeout", heldBytes: number): void {
      const s = this.#s;
      s.#host.stats.sessionsCutOff++;
      s.#host.peerLog.info("session_cut_off", { peer: s.remoteAddress, reason, unsentBytes: s.#socket.writableLength, heldBytes });
      s.#socket.destroy();
    }
  };

  /** The socket's listeners, shared by every session (`this` is the socket). */
  static #listeners = {
    data(this: SessionSocket, chunk: Buffer): void { this[SESSION].#onData(chunk); },
    drain(this: SessionSocket): void { this[SESSION].flow.update(); },
    timeout(this: SessionSocket): void { this[SESSION].#onTimeout(); },
    error(this: SessionSocket, err: Error): void { this[SESSION].#host.log.debug("session_socket_error", { peer: this[SESSION].remoteAddress, error: err }); },
    close(this: SessionSocket): void { this[SESSION].#onClose(); },
    end(this: SessionSocket): void { this[SESSION].#onPeerEnd(); },
  };
  static #listenerList = Object.entries(ServerSession.#listeners) as [string, (...args: any[]) => void][];

  // Channels and the request table are made on first use (an idle session holds neither),
  // apart from the paths that use them: a closure there would cost a context on every call.
  /** Handlers running: requests, and async message handlers (a drain waits for both). */
  #running(): number { return (this.#requests === null ? 0 : this.#requests.running) + (this.#channels?.pendingMessages ?? 0); }
  #chans(): SessionChannels { return (this.#channels ??= new SessionChannels(this.#host, this, this.#out)); }
  #newRequests(): SessionRequests { return new SessionRequests(new ServerSession.#View(this), this.#host); }
  #strm(): SessionStreams { return (this.#streams ??= new SessionStreams(this.#socket, this.#out, this.#host.limits)); }

  /** FrameSink: memory for a frame arriving in parts. */
  reserve(bytes: number): boolean {
    return this.flow.reserve(bytes);
  }

  /** open → draining: streams after the last one seen are refused; the session ends when the last request is answered. */
  #beginDrain(): void {
    this.#state = DRAINING;
    this.#goAwayStream = this.#lastStream;
    this.#maybeFinishDrain();
  }

  #maybeFinishDrain(): void {
    if (this.#state !== DRAINING || this.#running() > 0) return;
    this.#out.end(LINGER_AFTER_END_MS);
  }

  #onTimeout(): void {
    const socket = this.#socket;
    if (socket.writableLength > 0) {
      this.#host.peerLog.info("session_stalled", { peer: this.remoteAddress, unsentBytes: socket.writableLength });
      socket.destroy();
    } else if (this.#running() === 0) {
      this.#host.log.debug("session_idle", { peer: this.remoteAddress });
      this.goAway(WireError.Timeout, "idle timeout");
    }
  }

  #onPeerEnd(): void {
    // The client half-closed: it sends nothing more. Answer what runs, then end.
    if (this.#state === OPEN) this.#beginDrain();
    else if (this.#state === DRAINING) this.#maybeFinishDrain();
    else this.#out.end(LINGER_AFTER_END_MS);
  }

  #refuse(status: number, why: string, reply: Buffer): void {
    this.#host.peerLog.info("session_refused", { peer: this.remoteAddress, status, why });
    this.#state = CLOSED;
    this.#out.end(LINGER_AFTER_END_MS, reply);
  }

  #protocolFailure(err: unknown): void {
    const e = err instanceof ProtocolError ? err : new ProtocolError(WireError.Internal, (err as Error)?.message ?? String(err));
    this.#host.stats[e.code === "PERILINK_ACCESS_DENIED" ? "accessDenied" : "protocolErrors"]++; // a stranger past its bounds is refused access
    this.#host.peerLog.info("session_protocol_error", { peer: this.remoteAddress, error: e });
    if (this.#state === HANDSHAKE) {
      this.#socket.destroy();
      return;
    }
    this.#out.error(0, 0, e.wireCode, e.message);
    this.#state = CLOSED;
    this.#input = null;
    this.#socket.pause(); // nothing more is read: what a broken peer still sends costs us nothing
    this.#out.end(200);
  }

  #clearTimer(): void { if (this.#timer !== null) clearTimeout(this.#timer); this.#timer = null; }

  #abort(why: string): void { this.#host.log.debug("session_aborted", { peer: this.remoteAddress, why }); this.#socket.destroy(); }

  #onClose(): void {
    this.#clearTimer();
    this.#state = CLOSED;
    this.flow.release();
    this.#channels?.closeAll();
    this.#requests?.close();
    this.#streams?.close();
    this.#host.sessionClosed(this);
    if (this.#closed === null) this.#closed = CLOSED_ALREADY;
    else this.#closedResolve?.();
    this.#closedResolve = null;
  }
}

const EMPTY = Buffer.alloc(0);
