import type net from "node:net";
import { ProtocolError, SessionClosedError } from "../errors.ts";
import { FrameFlag, FrameType, initialSessionWindow, initialStreamWindow, WINDOW_PAYLOAD_SIZE, WireError } from "../protocol/constants.ts";
import type { FrameWriter } from "../protocol/frame_writer.ts";
import { IncomingBody, ReceiveWindow } from "../protocol/incoming_body.ts";
import type { DataWire, OutgoingBody } from "../protocol/outgoing_body.ts";
import { windowPayload } from "../protocol/payloads.ts";
import { OutputGate } from "../protocol/output_gate.ts";
import { SendCredit } from "../protocol/send_credit.ts";

/** What the streams of a client session tell its request table. */
export interface StreamEvents {
  /** The response body of `stream` ended (DATA with END): its slot is free. */
  finished(stream: number): void;
  /** The request body's source failed, or the reader cancelled the response: cancel the request. */
  cancel(stream: number, err: Error): void;
  /** Bytes moved on `stream`: its deadline starts again. */
  progress(stream: number): void;
}

/**
 * The streamed bodies of one client session (docs/protocol.md §4.7): request
 * bodies sent as DATA within the server's credit, and response bodies read
 * as they arrive, each holding at most its stream window. Made at the first
 * streamed request or response.
 */
export class ClientStreams {
  #writer: FrameWriter;
  #events: StreamEvents;
  #dataChunk: number;
  #credit: SendCredit;
  #window: ReceiveWindow;
  #responses = new Map<number, IncomingBody>();
  /** Request bodies still sending, to let go of what they keep once the server reads (its first WINDOW). */
  #sending = new Map<number, OutgoingBody>();
  /** Request bodies wait while the socket holds more than two of the server's frames unsent. */
  #gate: OutputGate;

  /** `dataChunk`: the largest DATA payload of a request body (one whole record to this server; see dataChunkFor). */
  constructor(socket: net.Socket, writer: FrameWriter, events: StreamEvents, serverMaxFrame: number, dataChunk: number, maxFrame: number, creditOnArrival = false) {
    this.#gate = new OutputGate(socket, () => writer.pending, 2 * serverMaxFrame);
    this.#writer = writer;
    this.#events = events;
    this.#dataChunk = Math.min(serverMaxFrame, dataChunk);
    this.#credit = new SendCredit(initialSessionWindow(serverMaxFrame), initialStreamWindow(serverMaxFrame));
    this.#window = new ReceiveWindow(
      { window: (stream, increment) => writer.frame(FrameType.Window, 0, stream, windowPayload(increment)) },
      initialSessionWindow(maxFrame),
      initialStreamWindow(maxFrame),
      creditOnArrival,
    );
  }

  /** Sends REQUEST (streamed) and then the body; a source that throws cancels the request. */
  send(channel: number, stream: number, body: OutgoingBody): void {
    const writer = this.#writer;
    writer.frame(FrameType.Request, channel, stream, undefined, FrameFlag.Streamed);
    const wire: DataWire = {
      data: (s, chunk, end) => writer.frameAlone(FrameType.Data, channel, s, chunk, end ? FrameFlag.End : 0),
      writable: () => this.#gate.writable(),
    };
    this.#credit.open(stream);
    this.#sending.set(stream, body);
    const events = this.#events;
    body.send(stream, this.#credit, this.#dataChunk, wire, () => events.progress(stream)).then(
      () => this.#sendDone(stream, body),
      (err: unknown) => {
        this.#sendDone(stream, body);
        events.cancel(stream, err instanceof Error ? err : new Error(String(err)));
      },
    );
  }

  /** A RESPONSE that says its body follows in DATA: the body its reader reads. */
  openResponse(stream: number, defaultLimit: number): IncomingBody {
    const events = this.#events;
    const body = new IncomingBody(this.#window, stream, () => events.cancel(stream, new Error("the reader stopped reading the response")));
    body.defaultLimit = defaultLimit;
    body.onProgress = () => events.progress(stream);
    this.#responses.set(stream, body);
    return body;
  }

  data(stream: number, flags: number, payload: Buffer): void {
    const body = this.#responses.get(stream);
    if (body === undefined) {
      this.#window.discard(payload.length); // a stream we cancelled, or answered already
      return;
    }
    this.#events.progress(stream);
    body.push(payload, (flags & FrameFlag.End) !== 0);
    if (!body.finished) return;
    this.#responses.delete(stream);
    this.#events.finished(stream);
  }

  windowFrame(stream: number, payload: Buffer): void {
    if (payload.length !== WINDOW_PAYLOAD_SIZE) {
      throw new ProtocolError(WireError.ProtocolError, `Cannot accept WINDOW: its payload is ${payload.length} bytes, not ${WINDOW_PAYLOAD_SIZE}`);
    }
    this.#credit.grant(stream, payload.readUInt32BE(0));
    if (stream !== 0) this.#sending.get(stream)?.release(); // the server read some of it: the request started
  }

  /** The request on `stream` is over (answered, failed, cancelled): its bodies stop; a response still arriving fails with `err`. */
  stop(stream: number, err: Error | null): void {
    this.#credit.close(stream);
    const body = this.#responses.get(stream);
    if (body === undefined) return;
    this.#responses.delete(stream);
    if (err !== null) body.fail(err);
  }

  /** The session closed: senders stop, and a body still arriving (none should be left) fails. */
  close(): void {
    this.#credit.closeAll();
    for (const body of this.#responses.values()) body.fail(new SessionClosedError("Cannot read response: the session closed"));
    this.#responses.clear();
  }

  #sendDone(stream: number, body: OutgoingBody): void {
    if (this.#sending.get(stream) === body) this.#sending.delete(stream);
  }

}
