import net from "node:net";
import { AgentError, ClientClosedError } from "../errors.ts";
import { TARGET } from "../target.ts";
import { reviveError } from "./agent_errors.ts";
import { FrameReader, idOf, WIRE_VERSION, writeFrame, type Header } from "./agent_wire.ts";

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
  /** The agent offered WIRE_VERSION in its hello: request and message frames go with compact headers. */
  #compact = false;

  private constructor(path: string, socket: net.Socket) {
    this.path = path;
    this.#socket = socket;
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
        conn.call({ t: "hello", pid: process.pid, wire: WIRE_VERSION }).then(
          ({ header }) => {
            done();
            conn.#compact = header.wire === WIRE_VERSION;
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

  #onFrame(h: Header, payload: Buffer): void {
    if (h.t === "goaway") {
      this.#draining = true;
      for (const l of [...this.#links.values()]) l.goAway();
      return;
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
    if (this.#pending.size === 0) this.#socket.unref();
    if (h.t === "error") p.reject(reviveError(h));
    else p.resolve({ header: h, payload });
  }

  #end(err: Error): void {
    if (this.#closed) return;
    this.#closed = err;
    this.#socket.destroy();
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    for (const l of this.#links.values()) l.lost(err);
    this.#links.clear();
  }
}
