import type net from "node:net";
import { AgentLimitError, CancelledError, PerilinkError, ProtocolError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { PerilinkClient } from "../client/client.ts";
import type { Link, LinkMove, LinkState } from "../client/link.ts";
import type { Target } from "../target.ts";
import { wireError } from "./agent_errors.ts";
import { CONNECTION_WINDOW, FrameReader, idOf, requestOptions, STREAM_WINDOW, WIRE_VERSION, windowOf, writeFrame, type Header } from "./agent_wire.ts";
import { LinkOpening, ownBytes } from "./link_opening.ts";
import { PeerStreams } from "./peer_streams.ts";
import { commandOf } from "./agent_socket.ts";
import type { SlotShare } from "./slot_share.ts";

export type AgentLimits = Target["agent"];

/**
 * One application process connected to the agent: its links (named by the
 * numbers it chose), its requests in flight, and the answers it has not
 * read yet. Its limits hold whatever it sends: past its links or requests
 * in flight, it is answered `PERILINK_AGENT_LIMIT`; while its unread answers
 * are over `maxUnreadBytesPerProcess` the agent reads nothing more from it,
 * and at four times that it is cut off. When its connection closes (it
 * exited, or was killed) its links close at once.
 */
export class AgentPeer {
  readonly socket: net.Socket;
  pid = 0;
  command = "";
  readonly links = new Map<number, Link | LinkOpening>();
  #inflight = 0;
  #closingOpens = 0; // links in `links` the process closed while they opened (LinkOpening.closing)
  /** Bytes of one-way messages waiting for their session's socket to take them. */
  #sendBytes = 0;
  /** Requests the application may cancel (it said so), by id. */
  #aborts = new Map<number, AbortController>();
  #client: PerilinkClient;
  #limits: AgentLimits;
  #log: Logger;
  #reader: FrameReader;
  #paused = false;
  #closed = false;
  #onClose: (peer: AgentPeer) => void;
  #sessions: () => unknown;
  #metrics: () => string;
  #share: SlotShare;
  #upgrade: () => Promise<number>;
  /** Told to move to a new agent (GOAWAY): it ends once its links are gone and nothing is in flight. */
  #leaving = false;
  #helloed = false;
  #maxPayload: number;
  #deadline: ReturnType<typeof setTimeout> | null = null;
  /** The process offered WIRE_VERSION in its hello: answers and messages go with compact headers. */
  #compact = false;
  /** Its streamed bodies, once its hello offered credit for them. */
  #streams: PeerStreams | null = null;
  #corked = false;
  #uncork = (): void => {
    this.#corked = false;
    this.socket.uncork();
  };

  constructor(socket: net.Socket, client: PerilinkClient, limits: AgentLimits, maxPayload: number, log: Logger, hooks: { closed: (peer: AgentPeer) => void; sessions: () => unknown; metrics: () => string; upgrade: () => Promise<number>; share: SlotShare }) {
    this.socket = socket;
    this.#client = client;
    this.#limits = limits;
    this.#log = log;
    this.#onClose = hooks.closed;
    this.#sessions = hooks.sessions;
    this.#upgrade = hooks.upgrade;
    this.#metrics = hooks.metrics;
    this.#share = hooks.share;
    this.#maxPayload = maxPayload;
    this.#reader = new FrameReader(maxPayload, (h, p) => this.#onFrame(h, p));
    // It says hello at once, and a frame it begins is whole within FRAME_MS: a process holds a slot only while it talks.
    this.#deadline = setTimeout(() => this.#timedOut("it said no hello"), HELLO_MS);
    socket.on("data", (chunk: Buffer) => {
      try {
        this.#reader.push(chunk);
      } catch (err) {
        this.#log.warn("agent_peer_protocol_error", { pid: this.pid, error: err });
        socket.destroy();
        return;
      }
      if (this.#reader.buffered === 0) {
        if (this.#helloed && this.#deadline) {
          clearTimeout(this.#deadline);
          this.#deadline = null;
        }
      } else if (this.#deadline === null) this.#deadline = setTimeout(() => this.#timedOut("a frame it began stayed unfinished"), FRAME_MS);
    });
    socket.on("drain", () => this.#resume());
    socket.on("error", () => {});
    socket.once("close", () => this.#close());
  }

  get inflight(): number {
    return this.#inflight;
  }

  #timedOut(why: string): void {
    this.#log.warn("agent_peer_timed_out", { pid: this.pid, why });
    this.socket.destroy();
  }

  /** A new agent serves now: the process opens its links there; this connection ends once it left. */
  goAway(): void {
    this.#leaving = true;
    this.#send({ t: "goaway" });
    this.#endIfLeft();
  }

  #endIfLeft(): void {
    if (!this.#leaving || this.links.size > 0 || this.#inflight > 0 || this.socket.writableEnded) return;
    this.#send({ t: "bye" }); // all it read is answered; what it sends from now on is not read (#onFrame): the next agent may have it
    this.socket.end();
  }

  #send(header: Header, payload?: Uint8Array): void {
    if (this.#closed || this.socket.destroyed || this.socket.writableEnded) return;
    const s = this.socket;
    // Frames of one turn of the event loop go out in one system call (corked until the next tick).
    if (!this.#corked) {
      this.#corked = true;
      s.cork();
      process.nextTick(this.#uncork);
    }
    writeFrame(s, header, payload, this.#compact);
    const unread = s.writableLength;
    // Cut off past four times the bound and one whole answer: answers in flight when it paused still go out.
    if (unread > 4 * this.#limits.maxUnreadBytesPerProcess + this.#maxPayload) {
      this.#log.warn("agent_peer_cut_off", { pid: this.pid, unreadBytes: unread, why: "it does not read what the agent sends" });
      s.destroy();
    } else if (unread > this.#limits.maxUnreadBytesPerProcess && !this.#paused) {
      this.#paused = true;
      s.pause(); // nothing more is read from it until it reads its answers
      this.#log.info("agent_peer_held", { pid: this.pid, unreadBytes: unread });
    }
  }

  #resume(): void {
    if (this.#paused && this.socket.writableLength <= this.#limits.maxUnreadBytesPerProcess) {
      this.#paused = false;
      this.socket.resume();
    }
  }

  #onFrame(h: Header, payload: Buffer): void {
    if (this.#closed || this.socket.destroyed || this.socket.writableEnded) return; // the rest of a read after a cut-off, or after its bye
    switch (h.t) {
      case "hello":
        this.#helloed = true;
        this.pid = idOf(h.pid) ?? 0;
        if (this.#deadline !== null && this.#reader.buffered === 0) {
          clearTimeout(this.#deadline);
          this.#deadline = null;
        }
        this.command = this.pid > 0 ? commandOf(this.pid) : "";
        this.#compact = h.wire === WIRE_VERSION;
        const granted = windowOf(h.window);
        // Responses wait while more than half its unread bound waits for it to read. The answer's `ahead`: requests and
        // messages may follow a connect at once (they wait for its link, LinkOpening); `maxLinks`: when not to.
        if (granted !== null && this.#streams === null) this.#streams = new PeerStreams({ send: (sh, p) => this.#send(sh, p), socket: this.socket, highWater: this.#limits.maxUnreadBytesPerProcess / 2 }, granted, this.#limits.maxStreamsPerProcess);
        this.#send({ t: "hello", id: idOf(h.id) ?? 0, pid: process.pid, wire: WIRE_VERSION, window: [STREAM_WINDOW, CONNECTION_WINDOW], ahead: true, maxLinks: this.#limits.maxLinksPerProcess });
        return;
      case "connect":
        void this.#connect(h);
        return;
      case "request":
        void this.#request(h, payload);
        return;
      case "stream":
        void this.#stream(h, payload);
        return;
      case "data":
        // Bodies' frames: past their credit a ProtocolError, which ends the connection.
        this.#streamsOrFail().data(h, payload);
        return;
      case "window":
        this.#streamsOrFail().window(h);
        return;
      case "bodyerror":
        this.#streamsOrFail().bodyError(h);
        return;
      case "send": {
        const link = this.links.get(idOf(h.link) ?? 0);
        const id = idOf(h.id) ?? 0;
        if (!link || (link instanceof LinkOpening && link.closing)) {
          this.#send({ t: "error", id, ...wireError(new PerilinkError("PERILINK_CLIENT_CLOSED", "Cannot send: the link is closed")) });
          return;
        }
        // A message waits while its session's socket is full (link.send): counted as in flight, as requests are.
        if (this.#inflight >= this.#limits.maxInflightPerProcess || this.#sendBytes + payload.length > this.#limits.maxUnreadBytesPerProcess) {
          this.#send({ t: "error", id, ...wireError(new AgentLimitError(`Cannot send: this process has ${this.#inflight} requests and messages (${this.#sendBytes} bytes of messages) waiting in the agent, its most (maxInflightPerProcess, maxUnreadBytesPerProcess); the server is not reading`)) });
          return;
        }
        this.#inflight++;
        this.#sendBytes += payload.length;
        link
          .send(payload) // on a link still opening, once it is open
          .then(
            () => this.#send({ t: "sent", id }),
            (err: unknown) => this.#send({ t: "error", id, ...wireError(err) }),
          )
          .finally(() => {
            this.#inflight--;
            this.#sendBytes -= payload.length;
            this.#endIfLeft();
          });
        return;
      }
      case "close": {
        const id = idOf(h.link) ?? 0;
        const link = this.links.get(id);
        if (link instanceof LinkOpening) {
          if (!link.closing) this.#closingOpens++; // closed when it opens; its number stays taken till then, counted apart
          link.closing = true;
        } else if (link !== undefined) {
          link.close();
          this.links.delete(id);
        }
        this.#endIfLeft();
        return;
      }
      case "cancel": {
        const id = idOf(h.id) ?? 0;
        if (!this.#streams?.cancel(id)) this.#aborts.get(id)?.abort(new CancelledError("Request cancelled by the application"));
        return;
      }
      case "upgrade":
        // Its answer goes out before a GOAWAY ends this connection (counted in flight).
        this.#answerLater(idOf(h.id) ?? 0, this.#upgrade(), (pid) => ({ t: "upgraded", pid }));
        return;
      case "metrics":
        this.#send({ t: "metrics", id: idOf(h.id) ?? 0, text: this.#metrics() });
        return;
      case "sessions":
      case "addresses":
        // The table is the payload: it may be larger than a header may be.
        this.#send({ t: h.t, id: idOf(h.id) ?? 0 }, Buffer.from(JSON.stringify(h.t === "sessions" ? this.#sessions() : this.#client.addresses())));
        return;
      case "forget": {
        // The agent's known-servers record and pins are this user's, as `perilink forget` on its state directory.
        // Counted in flight, as it flushes the record: a bye waits for its answer.
        this.#answerLater(idOf(h.id) ?? 0, this.#client.forget(String(h.target ?? "")), (r) => ({ t: "forgot", ...r }));
        return;
      }
      default:
        this.#log.debug("agent_peer_unknown_frame", { pid: this.pid, t: h.t });
    }
  }

  /** Answers request `id` once `work` settles, counted in flight until then (so that a bye waits for it). */
  #answerLater<T>(id: number, work: Promise<T>, ok: (r: T) => Header): void {
    this.#inflight++;
    work
      .then(
        (r) => this.#send({ ...ok(r), id }),
        (err: unknown) => this.#send({ t: "error", id, ...wireError(err) }),
      )
      .finally(() => {
        this.#inflight--;
        this.#endIfLeft();
      });
  }

  async #connect(h: Header): Promise<void> {
    const id = idOf(h.id);
    const linkId = idOf(h.linkId);
    if (id === null || linkId === null || this.links.has(linkId)) return void this.socket.destroy();
    // Links it closed while they opened count apart, within the same bound (so at most twice it in all).
    const held = this.links.size - this.#closingOpens;
    if (held >= this.#limits.maxLinksPerProcess || this.#closingOpens >= this.#limits.maxLinksPerProcess) {
      this.#send({ t: "error", id, ...wireError(new AgentLimitError(`Cannot open link: this process holds ${held} links through the agent (and closed ${this.#closingOpens} still opening), its most (maxLinksPerProcess); close some`)) });
      return;
    }
    const opening = new LinkOpening();
    this.links.set(linkId, opening);
    try {
      if (typeof h.host !== "string" || typeof h.app !== "string" || typeof h.port !== "number") throw new PerilinkError("PERILINK_USAGE", "Cannot open link: host, port and app are required");
      const link = await this.#client.connect({
        host: h.host,
        port: h.port,
        app: h.app,
        ...(h.trustNew === true ? { trustNew: true } : {}),
        ...(typeof h.expectKey === "string" ? { expectKey: h.expectKey } : {}),
      });
      if (this.#closed || opening.closing) {
        link.close(); // the process went away, or closed the link, while it opened
        throw new PerilinkError("PERILINK_CLIENT_CLOSED", "Cannot open link: it was closed while it opened");
      }
      this.links.set(linkId, link);
      link.on("message", (p: Buffer) => this.#send({ t: "message", link: linkId }, p));
      link.on("statechange", (state: LinkState) => this.#send({ t: "state", link: linkId, state }));
      link.on("moved", (move: LinkMove) => this.#send({ t: "moved", link: linkId, move }));
      // Where its session runs, from its own entry (not the whole table: that is every link of every process).
      const live = link.entry.active;
      const place = live !== null ? { address: live.address.host, port: live.address.port, sessionNumber: link.sessionNumber } : null;
      this.#send({ t: "connected", id, managementNumber: link.managementNumber, serverId: link.entry.serverId, state: link.state, sessionNumber: link.sessionNumber, place });
      opening.open(link); // what waited for it goes on, after the answer
    } catch (err) {
      opening.fail(err);
      if (opening.closing) this.#closingOpens--;
      if (this.links.get(linkId) === opening) this.links.delete(linkId);
      this.#send({ t: "error", id, ...wireError(err) });
      this.#endIfLeft();
    }
  }

  async #request(h: Header, payload: Buffer): Promise<void> {
    const id = idOf(h.id);
    if (id === null) return void this.socket.destroy();
    const found = this.#linkFor(h, id, "send request", true);
    if (!found) return;
    if (found instanceof LinkOpening) payload = ownBytes(payload);
    const options = requestOptions(h);
    // No answer larger than one frame of this wire carries (the application's reader takes no more).
    options.maxBytes = Math.min(options.maxBytes ?? Infinity, this.#maxPayload);
    if (h.cancellable === true) {
      const ac = new AbortController();
      this.#aborts.set(id, ac);
      options.signal = ac.signal;
    }
    this.#inflight++;
    let slot: object | null = null;
    try {
      const link = found instanceof LinkOpening ? await found.forRequest(options) : found;
      const share = this.#share.forLink(link, this, options); // this process's share of the session's slots
      slot = share instanceof Promise ? await share : share;
      const answer = await link.request(payload, options);
      this.#send({ t: "response", id }, answer);
    } catch (err) {
      this.#send({ t: "error", id, ...wireError(err) });
    } finally {
      if (slot !== null) this.#share.release(slot, this);
      this.#inflight--;
      if (h.cancellable === true) this.#aborts.delete(id);
      this.#endIfLeft();
    }
  }

  /** A request whose response (and perhaps request) body streams: it counts as in flight until both are over. */
  async #stream(h: Header, payload: Buffer): Promise<void> {
    const id = idOf(h.id);
    if (id === null) return void this.socket.destroy();
    if (this.#streams === null) {
      this.#send({ t: "error", id, ...wireError(new ProtocolError(1, "Cannot stream: this process's hello offered no credit for bodies (window)")) });
      return;
    }
    const link = this.#linkFor(h, id, "stream", false);
    if (!link || link instanceof LinkOpening) return this.#streams.refused(id); // the body it may be sending meanwhile is let go of
    this.#inflight++;
    try {
      await this.#streams.run(id, link, h, payload, requestOptions(h));
    } catch (err) {
      this.#log.warn("agent_peer_protocol_error", { pid: this.pid, error: err });
      this.socket.destroy(); // an id used again
    } finally {
      this.#inflight--;
      this.#endIfLeft();
    }
  }

  /** The link a request names (or, with `opening`, the one being opened), within this process's requests in flight; else it is answered with the error. */
  #linkFor(h: Header, id: number, what: string, opening: boolean): Link | LinkOpening | null {
    const link = this.links.get(idOf(h.link) ?? 0);
    if (!link || (link instanceof LinkOpening && (link.closing || !opening))) {
      this.#send({ t: "error", id, ...wireError(new PerilinkError("PERILINK_CLIENT_CLOSED", `Cannot ${what}: the link is closed${link ? " or not open yet" : ""}`)) });
      return null;
    }
    if (this.#inflight >= this.#limits.maxInflightPerProcess) {
      this.#send({ t: "error", id, ...wireError(new AgentLimitError(`Cannot ${what}: this process has ${this.#inflight} requests in flight through the agent, its most (maxInflightPerProcess)`)) });
      return null;
    }
    return link;
  }

  #streamsOrFail(): PeerStreams {
    if (this.#streams === null) throw new ProtocolError(1, "agent body frame without credit offered");
    return this.#streams;
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const gone = new CancelledError("The application's process went away");
    for (const ac of this.#aborts.values()) ac.abort(gone);
    this.#share.drop(this, gone);
    this.#streams?.closeAll();
    if (this.#deadline) clearTimeout(this.#deadline);
    // What waits for a link still opening fails now, and lets go of its bytes; the link closes once open (#connect).
    for (const link of this.links.values()) if (link instanceof LinkOpening) link.fail(gone);
    else link.close();
    this.links.clear();
    this.#onClose(this);
  }
}

/** How long a process has to say hello, and to finish a frame it began. */
const HELLO_MS = 2000;
const FRAME_MS = 10_000;
