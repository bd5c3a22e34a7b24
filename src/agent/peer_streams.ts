import type net from "node:net";
import { AgentLimitError, CancelledError, ProtocolError } from "../errors.ts";
import type { Link, LinkRequestOptions } from "../client/link.ts";
import { WireError } from "../protocol/constants.ts";
import { IncomingBody, ReceiveWindow } from "../protocol/incoming_body.ts";
import { OutgoingBody, type DataWire } from "../protocol/outgoing_body.ts";
import { OutputGate } from "../protocol/output_gate.ts";
import { SendCredit } from "../protocol/send_credit.ts";
import { reviveError, wireError } from "./agent_errors.ts";
import { AGENT_CHUNK_BYTES, CONNECTION_WINDOW, idOf, STREAM_WINDOW, type Header } from "./agent_wire.ts";

/** What the streams of one process need of its connection (agent_peer.ts). */
export interface StreamsHost {
  send(header: Header, payload?: Uint8Array): void;
  socket: net.Socket;
  /** Unread bytes past which a response waits for the process to read. */
  highWater: number;
}

interface Exchange {
  ac: AbortController;
  /** The request body arriving from the process, when it streams one. */
  request: IncomingBody | null;
}

/**
 * Bodies streamed through the agent for one application process (C11 with
 * streams, docs/client.md). A request body arrives in `data` frames within
 * the credit the agent gives (STREAM_WINDOW each, CONNECTION_WINDOW over
 * all of the process's streams), so one process makes the agent hold at
 * most that much of its bodies; the agent's link reads it as the server
 * takes it. A response body goes back within the credit the process gives,
 * one chunk at a time: while the process does not read, the agent does not
 * read the server's stream, and the server's window stalls it there.
 */
export class PeerStreams {
  #host: StreamsHost;
  #recv: ReceiveWindow;
  #credit: SendCredit;
  #wire: DataWire;
  #live = new Map<number, Exchange>();
  /** The highest stream id begun: data for a higher one names a body that never began. */
  #highest = 0;

  #maxStreams: number;

  /** `granted`: the credit the process's hello gives the agent, `[stream, connection]`; `maxStreams`: its streams at once. */
  constructor(host: StreamsHost, granted: readonly [number, number], maxStreams: number) {
    this.#host = host;
    this.#maxStreams = maxStreams;
    this.#recv = new ReceiveWindow({ window: (stream, n) => host.send({ t: "window", id: stream, n }) }, CONNECTION_WINDOW, STREAM_WINDOW);
    this.#credit = new SendCredit(granted[1], granted[0]);
    // A response waits while the process leaves more than highWater unread.
    const gate = new OutputGate(host.socket, () => 0, host.highWater);
    this.#wire = {
      data: (stream, chunk, end) => host.send(end ? { t: "data", id: stream, end: true } : { t: "data", id: stream }, chunk),
      writable: () => gate.writable(),
    };
  }

  /**
   * One `stream` request of the process: its body is `payload`, or (`body:
   * true`) the `data` frames that follow. Answers `streaming` once the
   * response began, then its body as `data` frames (a whole one in the
   * `streaming` frame itself); a failure before is `error`, after, `bodyerror`.
   */
  async run(id: number, link: Link, h: Header, payload: Buffer, options: LinkRequestOptions): Promise<void> {
    // Ids grow: one used before would leave an exchange nothing can cancel (the caller ends the connection).
    if (id <= this.#highest) throw new ProtocolError(WireError.ProtocolError, `agent stream ${id} reuses an id`);
    this.#highest = id;
    if (this.#live.size >= this.#maxStreams) {
      const err = new AgentLimitError(`Cannot stream: this process has ${this.#live.size} streamed requests through the agent, its most (maxStreamsPerProcess); read or cancel one`);
      return this.#host.send({ t: "error", id, ...wireError(err) });
    }
    const ac = new AbortController();
    const request = h.body === true ? new IncomingBody(this.#recv, id, () => this.#host.send({ t: "stopbody", id })) : null;
    this.#live.set(id, { ac, request });
    try {
      let body;
      try {
        body = await link.stream(request ?? payload, { ...options, signal: ac.signal });
      } catch (err) {
        this.#host.send({ t: "error", id, ...wireError(err) });
        return;
      }
      if (!this.#live.has(id)) {
        // Cancelled as it began: the process has given up on it (and hears nothing more of this id).
        if (body.streamed) body.cancel("the application cancelled it");
        return;
      }
      if (!body.streamed) {
        this.#host.send({ t: "streaming", id, whole: true }, await body.bytes());
        return;
      }
      this.#host.send({ t: "streaming", id });
      this.#credit.open(id);
      try {
        // False when the process cancelled: the send then lets go of the body, which cancels it at the server.
        await new OutgoingBody(body, 0, true).send(id, this.#credit, AGENT_CHUNK_BYTES, this.#wire);
      } catch (err) {
        this.#host.send({ t: "bodyerror", id, ...wireError(err) });
      }
    } finally {
      this.#credit.close(id);
      // The response is over: what is still arriving of the request body is not wanted.
      request?.fail(new CancelledError("Cannot read body: the request is over"), true);
      this.#live.delete(id);
    }
  }

  /** Stream `id` was answered with an error before it began: data the process sends for it meanwhile is discarded, not a protocol error. */
  refused(id: number): void {
    if (id > this.#highest) this.#highest = id;
  }

  /** A chunk of a request body. Past its credit, or after its end: ProtocolError (the caller ends the connection). */
  data(h: Header, payload: Buffer): void {
    const id = idOf(h.id) ?? 0;
    const request = this.#live.get(id)?.request;
    if (request) request.push(payload, h.end === true);
    else if (id === 0 || id > this.#highest) throw new ProtocolError(WireError.ProtocolError, `agent data frame for stream ${id}, which never began`);
    else this.#recv.discard(payload.length); // its exchange ended: counted, and given back
  }

  /** Credit from the process for a response body (`id` 0: all of them). */
  window(h: Header): void {
    const stream = h.id === 0 ? 0 : idOf(h.id);
    if (stream === null || !Number.isInteger(h.n) || (h.n as number) < 1) throw new ProtocolError(WireError.FlowControl, "agent window frame: no stream or increment");
    this.#credit.grant(stream, h.n as number);
  }

  /** The process's source of a request body failed: the request fails with its error. */
  bodyError(h: Header): void {
    this.#live.get(idOf(h.id) ?? 0)?.request?.fail(reviveError(h));
  }

  /** The process cancelled `id` (its signal, or its reader stopped): the request and both bodies stop. True when it was a stream. */
  cancel(id: number): boolean {
    const ex = this.#live.get(id);
    if (!ex) return false;
    const why = new CancelledError("Request cancelled by the application");
    this.#live.delete(id);
    ex.ac.abort(why);
    this.#credit.close(id);
    ex.request?.fail(why, true);
    return true;
  }

  /** The process went away. */
  closeAll(): void {
    for (const id of [...this.#live.keys()]) this.cancel(id);
    this.#credit.closeAll();
  }
}
