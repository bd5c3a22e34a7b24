import type net from "node:net";
import { CancelledError, ProtocolError } from "../errors.ts";
import { FrameFlag, FrameType, initialSessionWindow, initialStreamWindow, WINDOW_PAYLOAD_SIZE, WireError } from "../protocol/constants.ts";
import { IncomingBody, ReceiveWindow } from "../protocol/incoming_body.ts";
import { dataChunkFor, OutgoingBody, type DataWire, type StreamSource } from "../protocol/outgoing_body.ts";
import { windowPayload } from "../protocol/payloads.ts";
import { OutputGate } from "../protocol/output_gate.ts";
import { SendCredit } from "../protocol/send_credit.ts";
import type { ServerLimits } from "./limits.ts";
import type { SessionOutput } from "./session_output.ts";
import { sealPlaintextFor } from "../runtime/record_size.ts";

/** What the streams of one session read of it. */
interface StreamOwner {
  readonly out: SessionOutput;
  /** Our own frame limit (the client's credit on each stream starts at it). */
  readonly maxFrame: number;
  /** The client's frame limit, from its hello. */
  readonly peerMaxFrame: number;
}

/**
 * The streamed bodies of one server session (docs/protocol.md §4.7): request
 * bodies arriving in DATA frames, each an `IncomingBody` its handler reads,
 * and response bodies going out within the client's credit. Made at the
 * first streamed request or WINDOW; a session that never streams has none.
 *
 * What it holds is bounded by the windows: the client may have at most our
 * session window (four of our frames) of unread DATA here, and a response
 * body holds the one chunk its source gave last.
 */
export class SessionStreams {
  #owner: StreamOwner;
  #credit: SendCredit;
  #window: ReceiveWindow;
  #bodies = new Map<number, IncomingBody>();
  /** Response bodies wait while the session's unsent output is over maxSessionOutputBytes. */
  #gate: OutputGate;
  /** What `ctx.body.bytes()` takes whole when the handler names no limit. */
  #bodyLimit: number;
  /** The largest DATA payload of a response body: one whole record to this client. */
  #dataChunk: number;

  constructor(socket: net.Socket, out: SessionOutput, limits: ServerLimits) {
    const owner: StreamOwner = { out, maxFrame: limits.maxFrameBytes, peerMaxFrame: out.peerMaxFrame };
    this.#owner = owner;
    this.#gate = new OutputGate(socket, () => out.pending, limits.maxSessionOutputBytes);
    this.#bodyLimit = 16 * limits.maxFrameBytes;
    this.#dataChunk = Math.min(owner.peerMaxFrame, dataChunkFor(sealPlaintextFor(out.peerFeatures)));
    this.#credit = new SendCredit(initialSessionWindow(owner.peerMaxFrame), initialStreamWindow(owner.peerMaxFrame));
    this.#window = new ReceiveWindow(
      { window: (stream, increment) => out.frame(FrameType.Window, 0, stream, windowPayload(increment)) },
      initialSessionWindow(owner.maxFrame),
      initialStreamWindow(owner.maxFrame),
    );
  }

  /** DATA bytes received and not yet read by their handlers. */
  get bufferedBytes(): number {
    return this.#window.buffered;
  }

  /** A streamed REQUEST (its own payload must be empty): its body, which the handler reads. */
  openBody(stream: number, payload: Buffer): IncomingBody {
    if (payload.length > 0) throw new ProtocolError(WireError.ProtocolError, "Cannot accept streamed REQUEST: its own payload must be empty (the body follows in DATA)");
    // A handler that stops reading: the rest is discarded, and the client, given no more
    // credit on the stream, stops sending until the request's answer tells it to stop.
    const body = new IncomingBody(this.#window, stream, () => {});
    body.defaultLimit = this.#bodyLimit;
    this.#bodies.set(stream, body);
    return body;
  }

  /** A DATA frame of `stream`; `lastStream` is the highest request stream seen (a DATA above it is fatal). */
  data(stream: number, lastStream: number, flags: number, payload: Buffer): void {
    if (stream === 0 || stream > lastStream) throw new ProtocolError(WireError.ProtocolError, `Cannot accept DATA: stream ${stream} was never opened`);
    const body = this.#bodies.get(stream);
    if (body === undefined) {
      this.#window.discard(payload.length); // answered, refused or cancelled: nobody reads it
      return;
    }
    body.push(payload, (flags & FrameFlag.End) !== 0); // kept after its END: endStream() gives back what its handler left unread
  }

  /** A WINDOW frame: credit for our response bodies. */
  windowFrame(stream: number, payload: Buffer): void {
    if (payload.length !== WINDOW_PAYLOAD_SIZE) {
      throw new ProtocolError(WireError.ProtocolError, `Cannot accept WINDOW: its payload is ${payload.length} bytes, not ${WINDOW_PAYLOAD_SIZE}`);
    }
    this.#credit.grant(stream, payload.readUInt32BE(0));
  }

  /**
   * The request on `stream` got its final answer, or was cancelled: its body
   * (if still arriving) fails with `why`, and its response body stops.
   */
  endStream(stream: number, why: string): void {
    const body = this.#bodies.get(stream);
    if (body !== undefined) {
      this.#bodies.delete(stream);
      body.fail(new CancelledError(`Cannot read request body: ${why}`), true); // unread bytes go back to the session's window
    }
    this.#credit.close(stream);
  }

  /**
   * Sends a handler's streamed response body as DATA after a RESPONSE that
   * says it is streamed. True when it went out whole (DATA with END); false
   * when the stream was stopped first. Throws what the source throws.
   */
  async respond(channel: number, stream: number, source: StreamSource, progress: () => void): Promise<boolean> {
    const owner = this.#owner;
    owner.out.frame(FrameType.Response, channel, stream, undefined, FrameFlag.Streamed);
    const body = new OutgoingBody(source, 0);
    const wire: DataWire = {
      data: (s, chunk, end) => owner.out.frameAlone(FrameType.Data, channel, s, chunk, end ? FrameFlag.End : 0),
      writable: () => this.#gate.writable(),
    };
    this.#credit.open(stream);
    try {
      return await body.send(stream, this.#credit, this.#dataChunk, wire, progress);
    } finally {
      this.#credit.close(stream);
      body.dispose();
    }
  }

  /** The session ended: bodies fail, response bodies stop. */
  close(): void {
    for (const body of this.#bodies.values()) body.fail(new CancelledError("Cannot read request body: the session closed"));
    this.#bodies.clear();
    this.#credit.closeAll();
  }
}
