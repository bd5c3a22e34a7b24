import { BodyTooLargeError, ProtocolError } from "../errors.ts";
import type { IncomingBody } from "../protocol/incoming_body.ts";
import { discardSource, gatherSource, isStreamSource, type StreamSource } from "../protocol/outgoing_body.ts";
import { Feature } from "../protocol/sealed_handshake.ts";
import type { Logger } from "../logger.ts";
import { WireError } from "../protocol/constants.ts";
import type { AppResult, SessionApp } from "./app.ts";
import { InflightRequests } from "./inflight_requests.ts";
import type { ServerLimits } from "./limits.ts";
import type { ServerRequest } from "./request_context.ts";
import type { ServerStats } from "./server_stats.ts";
import type { Pairing } from "./pairing.ts";
import { PAIR_APP } from "../protocol/pairing_code.ts";
import { REFUSED_TOO_OFTEN } from "./session_channels.ts";
import type { SessionOutput } from "./session_output.ts";
import type { SessionStreams } from "./session_streams.ts";

/** What the requests of every session need from the server. */
export interface RequestHost {
  readonly app: SessionApp;
  readonly limits: ServerLimits;
  readonly stats: ServerStats;
  readonly log: Logger;
  /** For events a peer can cause at will (throttled). */
  readonly peerLog: Logger;
  /** Answers the reserved app `perilink.pair` (pairing.ts). */
  readonly pairing: Pairing | null;
}

/** What the requests of one session need from it. */
export interface RequestOwner {
  readonly remoteAddress: string;
  /** True once the session closed: nothing more is written. */
  closed(): boolean;
  /** Where answers are written. */
  readonly out: SessionOutput;
  /** An answer went out or a slot came free: look again at reading (flow control). */
  flowUpdate(): void;
  /** A handler that ran on has left the table: flow control and a drain look again. */
  settled(): void;
  /** The session's streamed bodies (made on first use). */
  streams(): SessionStreams;
  /** The request on `stream` is over: its body and response body stop (no-op when it streamed nothing). */
  streamDone(stream: number, why: string): void;
}

/** No handler running yet: shared by every session until its first (never added to). */
const NO_REQUESTS = new InflightRequests(1, () => {});

/** The failure that stands for "its handler ran longer than requestTimeoutMs". */
const TIMED_OUT = Symbol("timed out");

/**
 * The requests of one server session, from the handler's start to the one
 * answer each stream gets (docs/protocol.md §4.2): a response, or an ERROR.
 * Every way a request ends goes through `#answer` (what is written) and, for
 * a handler that ran on, `#settle` (the bookkeeping): it answered, it threw,
 * it was cancelled by the client or its channel closed (answered Cancelled at
 * once, its handler abandoned and counted until it returns), its deadline
 * passed (answered Timeout, its slot freed), or the session closed.
 *
 * A handler that answers at once is not entered in any table: a map insert
 * and delete per request was most of the server's garbage.
 */
export class SessionRequests {
  #owner: RequestOwner;
  #host: RequestHost;
  /** Handlers still running, with their deadlines; the shared empty set until one runs on. */
  #inflight: InflightRequests = NO_REQUESTS;
  /** Requests answered Cancelled whose handlers still run. */
  #abandoned = 0;

  constructor(owner: RequestOwner, host: RequestHost) {
    this.#owner = owner;
    this.#host = host;
  }

  /** Handlers running, answered or not. */
  get running(): number {
    return this.#inflight.size;
  }

  /** Handlers running whose request was already answered (cancelled). */
  get abandoned(): number {
    return this.#abandoned;
  }

  /**
   * Runs the app's handler; the answer goes out now, or when the handler
   * settles, or — a streamed response — when its body has gone out.
   * `body` is the request's streamed body, or null when it came whole.
   */
  run(req: ServerRequest, payload: Buffer, body: IncomingBody | null): void {
    const owner = this.#owner;
    const host = this.#host;
    let result: AppResult | Promise<AppResult>;
    const pairing = req.app === PAIR_APP ? host.pairing : null;
    if (pairing !== null && !pairing.admits(owner.remoteAddress)) {
      throw new ProtocolError(WireError.AccessDenied, REFUSED_TOO_OFTEN);
    }
    try {
      if (body !== null && (pairing !== null || host.app.streams !== true)) {
        // The app takes whole requests: gather the body, within the frame limit it was written for.
        body.onProgress = () => this.#inflight.touch(req);
        result = body.bytes(host.limits.maxFrameBytes, `this request (app "${req.app}" takes whole requests)`).then((whole) =>
          pairing !== null ? pairing.answer(whole, req) : host.app.request(whole, req),
        );
      } else {
        if (body !== null) body.onProgress = () => this.#inflight.touch(req);
        result = pairing !== null ? pairing.answer(payload, req) : host.app.request(payload, req);
      }
    } catch (err) {
      this.#answer(req, undefined, err);
      owner.flowUpdate();
      return;
    }
    if (result === null || typeof result !== "object" || (typeof (result as Promise<AppResult>).then !== "function" && !isStreamSource(result))) {
      this.#answer(req, result as AppResult, undefined);
      owner.flowUpdate(); // only the check that the peer still reads what we write
      return;
    }
    if (this.#inflight === NO_REQUESTS) this.#inflight = this.#newInflight();
    this.#inflight.add(req);
    host.stats.inflight++;
    const max = host.limits.maxInflightPerSession;
    if (this.#inflight.size - this.#abandoned > max || this.#inflight.size > 2 * max) owner.flowUpdate();
    void this.#await(req, result as Promise<AppResult>);
  }

  /** The client cancelled `stream` (CANCEL): answered Cancelled at once if it still runs. */
  cancelStream(stream: number): void {
    const req = this.#inflight.get(stream);
    if (req !== undefined) this.#cancel(req, "cancelled by client");
  }

  /** A channel closed: each of its running requests is answered Cancelled at once. */
  cancelChannel(channel: number): void {
    if (this.#inflight.size === 0) return;
    for (const req of this.#inflight.values()) if (req.channelId === channel) this.#cancel(req, "channel closed");
  }

  /** The session closed: every running handler sees its signal abort; answers go nowhere. */
  close(): void {
    for (const req of this.#inflight.values()) req.abort("session closed");
    this.#host.stats.inflight -= this.#inflight.size;
    this.#inflight.stop();
  }

  /**
   * Answers a running request now with ERROR Cancelled and frees its slot for
   * the client; its handler is aborted and may run on (what it returns is
   * dropped), counted apart so that abandoned handlers stay bounded too.
   */
  #cancel(req: ServerRequest, why: string): void {
    if (req.answered) return;
    req.abort(why);
    req.answered = true;
    this.#abandoned++;
    this.#owner.streamDone(req.stream, why);
    this.#owner.out.error(req.channelId, req.stream, WireError.Cancelled, "request cancelled");
  }

  // Apart from run(), which runs per request: a closure there would cost a context on every call.
  #newInflight(): InflightRequests {
    return new InflightRequests(this.#host.limits.requestTimeoutMs, (r) => this.#expired(r));
  }

  async #await(req: ServerRequest, pending: Promise<AppResult>): Promise<void> {
    let value: AppResult;
    let failure: unknown;
    try {
      value = await pending;
    } catch (err) {
      failure = err ?? new Error("request handler rejected");
    }
    if (failure === undefined && isStreamSource(value)) {
      if (!req.answered && this.#inflight.get(req.stream) === req) {
        // A first-release client reads no DATA: it gets the body gathered into one RESPONSE, within its frame limit.
        if ((this.#owner.out.peerFeatures & Feature.Streams) !== 0) return this.#respondStreamed(req, value);
        try {
          value = await gatherSource(value, this.#owner.out.peerMaxFrame, "the response (this client takes no streamed bodies)");
        } catch (err) {
          failure = err ?? new Error("response body failed");
        }
        if (this.#inflight.take(req)) this.#settle(req, value, failure);
        return;
      }
      discardSource(value); // cancelled, timed out or the session closed before the handler returned it
    }
    if (this.#inflight.take(req)) this.#settle(req, value, failure); // else: its deadline passed, or the session closed
  }

  /**
   * A streamed response: RESPONSE (streamed), then its body as DATA within
   * the client's credit. The request stays in the table, its deadline
   * renewed at each chunk, until the body has gone out (DATA with END) or
   * failed (ERROR ApplicationError after what was sent).
   */
  async #respondStreamed(req: ServerRequest, source: StreamSource): Promise<void> {
    const owner = this.#owner;
    let complete = false;
    let failure: unknown;
    if (!owner.closed()) {
      try {
        complete = await owner.streams().respond(req.channelId, req.stream, source, () => this.#inflight.touch(req));
      } catch (err) {
        failure = err ?? new Error("response body failed");
      }
    }
    if (!this.#inflight.take(req)) return; // its deadline passed (answered Timeout), or the session closed
    this.#host.stats.inflight--;
    if (req.answered) this.#abandoned--;
    else if (!complete) this.#answer(req, undefined, failure ?? new Error("response body stopped"));
    else {
      owner.streamDone(req.stream, "the request was answered");
      this.#host.stats.latency.observe(performance.now() - req.arrivedAt);
    }
    owner.settled();
  }

  /** The handler outlived `requestTimeoutMs` (already out of the table): answer for it, abort its signal. */
  #expired(req: ServerRequest): void {
    const host = this.#host;
    host.stats.requestTimeouts++;
    req.abort("request timed out");
    host.peerLog.info("request_timeout", { peer: this.#owner.remoteAddress, app: req.app, stream: req.stream, ms: host.limits.requestTimeoutMs });
    this.#owner.streamDone(req.stream, "the request timed out");
    this.#settle(req, undefined, TIMED_OUT);
  }

  /** The one way out of the table for a handler that ran on. */
  #settle(req: ServerRequest, value: AppResult, failure: unknown): void {
    this.#host.stats.inflight--;
    if (req.answered) this.#abandoned--;
    else this.#answer(req, value, failure);
    this.#owner.settled();
  }

  /** Writes the request's one answer, unless the session is gone. */
  #answer(req: ServerRequest, value: AppResult, failure: unknown): void {
    const owner = this.#owner;
    if (owner.closed()) return;
    owner.streamDone(req.stream, "the request was answered");
    const stats = this.#host.stats;
    stats.latency.observe(performance.now() - req.arrivedAt);
    if (failure !== undefined || req.dropped) stats.requestErrors++;
    if (failure === TIMED_OUT) {
      const ms = this.#host.limits.requestTimeoutMs;
      owner.out.error(req.channelId, req.stream, WireError.Timeout, `Cannot answer request: its handler ran longer than requestTimeoutMs (${ms} ms)`);
    } else if (req.dropped) {
      // Every stream gets exactly one answer, so the client can count its in-flight slots.
      owner.out.error(req.channelId, req.stream, WireError.Cancelled, "request cancelled");
    } else if (failure instanceof BodyTooLargeError) {
      owner.out.error(req.channelId, req.stream, WireError.FrameTooLarge, failure.message);
    } else if (failure !== undefined) {
      // A handler's error text reaches the client only when the app says it is meant for
      // clients (`expose: true`); otherwise it may hold paths, queries or secrets: logged here.
      if (failure instanceof Error && (failure as { expose?: unknown }).expose === true) {
        this.#host.log.debug("request_failed", { stream: req.stream, app: req.app, message: failure.message });
        owner.out.error(req.channelId, req.stream, WireError.ApplicationError, failure.message);
      } else {
        const stack = failure instanceof Error ? failure.stack : undefined;
        this.#host.peerLog.warn("request_failed", { stream: req.stream, app: req.app, peer: owner.remoteAddress, error: failure, stack });
        owner.out.error(req.channelId, req.stream, WireError.ApplicationError, `the application "${req.app}" could not answer this request (its error is in the server's log)`);
      }
    } else {
      owner.out.response(req.channelId, req.stream, value);
    }
  }
}
