import { EventEmitter } from "node:events";
import type net from "node:net";
import { checkMs, MAX_TIMER_MS } from "../duration.ts";
import { LineDeadError, ProtocolError, RequestRefusedError, SessionClosedError } from "../errors.ts";
import { FrameFlag, FrameType, WireError, wireErrorName } from "../protocol/constants.ts";
import { FrameDecoder, type FrameSink } from "../protocol/frame_decoder.ts";
import { FrameWriter } from "../protocol/frame_writer.ts";
import { dataChunkFor, gatherSource, isStreamSource, OutgoingBody, type BodySource } from "../protocol/outgoing_body.ts";
import { Feature } from "../protocol/sealed_handshake.ts";
import type { RecordOpener } from "../protocol/record_layer.ts";
import { bytesToUuid } from "../protocol/keys.ts";
import { decodeAddresses, decodeCodedReason, encodeChannelOpen, type AdvertisedAddress } from "../protocol/payloads.ts";
import { TARGET } from "../target.ts";
import { ClientChannel, openDeadline, type ChannelSession, type RequestOptions } from "./client_channel.ts";
import { checkServer, clientHandshake, openRecords, startSealed, type Handshake } from "./client_handshake.ts";
import { processClientKey, type ClientKey } from "./client_key.ts";
import { ClientStreams } from "./client_streams.ts";
import { OutputGate } from "../protocol/output_gate.ts";
import { Liveness } from "./line/liveness.ts";
import { RequestTable, type ResponseBody, type Want } from "./request_table.ts";
import type { ClientSessionOptions } from "./client_session_options.ts";
import { errorFromWire } from "./wire_errors.ts";
import { sealPlaintextFor } from "../runtime/record_size.ts";

export { ClientChannel, type RequestOptions } from "./client_channel.ts";
export { errorFromWire } from "./wire_errors.ts";
export type { ClientSessionOptions } from "./client_session_options.ts";

/** The largest stream or channel id (u32). A session that has used it up retires (docs/protocol.md §4.1). */
export const MAX_STREAM_ID = 0xffff_ffff;


/** The default of `request()`'s options: shared, so a call without options allocates nothing for them. */
const NO_OPTIONS: RequestOptions = Object.freeze({});

/**
 * One client TCP session to one server address: channels, requests and
 * one-way messages over a verified handshake (client_handshake.ts); the
 * requests' slots and deadlines live in request_table.ts. The session table
 * (client.ts) keeps one of these per server; this class knows nothing of
 * other sessions.
 *
 * States: open ──GOAWAY from the server──▶ draining ──socket closed──▶ closed
 *         open ──stream or channel ids used up──▶ retiring (a local GOAWAY: it
 *              closes itself once its requests are answered) ──▶ closed
 *         open / draining ──close()──▶ (requests finish; new ones are refused
 *              unsent, safe to send elsewhere) ──▶ closed
 *         open ──a PING unanswered within pingTimeoutMs (line/liveness.ts)──▶
 *              destroyed (PERILINK_LINE_DEAD) ──▶ closed
 * Draining and retiring sessions take no new channel or request.
 *
 * Events: `goaway` (lastStream, code, reason) — also when the session retires;
 * `addresses` (the server's listening addresses, §5.4); `close` (error | undefined).
 */
export class ClientSession extends EventEmitter implements ChannelSession {
  readonly serverId: string;
  readonly publicKey: Buffer;
  readonly generation: number;
  readonly serverLimits: { maxFrame: number; maxChannels: number; maxInflight: number; idleTimeoutMs: number };
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** The sealed handshake's transcript hash (a pairing proof is bound to it), and the fingerprint of the key this session proved. */
  readonly transcript: Buffer;
  readonly clientKey: string;
  /** Where the server says it listens (its last ADDRESSES frame, §5.4): candidates to prove, not proven. */
  serverAddresses: AdvertisedAddress[] = [];

  #socket: net.Socket;
  #writer: FrameWriter;
  /** The server's records, opened before the decoder sees their frames. */
  #opener: RecordOpener;
  #opened: Buffer[] = [];
  #decoder: FrameDecoder;
  #requests: RequestTable;
  #streams: ClientStreams | null = null; // at the first streamed body
  #gate: OutputGate | null = null; // at the first one-way message
  #maxFrame: number;
  #creditOnArrival = false;
  #dataChunk: number; // the largest DATA payload: one whole record to this server (§2.5)
  #serverStreams: boolean; // the server announced streamed bodies (Feature.Streams): a first-release one takes them whole
  #channels = new Map<number, ClientChannel>();
  #opening = new Map<number, { resolve(c: ClientChannel): void; reject(e: Error): void }>();
  #nextChannel = 1;
  #nextStream: number;
  #goAwayStream = -1;
  #retiring = false;
  /** close() was called: nothing new is sent, what is pending finishes. */
  #ending = false;
  #closed = false;
  #closing: Promise<void> | null = null;
  #closeError: Error | undefined;
  #requestTimeoutMs: number;
  #liveness: Liveness;
  #lastRead = performance.now();
  /** socket.bytesWritten when the last bytes arrived: what we sent since waits ahead of a PING. */
  #writtenAtRead = 0;

  private constructor(
    h: Handshake,
    key: ClientKey,
    maxFrame: number,
    requestTimeoutMs: number,
    firstStreamId: number,
    live: { silenceMs: number; pingTimeoutMs: number },
  ) {
    super();
    const { socket, hello } = h;
    this.#socket = socket;
    this.serverId = bytesToUuid(hello.serverId);
    this.publicKey = Buffer.from(hello.publicKey);
    this.generation = hello.generation;
    this.serverLimits = {
      maxFrame: hello.maxFrame,
      maxChannels: hello.maxChannels,
      maxInflight: hello.maxInflight,
      idleTimeoutMs: hello.idleTimeoutMs,
    };
    this.remoteAddress = socket.remoteAddress ?? "";
    this.remotePort = socket.remotePort ?? 0;
    this.transcript = h.sealed.transcript;
    this.clientKey = key.fingerprint;
    this.#requestTimeoutMs = requestTimeoutMs;
    this.#nextStream = firstStreamId;
    const { sink, opener } = startSealed(h, key);
    this.#writer = new FrameWriter(sink);
    this.#opener = opener;
    this.#decoder = new FrameDecoder(this.#sink, maxFrame);
    const writer = this.#writer;
    this.#maxFrame = maxFrame;
    this.#serverStreams = (hello.features & Feature.Streams) !== 0;
    this.#dataChunk = dataChunkFor(sealPlaintextFor(hello.features));
    this.#requests = new RequestTable(
      {
        request: (channel, stream, payload) =>
          payload instanceof OutgoingBody ? this.#strm().send(channel, stream, payload) : writer.frame(FrameType.Request, channel, stream, payload),
        cancel: (channel, stream) => writer.frame(FrameType.Cancel, channel, stream),
        openResponse: (stream, limit) => this.#strm().openResponse(stream, limit),
        stopStream: (stream, err) => this.#streams?.stop(stream, err),
        timedOut: () => this.#liveness.timedOut(),
      },
      hello.maxInflight,
    );
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    socket.on("error", (err) => (this.#closeError ??= err));
    socket.on("close", () => this.#onClose());
    socket.on("end", () => socket.end());
    this.#liveness = new Liveness(
      {
        lastRead: () => this.#lastRead,
        writtenSinceRead: () => socket.bytesWritten - this.#writtenAtRead,
        outstanding: () => this.#requests.size,
        ping: (payload) => writer.frame(FrameType.Ping, 0, 0, payload),
        dead: (silentForMs) =>
          this.destroy(
            new LineDeadError(
              `Cannot keep session to ${this.remoteAddress}:${this.remotePort}: silent for ${Math.round(silentForMs)} ms, a PING unanswered for ${live.pingTimeoutMs} ms: the line is dead`,
            ),
          ),
      },
      { silenceMs: live.silenceMs, pingTimeoutMs: live.pingTimeoutMs, keepaliveMs: Math.max(100, Math.floor(hello.idleTimeoutMs / 3)) },
    );
    if (h.rest.length > 0) this.#onData(h.rest);
    socket.resume();
  }

  /** Connects, sends the hello, and verifies the server's signature over our nonce. */
  static async connect(options: ClientSessionOptions): Promise<ClientSession> {
    const firstStreamId = options.firstStreamId ?? 1;
    if (!Number.isInteger(firstStreamId) || firstStreamId < 1 || firstStreamId > MAX_STREAM_ID) {
      throw new RangeError(`firstStreamId must be an integer in 1..${MAX_STREAM_ID}`);
    }
    const live = {
      silenceMs: checkMs(options.silenceMs ?? TARGET.client.silenceMs, "session option", "silenceMs", 1),
      pingTimeoutMs: checkMs(options.pingTimeoutMs ?? TARGET.client.pingTimeoutMs, "session option", "pingTimeoutMs"),
    };
    const requestTimeoutMs = checkMs(options.requestTimeoutMs ?? TARGET.client.requestTimeoutMs, "session option", "requestTimeoutMs");
    const maxFrame = options.maxFrame ?? TARGET.client.maxFrameBytes;
    const key = (await options.clientKey) ?? processClientKey();
    const h = await clientHandshake({
      host: options.host,
      port: options.port,
      timeoutMs: checkMs(options.timeoutMs ?? Math.min(TARGET.client.probeTimeoutMs * 5, MAX_TIMER_MS), "session option", "timeoutMs"),
      maxFrame,
      localAddress: options.localAddress,
      signal: options.signal,
    });
    if (options.checkServer) checkServer(h, options.checkServer, options.host, options.port);
    const session = new ClientSession(h, key, maxFrame, requestTimeoutMs, firstStreamId, live);
    session.#creditOnArrival = options.creditOnArrival === true;
    return session;
  }

  get closed(): boolean { return this.#closed; }
  /** True once the server sent GOAWAY, the session retired or close() was called: no new channel or request is accepted here. */
  get draining(): boolean {
    return this.#goAwayStream >= 0 || this.#retiring || this.#ending;
  }
  /** Requests waiting for an answer (sent or queued for a slot). */
  get inflight(): number { return this.#requests.size; }
  /** The latest round-trip time a PING measured on this session, ms (null before the first PONG). */
  get rttMs(): number | null { return this.#liveness.rttMs; }
  get channelCount(): number { return this.#channels.size; }

  /** Opens a channel (a logical connection of `app`) and waits for the server's OK. */
  async openChannel(app: string, requestedHost = "", requestedPort = 0): Promise<ClientChannel> {
    return this.openChannelNow(app, requestedHost, requestedPort).ready; // sent before the first await
  }

  /** Opens a channel without waiting for the server's OK: requests may follow at once (the server reads them after the open); if the server refuses it, `ready` rejects and so does every request made on it. */
  openChannelNow(app: string, requestedHost = "", requestedPort = 0): ClientChannel {
    if (this.#closed || this.draining) throw this.#unusable();
    const id = this.#nextChannel++;
    const payload = encodeChannelOpen({ app, requestedHost, requestedPort });
    let settle!: { resolve(c: ClientChannel): void; reject(e: Error): void };
    const ready = new Promise<ClientChannel>((resolve, reject) => (settle = openDeadline(resolve, reject, this.#requestTimeoutMs, app)));
    ready.catch(() => {}); // a refusal is reported through the requests too
    const ch = new ClientChannel(this, id, ready);
    this.#channels.set(id, ch);
    this.#opening.set(id, settle);
    this.#writer.frame(FrameType.ChannelOpen, id, 0, payload);
    if (this.#nextChannel > MAX_STREAM_ID) this.#retire("channel ids used up");
    return ch;
  }

  /**
   * @internal used by ClientChannel. A body that is a stream source, or bytes
   * larger than the server's frame limit, goes as a streamed body (§4.7).
   * Resolves with the response's bytes, or (`want` "body") its body.
   */
  request(channel: number, payload: BodySource | OutgoingBody, options: RequestOptions = NO_OPTIONS, want: Want = "bytes"): Promise<Buffer | ResponseBody> {
    if (this.#closed || this.draining) return Promise.reject(this.#unusable());
    let sent: Uint8Array | string | OutgoingBody;
    if (payload instanceof OutgoingBody) sent = payload;
    else if (isStreamSource(payload)) sent = new OutgoingBody(payload, 0, true);
    else sent = (typeof payload === "string" ? Buffer.byteLength(payload) : payload.byteLength) > this.serverLimits.maxFrame ? new OutgoingBody(payload, 0, true) : payload;
    if (typeof sent === "object" && !(sent instanceof Uint8Array) && !this.#serverStreams) return gatherSource(sent, this.serverLimits.maxFrame, "the request (this server takes no streamed bodies)").then((whole) => this.request(channel, whole, options, want));
    const stream = this.#nextStream++;
    const maxBytes = options.maxBytes ?? 16 * this.#maxFrame;
    const result = this.#requests.add(channel, stream, sent, options.timeoutMs ?? this.#requestTimeoutMs, options.signal, want, maxBytes);
    this.#liveness.busy();
    if (this.#nextStream > MAX_STREAM_ID) this.#retire("stream ids used up");
    return result;
  }

  /** @internal A promise while the socket holds more unsent output than two of the server's frames, else null. */
  writable(): Promise<void> | null { return (this.#gate ??= new OutputGate(this.#socket, () => this.#writer.pending, 2 * this.serverLimits.maxFrame)).writable(); }
  /** @internal */
  send(channel: number, payload: Uint8Array | string): void {
    if (this.#closed || this.draining) throw this.#unusable();
    const size = typeof payload === "string" ? Buffer.byteLength(payload) : payload.byteLength;
    if (size > this.serverLimits.maxFrame) throw new RangeError(`Cannot send message: ${size} bytes exceed the server's frame limit of ${this.serverLimits.maxFrame}`);
    this.#writer.frame(FrameType.Message, channel, 0, payload);
  }

  /** @internal */
  closeChannel(channel: number): void {
    if (!this.#channels.delete(channel) || this.#closed) return;
    this.#writer.frame(FrameType.ChannelClose, channel, 0);
    // The server cancels what runs on the channel; the callers hear it now.
    this.#requests.failChannel(channel, () => new SessionClosedError("Cannot finish request: its channel was closed"));
  }

  /** Tells the server we are done, waits for pending requests, then closes. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    if (this.#closed) return;
    this.#ending = true;
    this.#writer.frame(FrameType.GoAway, 0, this.#nextStream - 1, Buffer.from([0, 0]));
    this.#writer.flush();
    await this.#requests.whenIdle();
    this.#socket.end();
    if (!this.#closed) await new Promise<void>((r) => this.once("close", () => r()));
  }

  destroy(err?: Error): void {
    if (err) this.#closeError ??= err;
    this.#socket.destroy();
  }

  #unusable(): Error {
    if (this.#closed) return new SessionClosedError("Cannot use session: it is closed", { cause: this.#closeError });
    if (this.#ending && this.#goAwayStream < 0 && !this.#retiring) {
      return new RequestRefusedError("Cannot start request: this session is closing; send it on a new one");
    }
    return this.#retiring && this.#goAwayStream < 0
      ? new RequestRefusedError("Cannot start request: this session has used up its ids and is closing; open a new one")
      : new RequestRefusedError("Cannot start request: the server is draining this session; open a new one");
  }

  /** Ids are about to run out: take nothing new, tell the table's owner to move on, close once answered. */
  #retire(why: string): void {
    if (this.#retiring) return;
    this.#retiring = true;
    this.emit("goaway", this.#nextStream - 1, WireError.None, why);
    void this.close();
  }

  #onData(chunk: Buffer): void {
    this.#lastRead = performance.now();
    this.#writtenAtRead = this.#socket.bytesWritten;
    try {
      openRecords(this.#opener, chunk, this.#decoder, this.#opened); // authentic records before a forged one count, then it ends
    } catch (err) {
      this.destroy(err as Error);
    }
  }

  #sink: FrameSink = {
    onFrame: (type, flags, channel, stream, payload) => {
      switch (type) {
        case FrameType.Response:
          return this.#requests.answer(stream, payload, (flags & FrameFlag.Streamed) !== 0);
        case FrameType.Data:
          return this.#strm().data(stream, flags, payload);
        case FrameType.Window:
          return this.#strm().windowFrame(stream, payload);
        case FrameType.Error:
          return this.#onError(channel, stream, payload);
        case FrameType.Message:
          this.#channels.get(channel)?.emit("message", payload);
          return;
        case FrameType.ChannelOk: {
          const o = this.#opening.get(channel);
          const ch = this.#channels.get(channel);
          this.#opening.delete(channel);
          if (o && ch) o.resolve(ch);
          return;
        }
        case FrameType.Ping:
          this.#writer.frame(FrameType.Pong, 0, stream, payload);
          return;
        case FrameType.Pong:
          return this.#liveness.pong(payload);
        case FrameType.GoAway:
          return this.#onGoAway(stream, payload);
        case FrameType.Addresses: // where else this server listens (§5.4), kept: the first may come with the hello
          return void this.emit("addresses", (this.serverAddresses = decodeAddresses(payload)));
        default:
          throw new ProtocolError(WireError.ProtocolError, `Cannot accept frame type ${type} from a server`);
      }
    },
  };

  #onError(channel: number, stream: number, payload: Buffer): void {
    const { code, reason } = decodeCodedReason(payload);
    const err = errorFromWire(code, reason);
    if (stream !== 0) return this.#requests.fail(stream, err);
    if (channel === 0) return this.destroy(err);
    // The server refused to open the channel: it and the requests already made on it fail.
    const o = this.#opening.get(channel);
    this.#opening.delete(channel);
    o?.reject(err);
    const ch = this.#channels.get(channel);
    if (!ch) return;
    this.#channels.delete(channel);
    ch.failure = err;
    this.#requests.failChannel(channel, () => err);
    ch.emit("close");
  }

  #onGoAway(lastStream: number, payload: Buffer): void {
    const { code, reason } = payload.length >= 2 ? decodeCodedReason(payload) : { code: 0, reason: "" };
    this.#goAwayStream = lastStream;
    // Requests above the mark were never started: refuse them now so callers can resend elsewhere.
    this.#requests.failAbove(lastStream, new RequestRefusedError(`Cannot finish request: the server is draining (${reason || wireErrorName(code)}); send it again on a new session`));
    for (const [, o] of this.#opening) o.reject(new RequestRefusedError("Cannot open channel: the server is draining"));
    this.#opening.clear();
    this.emit("goaway", lastStream, code, reason);
  }

  #strm(): ClientStreams {
    const requests = this.#requests;
    const events = { finished: (s: number) => requests.finish(s), cancel: (s: number, e: Error) => requests.abort(s, e), progress: (s: number) => requests.touch(s) };
    return (this.#streams ??= new ClientStreams(this.#socket, this.#writer, events, this.serverLimits.maxFrame, this.#dataChunk, this.#maxFrame, this.#creditOnArrival));
  }

  #onClose(): void {
    this.#closed = true;
    this.#liveness.stop();
    const goAway = this.#goAwayStream;
    this.#requests.failAll((stream, sent) =>
      !sent
        ? new RequestRefusedError("Cannot send request: the session closed before it was sent; send it again")
        : goAway >= 0 && stream > goAway
          ? new RequestRefusedError("Cannot finish request: the server closed the session before starting it; send it again")
          : new SessionClosedError("Cannot finish request: the session closed while it was in flight", { cause: this.#closeError }),
    );
    this.#streams?.close(); // after the requests: each streamed body got its own request's error first
    for (const [, o] of this.#opening) o.reject(new SessionClosedError("Cannot open channel: the session closed"));
    this.#opening.clear();
    for (const ch of this.#channels.values()) ch.emit("close");
    this.#channels.clear();
    this.emit("close", this.#closeError);
  }
}
