import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import net from "node:net";
import {
  PerilinkError,
  ProtocolError,
  RemoteError,
  RequestRefusedError,
  ServerBusyError,
  SessionClosedError,
  SignatureError,
  TimeoutError,
} from "../errors.ts";
import { FrameType, NONCE_SIZE, PROTOCOL_VERSION, SERVER_HELLO_SIZE, WireError, wireErrorName } from "../protocol/constants.ts";
import { FrameDecoder, type FrameSink } from "../protocol/frame_decoder.ts";
import { FrameWriter } from "../protocol/frame_writer.ts";
import { decodeServerHello, encodeClientHello, tcpSignedMessage, type ServerHello } from "../protocol/handshake.ts";
import { bytesToUuid, verifySignature } from "../protocol/keys.ts";
import { decodeCodedReason, encodeChannelOpen } from "../protocol/payloads.ts";
import { TARGET } from "../target.ts";

export interface ClientSessionOptions {
  host: string;
  port: number;
  /** Handshake deadline (connect + hello), ms. */
  timeoutMs?: number;
  /** Largest frame payload we accept. */
  maxFrame?: number;
  /** Default per-request deadline, ms; 0 for none. */
  requestTimeoutMs?: number;
  /** Local address to connect from. */
  localAddress?: string;
}

export interface RequestOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

interface Pending {
  resolve(value: Buffer): void;
  reject(err: Error): void;
  channel: number;
  deadline: number;
}

/** The default of `request()`'s options: shared, so a call without options allocates nothing for them. */
const NO_OPTIONS: RequestOptions = Object.freeze({});

/** A request waiting for an in-flight slot (the server's maxInflight). */
interface Queued {
  channel: number;
  stream: number;
  payload: Uint8Array | string;
}

const REMOTE_CODES: Record<number, string> = {
  [WireError.ProtocolError]: "PERILINK_PROTOCOL",
  [WireError.FrameTooLarge]: "PERILINK_FRAME_TOO_LARGE",
  [WireError.UnknownChannel]: "PERILINK_UNKNOWN_CHANNEL",
  [WireError.ApplicationError]: "PERILINK_REMOTE_APP",
  [WireError.Cancelled]: "PERILINK_CANCELLED",
  [WireError.Internal]: "PERILINK_REMOTE_INTERNAL",
  [WireError.Timeout]: "PERILINK_REMOTE_TIMEOUT",
};

/** Maps a wire error code from the server to the error class and `code` a caller sees. */
export function errorFromWire(code: number, reason: string): PerilinkError {
  switch (code) {
    case WireError.RefusedStream:
    case WireError.ShuttingDown:
      return new RequestRefusedError(reason);
    case WireError.LimitExceeded:
    case WireError.ServerBusy:
      return new ServerBusyError(reason);
    default:
      return new RemoteError(REMOTE_CODES[code] ?? "PERILINK_REMOTE_ERROR", code, reason);
  }
}

/**
 * One client TCP session to one server address: the handshake with its
 * signature check, channels, requests and one-way messages. The session
 * table (client/) keeps one of these per server; this class knows nothing of
 * other sessions.
 *
 * Events: `goaway` (lastStream, code, reason), `close` (error | undefined).
 */
export class ClientSession extends EventEmitter {
  readonly serverId: string;
  readonly publicKey: Buffer;
  readonly generation: number;
  readonly serverLimits: { maxFrame: number; maxChannels: number; maxInflight: number; idleTimeoutMs: number };
  readonly remoteAddress: string;
  readonly remotePort: number;

  #socket: net.Socket;
  #writer: FrameWriter;
  #decoder: FrameDecoder;
  #channels = new Map<number, ClientChannel>();
  #opening = new Map<number, { resolve(c: ClientChannel): void; reject(e: Error): void }>();
  #pending = new Map<number, Pending>();
  /** Streams sent and not yet answered: the server answers each exactly once. */
  #sent = 0;
  #queue: Queued[] = [];
  #nextChannel = 1;
  #nextStream = 1;
  #goAwayStream = -1;
  #closed = false;
  #closeError: Error | undefined;
  #requestTimeoutMs: number;
  #sweep: ReturnType<typeof setInterval> | null = null;
  #keepalive: ReturnType<typeof setInterval>;
  #lastRead = Date.now();
  /** Set by close(): called once no request is pending. */
  #onIdle: (() => void) | null = null;

  private constructor(socket: net.Socket, hello: ServerHello, rest: Buffer, maxFrame: number, requestTimeoutMs: number) {
    super();
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
    this.#requestTimeoutMs = requestTimeoutMs;
    this.#writer = new FrameWriter(socket);
    this.#decoder = new FrameDecoder(this.#sink, maxFrame);
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    socket.on("error", (err) => (this.#closeError ??= err));
    socket.on("close", () => this.#onClose());
    socket.on("end", () => socket.end());
    const every = Math.max(100, Math.floor(hello.idleTimeoutMs / 3));
    this.#keepalive = setInterval(() => {
      if (Date.now() - this.#lastRead >= every) this.#writer.frame(FrameType.Ping, 0, 0);
    }, every);
    this.#keepalive.unref?.();
    if (rest.length > 0) this.#onData(rest);
  }

  /** Connects, sends the hello, and verifies the server's signature over our nonce. */
  static connect(options: ClientSessionOptions): Promise<ClientSession> {
    const timeoutMs = options.timeoutMs ?? TARGET.client.probeTimeoutMs * 5;
    const maxFrame = options.maxFrame ?? TARGET.client.maxFrameBytes;
    const nonce = randomBytes(NONCE_SIZE);
    const where = options.host.includes(":") ? `[${options.host}]:${options.port}` : `${options.host}:${options.port}`;
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: options.host, port: options.port, noDelay: true, localAddress: options.localAddress });
      let got: Buffer = Buffer.alloc(0);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        socket.removeAllListeners("data");
        socket.destroy();
        reject(err);
      };
      const timer = setTimeout(
        () => fail(new TimeoutError("PERILINK_HANDSHAKE_TIMEOUT", `Cannot open session to ${where}: no handshake in ${timeoutMs} ms`)),
        timeoutMs,
      );
      socket.once("connect", () => socket.write(encodeClientHello({ version: PROTOCOL_VERSION, maxFrame, nonce })));
      socket.on("error", (err) => fail(new SessionClosedError(`Cannot open session to ${where}: ${err.message}`, { cause: err })));
      socket.once("close", () => fail(new SessionClosedError(`Cannot open session to ${where}: the server closed the connection`)));
      const onData = (chunk: Buffer): void => {
        got = got.length === 0 ? chunk : Buffer.concat([got, chunk]);
        if (got.length < SERVER_HELLO_SIZE) return;
        let hello: ServerHello;
        try {
          hello = decodeServerHello(got);
        } catch (err) {
          fail(err as Error);
          return;
        }
        if (hello.version !== PROTOCOL_VERSION) {
          fail(new ProtocolError(WireError.VersionUnsupported, `Cannot open session to ${where}: the server speaks protocol version ${hello.version}, not ${PROTOCOL_VERSION}`));
          return;
        }
        if (hello.status !== 0) {
          const why = `Cannot open session to ${where}: server refused (${wireErrorName(hello.status)})`;
          fail(hello.status === WireError.ServerBusy ? new ServerBusyError(`${why}; it is at its session limit, try again later`) : new ProtocolError(hello.status, why));
          return;
        }
        if (!verifySignature(tcpSignedMessage(nonce, hello.serverId), hello.signature, hello.publicKey)) {
          fail(new SignatureError(`Cannot open session to ${where}: the server's signature over our nonce does not verify`));
          return;
        }
        clearTimeout(timer);
        socket.off("data", onData);
        socket.removeAllListeners("error");
        socket.removeAllListeners("close");
        const rest = got.subarray(SERVER_HELLO_SIZE);
        resolve(new ClientSession(socket, hello, Buffer.from(rest), maxFrame, options.requestTimeoutMs ?? TARGET.client.requestTimeoutMs));
      };
      socket.on("data", onData);
    });
  }

  get closed(): boolean {
    return this.#closed;
  }
  /** True once the server sent GOAWAY: no new channel or request is accepted here. */
  get draining(): boolean {
    return this.#goAwayStream >= 0;
  }
  get inflight(): number {
    return this.#pending.size;
  }
  get channelCount(): number {
    return this.#channels.size;
  }

  /** Opens a channel (a logical connection of `app`) and waits for the server's OK. */
  openChannel(app: string, requestedHost = "", requestedPort = 0): Promise<ClientChannel> {
    try {
      return this.openChannelNow(app, requestedHost, requestedPort).ready;
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Opens a channel without waiting for the server's OK: requests may follow
   * at once, since the server reads them after the open. If the server refuses
   * the channel, `ready` rejects and so does every request made on it.
   */
  openChannelNow(app: string, requestedHost = "", requestedPort = 0): ClientChannel {
    if (this.#closed || this.draining) throw this.#unusable();
    const id = this.#nextChannel++;
    const payload = encodeChannelOpen({ app, requestedHost, requestedPort });
    let settle!: { resolve(c: ClientChannel): void; reject(e: Error): void };
    const ready = new Promise<ClientChannel>((resolve, reject) => (settle = { resolve, reject }));
    ready.catch(() => {}); // a refusal is reported through the requests too
    const ch = new ClientChannel(this, id, ready);
    this.#channels.set(id, ch);
    this.#opening.set(id, settle);
    this.#writer.frame(FrameType.ChannelOpen, id, 0, payload);
    return ch;
  }

  /** @internal used by ClientChannel */
  request(channel: number, payload: Uint8Array | string, options: RequestOptions = NO_OPTIONS): Promise<Buffer> {
    if (this.#closed || this.draining) return Promise.reject(this.#unusable());
    const size = typeof payload === "string" ? Buffer.byteLength(payload) : payload.byteLength;
    if (size > this.serverLimits.maxFrame) {
      return Promise.reject(new RangeError(`Cannot send request: ${size} bytes exceed the server's frame limit of ${this.serverLimits.maxFrame}`));
    }
    const stream = this.#nextStream++;
    const timeoutMs = options.timeoutMs ?? this.#requestTimeoutMs;
    return new Promise<Buffer>((resolve, reject) => {
      const p: Pending = { resolve, reject, channel, deadline: timeoutMs > 0 ? Date.now() + timeoutMs : Infinity };
      this.#pending.set(stream, p);
      if (timeoutMs > 0 && this.#sweep === null) this.#startSweep();
      const signal = options.signal;
      if (signal) {
        if (signal.aborted) {
          this.#pending.delete(stream);
          reject(signal.reason instanceof Error ? signal.reason : new Error("aborted"));
          return;
        }
        const onAbort = (): void => {
            if (this.#pending.delete(stream)) {
              if (!this.#queue.some((q) => q.stream === stream)) this.#writer.frame(FrameType.Cancel, channel, stream);
              reject(signal.reason instanceof Error ? signal.reason : new Error("aborted"));
              if (this.#onIdle !== null && this.#pending.size === 0) this.#onIdle();
            }
        };
        signal.addEventListener("abort", onAbort, { once: true });
        // Settled either way: a shared signal must not collect a listener per request.
        const wrapped = p as Pending;
        const { resolve: res0, reject: rej0 } = wrapped;
        wrapped.resolve = (v) => {
          signal.removeEventListener("abort", onAbort);
          res0(v);
        };
        wrapped.reject = (e) => {
          signal.removeEventListener("abort", onAbort);
          rej0(e);
        };
      }
      if (this.#sent < this.serverLimits.maxInflight) {
        this.#sent++;
        this.#writer.frame(FrameType.Request, channel, stream, payload);
      } else {
        this.#queue.push({ channel, stream, payload });
      }
    });
  }

  /** One answer arrived: its slot is free; send queued requests that still want an answer. */
  #answered(): void {
    if (this.#sent > 0) this.#sent--;
    const q = this.#queue;
    while (q.length > 0 && this.#sent < this.serverLimits.maxInflight && !this.draining && !this.#closed) {
      const next = q.shift()!;
      if (!this.#pending.has(next.stream)) continue; // cancelled or timed out while queued
      this.#sent++;
      this.#writer.frame(FrameType.Request, next.channel, next.stream, next.payload);
    }
  }

  /** @internal */
  send(channel: number, payload: Uint8Array | string): void {
    if (this.#closed || this.draining) throw this.#unusable();
    const size = typeof payload === "string" ? Buffer.byteLength(payload) : payload.byteLength;
    if (size > this.serverLimits.maxFrame) {
      throw new RangeError(`Cannot send message: ${size} bytes exceed the server's frame limit of ${this.serverLimits.maxFrame}`);
    }
    this.#writer.frame(FrameType.Message, channel, 0, payload);
  }

  /** @internal */
  closeChannel(channel: number): void {
    if (!this.#channels.delete(channel) || this.#closed) return;
    this.#writer.frame(FrameType.ChannelClose, channel, 0);
    // The server cancels what runs on the channel; the callers hear it now.
    for (const [stream, p] of this.#pending) {
      if (p.channel !== channel) continue;
      this.#pending.delete(stream);
      p.reject(new SessionClosedError("Cannot finish request: its channel was closed"));
    }
    if (this.#onIdle !== null && this.#pending.size === 0) this.#onIdle();
  }

  /** Tells the server we are done, waits for in-flight requests, then closes. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#writer.frame(FrameType.GoAway, 0, this.#nextStream - 1, Buffer.from([0, 0]));
    this.#writer.flush();
    if (this.#pending.size > 0) await new Promise<void>((r) => (this.#onIdle = r));
    this.#socket.end();
    if (!this.#closed) await new Promise<void>((r) => this.once("close", () => r()));
  }

  destroy(err?: Error): void {
    if (err) this.#closeError ??= err;
    this.#socket.destroy();
  }

  #unusable(): Error {
    return this.draining && !this.#closed
      ? new RequestRefusedError("Cannot start request: the server is draining this session; open a new one")
      : new SessionClosedError("Cannot use session: it is closed", { cause: this.#closeError });
  }

  #onData(chunk: Buffer): void {
    this.#lastRead = Date.now();
    try {
      this.#decoder.push(chunk);
    } catch (err) {
      this.destroy(err as Error);
    }
  }

  #sink: FrameSink = {
    onFrame: (type, _flags, channel, stream, payload) => {
      switch (type) {
        case FrameType.Response: {
          this.#answered();
          const p = this.#pending.get(stream);
          if (p) {
            this.#pending.delete(stream);
            p.resolve(payload);
            if (this.#onIdle !== null && this.#pending.size === 0) this.#onIdle();
          }
          return;
        }
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
          return;
        case FrameType.GoAway:
          return this.#onGoAway(stream, payload);
        default:
          throw new ProtocolError(WireError.ProtocolError, `Cannot accept frame type ${type} from a server`);
      }
    },
  };

  #onError(channel: number, stream: number, payload: Buffer): void {
    const { code, reason } = decodeCodedReason(payload);
    const err = errorFromWire(code, reason);
    if (stream !== 0) {
      this.#answered();
      const p = this.#pending.get(stream);
      if (p) {
        this.#pending.delete(stream);
        p.reject(err);
        if (this.#onIdle !== null && this.#pending.size === 0) this.#onIdle();
      }
      return;
    }
    if (channel !== 0) {
      // The server refused to open the channel: it and the requests already made on it fail.
      const o = this.#opening.get(channel);
      this.#opening.delete(channel);
      o?.reject(err);
      const ch = this.#channels.get(channel);
      if (ch) {
        this.#channels.delete(channel);
        ch.failure = err;
        for (const [stream, p] of this.#pending) {
          if (p.channel !== channel) continue;
          this.#pending.delete(stream);
          p.reject(err);
        }
        if (this.#onIdle !== null && this.#pending.size === 0) this.#onIdle();
        ch.emit("close");
      }
      return;
    }
    this.destroy(err);
  }

  #onGoAway(lastStream: number, payload: Buffer): void {
    const { code, reason } = payload.length >= 2 ? decodeCodedReason(payload) : { code: 0, reason: "" };
    this.#goAwayStream = lastStream;
    // Requests above the mark were never started: refuse them now so callers can resend elsewhere.
    for (const [stream, p] of this.#pending) {
      if (stream > lastStream) {
        this.#pending.delete(stream);
        p.reject(new RequestRefusedError(`Cannot finish request: the server is draining (${reason || wireErrorName(code)}); send it again on a new session`));
      }
    }
    for (const [, o] of this.#opening) o.reject(new RequestRefusedError("Cannot open channel: the server is draining"));
    this.#opening.clear();
    this.emit("goaway", lastStream, code, reason);
  }

  #startSweep(): void {
    this.#sweep = setInterval(() => {
      if (this.#pending.size === 0) {
        clearInterval(this.#sweep!);
        this.#sweep = null;
        return;
      }
      const now = Date.now();
      for (const [stream, p] of this.#pending) {
        if (p.deadline <= now) {
          this.#pending.delete(stream);
          if (!this.#queue.some((q) => q.stream === stream)) this.#writer.frame(FrameType.Cancel, p.channel, stream);
          p.reject(new TimeoutError("PERILINK_REQUEST_TIMEOUT", "Cannot finish request: no response before its deadline"));
        }
      }
      if (this.#onIdle !== null && this.#pending.size === 0) this.#onIdle();
    }, 100);
    this.#sweep.unref?.();
  }

  #onClose(): void {
    this.#closed = true;
    clearInterval(this.#keepalive);
    if (this.#sweep) clearInterval(this.#sweep);
    const goAway = this.#goAwayStream;
    const unsent = new Set(this.#queue.map((q) => q.stream));
    this.#queue = [];
    for (const [stream, p] of this.#pending) {
      p.reject(
        unsent.has(stream)
          ? new RequestRefusedError("Cannot send request: the session closed before it was sent; send it again")
          : goAway >= 0 && stream > goAway
            ? new RequestRefusedError("Cannot finish request: the server closed the session before starting it; send it again")
            : new SessionClosedError("Cannot finish request: the session closed while it was in flight", { cause: this.#closeError }),
      );
    }
    this.#pending.clear();
    this.#onIdle?.();
    for (const [, o] of this.#opening) o.reject(new SessionClosedError("Cannot open channel: the session closed"));
    this.#opening.clear();
    for (const ch of this.#channels.values()) ch.emit("close");
    this.#channels.clear();
    this.emit("close", this.#closeError);
  }
}

/** One logical connection of one application over a session. Emits `message` and `close`. */
export class ClientChannel extends EventEmitter {
  readonly id: number;
  /** Resolves when the server accepted the channel; rejects with its refusal. */
  readonly ready: Promise<ClientChannel>;
  /** Set when the server refused the channel. */
  failure: Error | null = null;
  #session: ClientSession;

  constructor(session: ClientSession, id: number, ready: Promise<ClientChannel>) {
    super();
    this.#session = session;
    this.id = id;
    this.ready = ready;
  }

  request(payload: Uint8Array | string, options?: RequestOptions): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    return this.#session.request(this.id, payload, options);
  }

  send(payload: Uint8Array | string): void {
    this.#session.send(this.id, payload);
  }

  close(): void {
    this.#session.closeChannel(this.id);
  }
}
