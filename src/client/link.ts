import { EventEmitter } from "node:events";
import { OutcomeUnknownError, RequestRefusedError, SessionClosedError } from "../errors.ts";
import { isStreamSource, OutgoingBody, type BodySource } from "../protocol/outgoing_body.ts";
import type { ClientChannel, ClientSession, RequestOptions } from "./client_session.ts";
import type { ResponseBody, Want } from "./request_table.ts";
import { LinkLifecycle, worthRetrying, type LinkState, type MoveReason } from "./link_lifecycle.ts";
import type { ServerEntry } from "./server_entry.ts";

export type { LinkMove, LinkPlace, LinkState, MoveReason } from "./link_lifecycle.ts";

export interface LinkRequestOptions extends RequestOptions {
  /**
   * Whether the request may safely run twice. If the session fails while it
   * is in flight, an idempotent request is sent again on the new session;
   * another fails with `PERILINK_OUTCOME_UNKNOWN`.
   */
  idempotent?: boolean;
  /**
   * When the server cannot be reached (every address down — a device
   * rebooting for a firmware update), wait for it to come back, up to the
   * request's deadline (`timeoutMs`), instead of failing at once (as grpc-js's
   * waitForReady).
   */
  waitForReady?: boolean;
}

const NO_OPTIONS: LinkRequestOptions = Object.freeze({});

/** How many times one request may move to another session before its error is shown. */
const MAX_MOVES = 8;

/**
 * An application's logical connection to a server (a row of the session
 * table): a channel on the server's shared session. When that session is
 * drained (GOAWAY) or fails, the link moves to the server's next session by
 * itself; requests the server never started are sent again there.
 * Events: `message` (payload) for one-way messages from the server;
 * `statechange` (state, previous) — `connecting`, `ready`, `moving`,
 * `offline`, `closed`; `moved` ({ from, to, reason }) when it rides a new
 * session — `failover`, `line`, `upgrade`, `goaway` — so that an
 * application can subscribe again; `close`.
 */
export class Link extends EventEmitter {
  readonly managementNumber: number;
  readonly app: string;
  readonly requestedHost: string;
  readonly requestedPort: number;
  readonly entry: ServerEntry;
  #channel: ClientChannel | null = null;
  #on: ClientSession | null = null;
  #binding: Promise<ClientChannel> | null = null;
  #closed = false;
  /** The session number of the session `#on`, when the channel was opened there. */
  #onNumber = 0;
  #life: LinkLifecycle = new LinkLifecycle(this, () => this.entry.retryLater(), (reason) => this.entry.stats.moves[reason]++);
  #onMessage = (payload: Buffer): void => void this.emit("message", payload);

  constructor(managementNumber: number, app: string, requestedHost: string, requestedPort: number, entry: ServerEntry) {
    super();
    this.managementNumber = managementNumber;
    this.app = app;
    this.requestedHost = requestedHost;
    this.requestedPort = requestedPort;
    this.entry = entry;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** `connecting`, `ready`, `moving` (to a new session), `offline` (the server unreachable: tried again with backoff), `closed`. */
  get state(): LinkState {
    return this.#life.state;
  }

  /** The session number the link rides now, or null while it moves. */
  get sessionNumber(): number | null {
    const a = this.entry.active;
    return a && a.session === this.#on ? a.number : null;
  }

  /** Opens the link's channel on the server's current session (done by `client.connect`). */
  bind(): Promise<ClientChannel> {
    if (this.#closed) return Promise.reject(new SessionClosedError("Cannot use link: it is closed"));
    const active = this.entry.active;
    if (this.#channel && !this.#channel.failure && active && this.#on === active.session && !active.session.draining && !active.session.closed) {
      return Promise.resolve(this.#channel);
    }
    this.#binding ??= (async () => {
      let live;
      try {
        live = await this.entry.session();
      } catch (err) {
        this.#life.failed(err);
        throw err;
      }
      // No wait for the server's OK: requests follow the open on the same session, in order.
      const ch = live.session.openChannelNow(this.app, this.requestedHost, this.requestedPort);
      if (this.#closed) {
        ch.close(); // closed while it moved: leave no channel behind
        throw new SessionClosedError("Cannot use link: it is closed");
      }
      this.#channel?.off("message", this.#onMessage);
      this.#channel = ch;
      this.#on = live.session;
      this.#onNumber = live.number;
      ch.on("message", this.#onMessage);
      this.#life.bound({ address: live.address.host, port: live.address.port, sessionNumber: live.number });
      return ch;
    })().finally(() => {
      this.#binding = null;
    });
    return this.#binding;
  }

  /** The entry has a session again after the server was unreachable: take it. */
  retryNow(): void {
    if (!this.#closed) this.bind().catch(() => {});
  }

  /**
   * The session the link rode went away (`reason`): with `eager`, moves to
   * the server's next session now; else at the next use (or when its entry
   * reaches the server again). `gone`: it has no session meanwhile (state
   * `moving`); a GOAWAY ServerBusy leaves it `ready` until it next sends.
   */
  rebind(reason: MoveReason = "goaway", eager = true, gone = eager): void {
    if (this.#closed) return;
    const on = this.#on;
    this.#life.lost(reason, on === null ? null : { address: on.remoteAddress, port: on.remotePort, sessionNumber: this.#onNumber }, gone);
    if (!eager) return;
    this.bind().catch(() => {
      // Offline now, tried again by the lifecycle; the next request reports the failure.
    });
  }

  /**
   * Sends a request and resolves with the whole response (at most
   * `maxBytes`). The body may be bytes, text, or a stream source (an async
   * iterable of chunks, a ReadableStream, a Blob), sent as a streamed body.
   */
  request(payload: BodySource, options: LinkRequestOptions = NO_OPTIONS): Promise<Buffer> {
    return this.#call(payload, options, "bytes") as Promise<Buffer>;
  }

  /** Like `request`, but resolves once the response starts, with its body to read as it arrives (docs/client.md, "Streams"). */
  stream(payload: BodySource, options: LinkRequestOptions = NO_OPTIONS): Promise<ResponseBody> {
    return this.#call(payload, options, "body") as Promise<ResponseBody>;
  }

  async #call(payload: BodySource, options: LinkRequestOptions, want: Want): Promise<Buffer | ResponseBody> {
    // A stream source is read once: wrapped here, so a move to another session can send it again from what it kept.
    const body = isStreamSource(payload) ? new OutgoingBody(payload, Infinity) : null;
    const timeoutMs = options.timeoutMs ?? this.entry.requestTimeoutMs;
    const started = performance.now();
    const deadline = timeoutMs > 0 ? started + timeoutMs : Infinity;
    const stats = this.entry.stats;
    stats.requests++;
    let failed = true;
    try {
      for (let moves = 0; ; moves++) {
        let sent = false;
        try {
          const ch = await this.bind();
          sent = true;
          const answer = await (want === "bytes" ? ch.request(body ?? payload, options) : ch.stream(body ?? payload, options));
          failed = false;
          return answer;
        } catch (err) {
          if (this.#closed) throw err;
          if (!sent && options.waitForReady && worthRetrying(err)) {
            await this.#life.whenReady(deadline, err); // the server may come back: wait for it, within the deadline
            if (deadline !== Infinity) options = { ...options, timeoutMs: Math.max(1, Math.ceil(deadline - performance.now())) }; // what is left of it
            moves--;
            continue;
          }
          if (moves >= MAX_MOVES) throw err;
          const again = body === null || body.rewind();
          if (err instanceof RequestRefusedError) {
            if (again) continue; // never started: safe to send again
            throw new RequestRefusedError(`${err.message} (its body was a stream the server had begun to read, so it is not sent again)`);
          }
          if (err instanceof SessionClosedError) {
            if (!sent) continue; // the session closed under the channel open: nothing was sent
            if (options.idempotent && again) continue;
            throw new OutcomeUnknownError(
              options.idempotent
                ? "Cannot finish request: the session failed while it was in flight, and its body was a stream that cannot be sent again"
                : "Cannot finish request: the session failed while it was in flight, so the server may have run it; not sent again, as it is not marked idempotent",
              { cause: err },
            );
          }
          throw err;
        }
      }
    } catch (err) {
      stats.failed(err);
      throw err;
    } finally {
      stats.latency.observe(performance.now() - started);
      // Over: the source is let go of — now, or once a body still sending beside its response ends.
      if (want === "bytes" || failed) body?.dispose();
      else body?.finish();
    }
  }

  /** Sends a one-way message on the link's current session. */
  /** Sends a one-way message; resolves once it is handed to the session, waiting while its socket holds too much unsent output (a server that stopped reading). */
  async send(payload: Uint8Array | string): Promise<void> {
    let ch = await this.bind();
    for (let wait = ch.writable(); wait !== null; wait = ch.writable()) {
      await wait;
      ch = await this.bind(); // a session that closed meanwhile: the link's next one
    }
    ch.send(payload);
  }

  /** C4: closes this application's link; the session stays while other links use it. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#life.close();
    this.#channel?.off("message", this.#onMessage);
    this.#channel?.close();
    this.#channel = null;
    this.entry.removeLink(this);
    this.emit("close");
  }
}
