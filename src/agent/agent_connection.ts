import net from "node:net";
import { AgentError, ClientClosedError, ProtocolError } from "../errors.ts";
import { TARGET } from "../target.ts";
import { IncomingBody, ReceiveWindow, WholeBody } from "../protocol/incoming_body.ts";
import { OutgoingBody, type DataWire } from "../protocol/outgoing_body.ts";
import { OutputGate } from "../protocol/output_gate.ts";
import { SendCredit } from "../protocol/send_credit.ts";
import type { ResponseBody } from "../client/request_table.ts";
import { reviveError, wireError } from "./agent_errors.ts";
import { AGENT_CHUNK_BYTES, CONNECTION_WINDOW, FrameReader, idOf, STREAM_WINDOW, WIRE_VERSION, windowOf, writeFrame, type Header } from "./agent_wire.ts";

/** A streamed exchange: its response body once it began, and what ends it here. */
interface Exchange {
  body: IncomingBody | null;
  /** What the body's `bytes()` takes when its caller names no limit: the request's maxBytes, else 16 frames (as link.ts). */
  limit: number;
  finish: () => void;
}

interface Pending {
  resolve: (v: { header: Header; payload: Buffer }) => void;
  reject: (err: Error) => void;
}

/** What a link through the agent hears about itself (agent_link.ts). */
export interface LinkEvents {
  message(payload: Buffer): void;
  state(state: string): void;
  moved(move: unknown): void;
  /** The agent was replaced (GOAWAY): open the link again through the new one; requests in flight finish here. */
  goAway(): void;
  /** The connection to the agent ended. */
  lost(err: Error): void;
}

/** Unsent bytes past which a streamed request body waits for the agent to read. */
const WRITE_HIGH = 1024 * 1024;

/**
 * This process's one connection to the host agent (agent_wire.ts): every
 * link of the process rides it, each named by a number chosen here, and
 * every request and connect waits for its answer by number.
 */
export class AgentConnection {
  readonly path: string;
  #socket: net.Socket;
  #reader: FrameReader;
  #next = 1;
  #pending = new Map<number, Pending>();
  #links = new Map<number, LinkEvents>();
  #closed: Error | null = null;
  #draining = false;
  /** The agent said bye: it answered all it read, and reads no more. */
  #bye = false;
  /** The agent offered WIRE_VERSION in its hello: request and message frames go with compact headers. */
  #compact = false;
  /** The agent takes requests and messages right behind a connect, before its answer (AgentLink.openAhead), for up to this many links (0: never). */
  #ahead = 0;
  /** Streamed bodies: credit the agent gave (null: an agent without them), what it may send us, and each exchange's end. */
  #credit: SendCredit | null = null;
  /** Connection credit comes back as data arrives: an unread body stalls only its own stream (STREAM_WINDOW bounds each). */
  #recv = new ReceiveWindow({ window: (stream, n) => this.notify({ t: "window", id: stream, n }) }, CONNECTION_WINDOW, STREAM_WINDOW, true);
  #bodies = new Map<number, IncomingBody>();
  #exchanges = new Map<number, Exchange>();
  #gate: OutputGate;
  #wire: DataWire = {
    data: (stream, chunk, end) => this.#write(end ? { t: "data", id: stream, end: true } : { t: "data", id: stream }, chunk),
    writable: () => this.#gate.writable(),
  };

  private constructor(path: string, socket: net.Socket) {
    this.path = path;
    this.#socket = socket;
    this.#gate = new OutputGate(socket, () => 0, WRITE_HIGH);
    this.#reader = new FrameReader(16 * TARGET.client.maxFrameBytes + 1024, (h, p) => this.#onFrame(h, p));
    socket.on("data", (chunk: Buffer) => {
      try {
        this.#reader.push(chunk);
      } catch (err) {
        this.#end(new AgentError(`The host agent at ${path} sent a malformed frame: ${(err as Error).message}`));
      }
    });
    socket.on("error", (err) => this.#end(new AgentError(`The connection to the host agent at ${path} failed: ${err.message}`, { cause: err })));
    socket.once("close", () => this.#end(new AgentError(`The connection to the host agent at ${path} ended (did it stop?)`)));
  }

  /**
   * Connects and says hello; rejects with the socket's error (ENOENT,
   * ECONNREFUSED: no agent there). The connect must succeed in `connectMs`;
   * the hello's answer may take `helloMs`, as a socket-activated agent is
   * only starting when the first process connects. `signal` gives up at once
   * (the client was closed).
   */
  static open(path: string, connectMs: number, helloMs: number, signal?: AbortSignal): Promise<AgentConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(path);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const fail = (err: Error): void => {
        done();
        socket.destroy();
        reject(err);
      };
      const onAbort = (): void => fail(new ClientClosedError("Cannot reach the host agent: the client was closed meanwhile"));
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      timer = setTimeout(() => fail(new AgentError(`Cannot reach the host agent at ${path}: no connection in ${connectMs} ms`)), connectMs);
      socket.once("error", fail);
      socket.once("connect", () => {
        clearTimeout(timer);
        timer = setTimeout(() => fail(new AgentError(`Cannot reach the host agent at ${path}: connected, but no hello in ${helloMs} ms (is it stuck?)`)), helloMs);
        const conn = new AgentConnection(path, socket);
        conn.call({ t: "hello", pid: process.pid, wire: WIRE_VERSION, window: [STREAM_WINDOW, CONNECTION_WINDOW] }).then(
          ({ header }) => {
            done();
            conn.#compact = header.wire === WIRE_VERSION;
            conn.#ahead = header.ahead === true && typeof header.maxLinks === "number" ? header.maxLinks : 0;
            const granted = windowOf(header.window);
            if (granted !== null) conn.#credit = new SendCredit(granted[1], granted[0]);
            socket.unref();
            resolve(conn);
          },
          (err: Error) => fail(err),
        );
      });
    });
  }

  get closed(): boolean {
    return this.#closed !== null;
  }

  /** The agent takes streamed bodies (its hello gave credit for them). */
  get streams(): boolean {
    return this.#credit !== null;
  }

  /**
   * Below how many links this process may open one ahead (the agent queues
   * what is sent on a link it is still opening: its hello said `ahead`): the
   * agent's bound on a process's links. 0: never.
   */
  get linksAhead(): number {
    return this.#ahead;
  }

  /** Told GOAWAY: a new agent serves; nothing new goes here. */
  get draining(): boolean {
    return this.#draining;
  }

  /** Sends `header` (+ payload) with a fresh id and resolves with the answer of that id. The header is the caller's fresh object: its `id` is set here. */
  call(header: Omit<Header, "id"> & { t: string }, payload?: Uint8Array): Promise<{ header: Header; payload: Buffer }> {
    if (this.#closed) return Promise.reject(this.#closed);
    const id = this.#next++;
    (header as Header).id = id;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#ref();
      this.#write(header as Header, payload);
    });
  }

  /**
   * A request whose response is read as a body (link.stream()): `header`
   * goes with the whole request body, or with `body: true` and then the
   * body in `data` frames within the agent's credit. Resolves once the
   * response began, with its body (filled by the agent's `data` frames).
   * `done` runs once, when the exchange is over here: the response body
   * ended, failed or was cancelled, or the request failed.
   */
  stream(header: Omit<Header, "id"> & { t: string }, body: Uint8Array | OutgoingBody, done: () => void): Promise<ResponseBody> {
    const credit = this.#credit;
    if (credit === null) {
      done();
      return Promise.reject(new AgentError("Cannot stream through the host agent: it is an older version; upgrade it (perilink agent upgrade), or use createClient({ agent: false })"));
    }
    const id = this.#next;
    const outgoing = body instanceof OutgoingBody ? body : null;
    if (outgoing) (header as Header).body = true;
    const ex: Exchange = {
      body: null,
      limit: typeof header.maxBytes === "number" ? header.maxBytes : 16 * TARGET.client.maxFrameBytes,
      finish: () => {
        this.#exchanges.delete(id);
        this.#bodies.delete(id);
        credit.close(id);
        this.#hold();
        done();
      },
    };
    this.#exchanges.set(id, ex);
    const answer = this.call(header, outgoing ? undefined : (body as Uint8Array));
    if (outgoing) {
      credit.open(id);
      outgoing.send(id, credit, AGENT_CHUNK_BYTES, this.#wire).then(
        () => {},
        (err: unknown) => this.notify({ t: "bodyerror", id, ...wireError(err) }),
      );
    }
    return answer.then(
      ({ header: h, payload }) => {
        // The body made when the response began (it may have ended, or failed, in the same read).
        const incoming = ex.body;
        if (h.whole === true || !incoming) {
          this.#finish(id);
          return new WholeBody(payload);
        }
        return incoming;
      },
      (err: Error) => {
        this.#finish(id);
        throw err;
      },
    );
  }

  /** Ends exchange `id` here: its response body (if any) fails with `err` and the agent is told to stop. */
  cancelStream(id: number, err: Error): void {
    if (!this.#exchanges.has(id)) return;
    this.notify({ t: "cancel", id });
    this.#bodies.get(id)?.fail(err, true);
    // Its answer, should one still come, finds nobody: the caller hears the cancel now, never an empty body.
    const p = this.#pending.get(id);
    this.#pending.delete(id);
    p?.reject(err);
    this.#finish(id);
  }

  #finish(id: number): void {
    this.#exchanges.get(id)?.finish();
  }

  /** The id the next call will take (a cancel names it). */
  peekId(): number {
    return this.#next;
  }

  /** Sends without waiting for an answer (close, cancel). */
  notify(header: Header, payload?: Uint8Array): void {
    if (!this.#closed) this.#write(header, payload);
  }

  addLink(id: number, events: LinkEvents): void {
    this.#links.set(id, events);
  }

  removeLink(id: number): void {
    this.#links.delete(id);
  }

  /** A fresh link number. */
  linkId(): number {
    return this.#next++;
  }

  close(): void {
    this.#socket.destroy();
  }

  /** Frames written in one turn of the event loop go out in one system call (corked until the next tick). */
  #write(header: Header, payload?: Uint8Array): void {
    const s = this.#socket;
    if (!this.#corked) {
      this.#corked = true;
      s.cork();
      process.nextTick(this.#uncork);
    }
    writeFrame(s, header, payload, this.#compact);
  }

  #corked = false;
  #uncork = (): void => {
    this.#corked = false;
    this.#socket.uncork();
  };

  /** Keeps the process alive while something waits for the agent (the socket is unref'd otherwise). */
  #ref(): void {
    if (this.#pending.size === 1) this.#socket.ref();
  }

  /** After an answer or an exchange's end: the socket keeps the process alive only while something waits. */
  #hold(): void {
    if (this.#pending.size === 0 && this.#exchanges.size === 0) this.#socket.unref();
  }

  #onFrame(h: Header, payload: Buffer): void {
    if (h.t === "goaway" || h.t === "bye") {
      this.#draining = true;
      this.#bye ||= h.t === "bye";
      if (h.t === "goaway") for (const l of [...this.#links.values()]) l.goAway();
      return;
    }
    if (h.t === "data" || h.t === "window" || h.t === "bodyerror" || h.t === "stopbody" || h.t === "streaming") {
      this.#onBody(h, payload);
      if (h.t !== "streaming") return;
    }
    if (h.t === "message" || h.t === "state" || h.t === "moved") {
      const l = this.#links.get(idOf(h.link) ?? 0);
      if (!l) return;
      if (h.t === "message") l.message(payload);
      else if (h.t === "state") l.state(String(h.state));
      else l.moved(h.move);
      return;
    }
    const id = idOf(h.id);
    const p = id === null ? undefined : this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id!);
    this.#hold();
    if (h.t === "error") p.reject(reviveError(h));
    else p.resolve({ header: h, payload });
  }

  /** The frames of streamed bodies. A `data` past its credit, or a bad `window`: ProtocolError (the connection ends). */
  #onBody(h: Header, payload: Buffer): void {
    const id = h.id === 0 && h.t === "window" ? 0 : idOf(h.id);
    if (id === null) throw new ProtocolError(1, `agent ${h.t} frame names no request`);
    switch (h.t) {
      case "streaming":
        // Made before the answer resolves: the body's first data may be in this same read.
        {
          const ex = this.#exchanges.get(id);
          if (h.whole === true || !ex || !this.#pending.has(id)) return;
          ex.body = new IncomingBody(this.#recv, id, () => this.cancelStream(id, new Error("cancelled")));
          ex.body.defaultLimit = ex.limit;
          this.#bodies.set(id, ex.body);
        }
        return;
      case "data": {
        const body = this.#bodies.get(id);
        if (!body) return this.#recv.discard(payload.length); // after a cancel: counted, and given back
        body.push(payload, h.end === true);
        if (h.end === true) this.#finish(id);
        return;
      }
      case "bodyerror":
        this.#bodies.get(id)?.fail(reviveError(h));
        this.#finish(id);
        return;
      case "stopbody":
        this.#credit?.close(id); // the server stopped reading the request body: its sender stops
        return;
      case "window":
        if (!Number.isInteger(h.n) || (h.n as number) < 1 || this.#credit === null) throw new ProtocolError(1, "agent window frame: no increment");
        this.#credit.grant(id, h.n as number);
        return;
    }
  }

  #end(err: Error): void {
    if (this.#closed) return;
    // After its bye, the agent read nothing more: what is unanswered did not run there.
    if (this.#bye) err = new AgentError(`The host agent at ${this.path} handed over to a new one before it read this; send it there`, { unsent: true });
    this.#closed = err;
    this.#socket.destroy();
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    for (const l of this.#links.values()) l.lost(err);
    this.#links.clear();
    this.#credit?.closeAll();
    for (const body of this.#bodies.values()) body.fail(err);
    for (const ex of [...this.#exchanges.values()]) ex.finish();
  }
}
