import { EventEmitter } from "node:events";
import { AgentError, BodyTooLargeError, CancelledError, ClientClosedError, OutcomeUnknownError } from "../errors.ts";
import { TARGET } from "../target.ts";
import { gatherSource, isStreamSource, OutgoingBody, type BodySource } from "../protocol/outgoing_body.ts";
import type { LinkApi } from "../client/link_api.ts";
import type { LinkRequestOptions } from "../client/link.ts";
import type { LinkState } from "../client/link_lifecycle.ts";
import type { ResponseBody } from "../client/request_table.ts";
import type { AgentConnection, LinkEvents } from "./agent_connection.ts";
import type { Header } from "./agent_wire.ts";

/** Where a link through the agent opens its session again once the agent it used is gone (host_client.ts). */
export interface AgentLinkHost {
  agent(): Promise<AgentConnection>;
}

/** The largest body a request through the agent carries (streams are gathered to it in this process). */
const MAX_BODY = 16 * TARGET.client.maxFrameBytes;

const NO_OPTIONS: LinkRequestOptions = Object.freeze({});

/**
 * A link whose session is the host agent's (C11): the same requests,
 * messages and events as an in-process link (link.ts), its session shared
 * with every other process of this user that talks to the same server.
 * If the agent goes away (restarted, upgraded), the link opens again through
 * the next one at its next use; a request that was in flight then fails
 * `PERILINK_OUTCOME_UNKNOWN`, or is sent again if it is idempotent.
 */
export class AgentLink extends EventEmitter implements LinkApi {
  readonly app: string;
  readonly requestedHost: string;
  readonly requestedPort: number;
  managementNumber = 0;
  serverId = "";
  #state: LinkState = "connecting";
  #sessionNumber: number | null = null;
  #conn: AgentConnection | null = null;
  #id = 0;
  #host: AgentLinkHost;
  #connect: Record<string, unknown>;
  #opening: Promise<void> | null = null;
  /** An ahead open's answer still to come (openAhead), and why it failed once it did: every later use fails so. */
  #confirmed: Promise<void> | null = null;
  #failure: Error | null = null;
  #closed = false;
  /** Requests in flight on the current connection; and the link on an agent that was replaced, until its requests end. */
  #pending = 0;
  #old: { conn: AgentConnection; id: number; pending: number } | null = null;
  #place: unknown = null;
  /** Where it was when its agent was replaced, for the `moved` event once it is open again. */
  #movedFrom: unknown = null;
  #movedWhy: "upgrade" | "failover" = "upgrade";

  constructor(host: AgentLinkHost, options: { host: string; port: number; app: string; trustNew?: boolean; expectKey?: string }) {
    super();
    this.#host = host;
    this.app = options.app;
    this.requestedHost = options.host;
    this.requestedPort = options.port;
    this.#connect = { t: "connect", host: options.host, port: options.port, app: options.app, trustNew: options.trustNew === true, ...(options.expectKey ? { expectKey: options.expectKey } : {}) };
  }

  get state(): LinkState {
    return this.#state;
  }

  get sessionNumber(): number | null {
    return this.#sessionNumber;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** An ahead open's answer still to come (host_client.ts counts links closed before it: the agent still does). */
  get answering(): Promise<void> | null {
    return this.#confirmed;
  }

  /** Opens the link through the agent (again, after the agent it used went away). */
  open(): Promise<void> {
    this.#opening ??= this.#open().finally(() => (this.#opening = null));
    return this.#opening;
  }

  async #open(): Promise<void> {
    for (let tries = 0; ; tries++) {
      try {
        return await this.#openOn(await this.#host.agent());
      } catch (err) {
        if (!unsent(err) || tries >= 2 || this.#closed) throw err; // else the connect went to an agent that had left: to the next one
      }
    }
  }

  async #openOn(conn: AgentConnection): Promise<void> {
    const [id, events] = this.#attach(conn);
    try {
      const { header } = await conn.call({ ...this.#connect, t: "connect", linkId: id });
      if (this.#closed) {
        // Closed while it opened: the agent lets go of it too.
        conn.notify({ t: "close", link: id });
        conn.removeLink(id);
        return;
      }
      this.#conn = conn;
      this.#id = id;
      this.#opened(header);
      // A GOAWAY that came while it opened: it moves on to the new agent now.
      if (conn.draining) events.goAway();
    } catch (err) {
      conn.removeLink(id);
      throw err;
    }
  }

  /**
   * Opens the link on `conn` without waiting for the agent's answer: what
   * the application sends meanwhile goes right behind the connect, and the
   * agent holds it until the link is open (host_client.ts does this for a
   * server this process reached through the same agent already). The state
   * stays `connecting` until the answer. If the connect fails, the link
   * closes, and its first request or message fails with the connect's error.
   * Resolves or rejects with the answer (already handled: nothing need wait).
   */
  openAhead(conn: AgentConnection): Promise<void> {
    const [id] = this.#attach(conn);
    this.#conn = conn;
    this.#id = id;
    const answered = conn.call({ ...this.#connect, t: "connect", linkId: id }).then(
      ({ header }) => {
        if (this.#conn === conn && this.#id === id) this.#opened(header);
      },
      (err: unknown) => {
        // The agent went away or was replaced meanwhile (goAway, lost), or the link was closed: the answer is stale.
        if (this.#conn !== conn || this.#id !== id || this.#closed) return;
        this.#failure = err instanceof Error ? err : new AgentError(String(err));
        conn.removeLink(id); // the agent holds nothing for it
        this.#conn = null;
        this.close();
        throw this.#failure;
      },
    );
    this.#confirmed = answered;
    answered.then(
      () => {
        if (this.#confirmed === answered) this.#confirmed = null;
      },
      () => {}, // handled: the failure is kept in #failure
    );
    return answered;
  }

  /** Listens on `conn` for the link's events under a new number. */
  #attach(conn: AgentConnection): [number, LinkEvents] {
    const id = conn.linkId();
    const events: LinkEvents = {
      message: (p) => this.emit("message", p),
      state: (s) => this.#set(s as LinkState),
      moved: (m) => this.emit("moved", m),
      goAway: () => {
        if (this.#conn !== conn || this.#closed) return;
        this.#old = { conn, id, pending: this.#pending };
        this.#movedFrom = this.#place;
        this.#movedWhy = "upgrade";
        this.#pending = 0;
        this.#conn = null;
        this.#set("moving");
        if (this.#old.pending === 0) this.#closeOld();
        this.open().catch(() => {}); // at once, so that its messages and `moved` do not wait for a request
      },
      lost: () => {
        if (this.#conn !== conn) return;
        this.#conn = null;
        this.#pending = 0; // what was in flight there has failed with it: the next agent's count starts afresh
        if (this.#closed) return;
        this.#movedFrom = this.#place;
        this.#movedWhy = "failover";
        this.#set("moving");
        // At once, as a link of this process's own table does: one that only listens gets its messages again.
        this.open().catch(() => this.#set("offline"));
      },
    };
    conn.addLink(id, events);
    return [id, events];
  }

  /** The agent's answer to a connect: where the link is, and its state. */
  #opened(header: Header): void {
    const from = this.#movedFrom;
    this.#movedFrom = null;
    this.#place = header.place ?? null;
    if (from !== null && this.#place !== null) this.emit("moved", { from, to: this.#place, reason: this.#movedWhy });
    this.managementNumber = typeof header.managementNumber === "number" ? header.managementNumber : 0;
    this.serverId = typeof header.serverId === "string" ? header.serverId : "";
    this.#sessionNumber = typeof header.sessionNumber === "number" ? header.sessionNumber : null;
    this.#set(typeof header.state === "string" ? (header.state as LinkState) : "ready");
  }

  #set(state: LinkState): void {
    if (state === this.#state || this.#closed) return;
    const prev = this.#state;
    this.#state = state;
    this.emit("statechange", state, prev);
  }

  /** The connection to use; `confirmed`: only once the agent has answered an ahead open (a stream's body cannot wait there). */
  async #ready(confirmed = false): Promise<AgentConnection> {
    // Checked again after each wait: the link may have closed, or its ahead open failed, meanwhile.
    for (;;) {
      if (this.#failure !== null) throw this.#failure;
      if (this.#closed) throw new ClientClosedError("Cannot use the link: it is closed");
      if (confirmed && this.#confirmed !== null) await this.#confirmed.catch(() => {});
      else if (this.#conn === null || this.#conn.closed) await this.open();
      else return this.#conn;
    }
  }

  async request(payload: BodySource, options: LinkRequestOptions = NO_OPTIONS): Promise<Buffer> {
    if (isStreamSource(payload) && !(payload instanceof Blob && payload.size <= MAX_BODY)) {
      // Streamed to the agent when it takes streams (any size), else gathered here.
      const conn = await this.#ready();
      if (conn.streams) return (await this.stream(payload, options)).bytes(options.maxBytes ?? MAX_BODY, "the response");
    }
    const body = isStreamSource(payload) ? await gatherSource(payload, MAX_BODY, "a request body sent through the host agent") : typeof payload === "string" ? Buffer.from(payload) : payload;
    if (body.byteLength > MAX_BODY) throw new BodyTooLargeError(MAX_BODY, "a request body sent through the host agent");
    for (let tries = 0; ; tries++) {
      // Always after an await, as in this process's own table (link.ts): a request followed at once by close() is not sent.
      const conn = await this.#ready();
      const header = this.#header("request", options);
      const signal = options.signal;
      let onAbort: (() => void) | null = null;
      if (signal) {
        const id = conn.peekId();
        onAbort = (): void => conn.notify({ t: "cancel", id });
        signal.addEventListener("abort", onAbort, { once: true });
      }
      this.#pending++;
      try {
        const { payload: answer } = await conn.call(header, body);
        return answer;
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (this.#failure !== null) throw this.#failure; // sent behind an ahead open that failed
        this.#retryOrThrow(err, conn, options, tries, false);
      } finally {
        if (onAbort) signal!.removeEventListener("abort", onAbort);
        this.#settled(conn);
      }
    }
  }

  /**
   * A request whose response is read as it arrives, as link.stream() in
   * this process. Bytes, text and a Blob of up to MAX_BODY go whole, so the
   * agent may send an idempotent one again; other bodies stream to the
   * agent within its credit, and the response streams back within ours.
   */
  async stream(payload: BodySource, options: LinkRequestOptions = NO_OPTIONS): Promise<ResponseBody> {
    let body: Uint8Array | OutgoingBody;
    if (typeof payload === "string") body = Buffer.from(payload);
    else if (payload instanceof Uint8Array) body = payload;
    else if (payload instanceof Blob && payload.size <= MAX_BODY) body = new Uint8Array(await payload.arrayBuffer());
    else body = new OutgoingBody(payload, 0, true);
    if (body instanceof Uint8Array && body.byteLength > MAX_BODY) body = new OutgoingBody(body, 0, true);
    for (let tries = 0; ; tries++) {
      let conn: AgentConnection;
      let header: Header;
      try {
        conn = await this.#ready(true);
        header = this.#header("stream", options);
      } catch (err) {
        if (body instanceof OutgoingBody) body.dispose(); // the source is let go of (its finally runs), as when sent
        throw err;
      }
      const signal = options.signal;
      const id = conn.peekId();
      // Until the exchange is over, not only until the response began: an abort stops a body under way too.
      const onAbort = signal ? (): void => conn.cancelStream(id, signal.reason instanceof Error ? signal.reason : new CancelledError("Request cancelled: its signal was aborted")) : null;
      if (onAbort) signal!.addEventListener("abort", onAbort, { once: true });
      this.#pending++;
      let over = false;
      const done = (): void => {
        if (over) return;
        over = true;
        if (onAbort) signal!.removeEventListener("abort", onAbort);
        this.#settled(conn);
      };
      try {
        return await conn.stream(header, body, done);
      } catch (err) {
        done();
        if (signal?.aborted) throw signal.reason;
        this.#retryOrThrow(err, conn, options, tries, body instanceof OutgoingBody);
      }
    }
  }

  /** A request's header: its kind, link and the options that cross to the agent. */
  #header(t: string, options: LinkRequestOptions): Header {
    const header: Header = { t, link: this.#id };
    if (options.timeoutMs !== undefined) header.timeoutMs = options.timeoutMs;
    if (options.maxBytes !== undefined) header.maxBytes = options.maxBytes;
    if (options.idempotent) header.idempotent = true;
    if (options.waitForReady) header.waitForReady = true;
    if (options.signal) {
      options.signal.throwIfAborted();
      header.cancellable = true;
    }
    return header;
  }

  /** After a failed try: returns to try again (the agent went away, the request is idempotent and its body whole), else throws. */
  #retryOrThrow(err: unknown, conn: AgentConnection, options: LinkRequestOptions, tries: number, streamed: boolean): void {
    if (!(err instanceof AgentError) || !conn.closed) throw err;
    // The agent handed over before it read the request: it did not run, and goes to the next agent (a body that streamed cannot).
    if (err.unsent) {
      if (tries < 2 && !streamed) return;
      throw err;
    }
    // The agent went away with the request in flight: it may have run.
    if (!options.idempotent || tries >= 2 || streamed) {
      const why = !options.idempotent ? "; not sent again, as it is not marked idempotent" : streamed ? "; not sent again, as its body was a stream" : "";
      throw new OutcomeUnknownError(`Cannot finish request: the host agent went away while it was in flight, so the server may have run it${why}`, { cause: err });
    }
  }

  /** A request on `conn` ended: on a replaced agent, the last one lets the link there go. */
  #settled(conn: AgentConnection): void {
    const old = this.#old;
    if (old !== null && old.conn === conn) {
      if (--old.pending <= 0) this.#closeOld();
    } else if (conn === this.#conn) this.#pending--;
  }

  #closeOld(): void {
    const old = this.#old;
    if (old === null) return;
    this.#old = null;
    old.conn.notify({ t: "close", link: old.id });
    old.conn.removeLink(old.id);
  }

  async send(payload: Uint8Array | string): Promise<void> {
    const body = typeof payload === "string" ? Buffer.from(payload) : payload;
    if (body.byteLength > MAX_BODY) throw new BodyTooLargeError(MAX_BODY, "a message sent through the host agent");
    for (let tries = 0; ; tries++) {
      const conn = await this.#ready();
      this.#pending++; // counted as requests are: a GOAWAY lets go of the link there once it was sent
      try {
        await conn.call({ t: "send", link: this.#id }, body);
        return;
      } catch (err) {
        if (this.#failure !== null) throw this.#failure; // sent behind an ahead open that failed
        if (!unsent(err) || tries >= 2) throw err; // else to the next agent: the one that had left did not read it
      } finally {
        this.#settled(conn);
      }
    }
  }

  close(): void {
    if (this.#closed) return;
    const conn = this.#conn;
    if (conn && !conn.closed) {
      conn.notify({ t: "close", link: this.#id });
      conn.removeLink(this.#id);
    }
    this.#closeOld();
    this.#set("closed");
    this.#closed = true;
    this.#conn = null;
    this.emit("close");
  }
}

/** The agent let its connection go before it read what was sent (AgentError.unsent). */
function unsent(err: unknown): boolean {
  return err instanceof AgentError && err.unsent;
}
