import type net from "node:net";
import { FrameType, WireError } from "../protocol/constants.ts";
import { FrameWriter } from "../protocol/frame_writer.ts";
import { encodeCodedReason } from "../protocol/payloads.ts";
import type { AppResult } from "./app.ts";

/**
 * What a server session writes (docs/protocol.md §4): its frame writer, with
 * the checks every answer passes — a response or message larger than the
 * client's announced frame limit is never sent (the request gets ERROR
 * FrameTooLarge instead) — and the end of our side, after which nothing
 * more is written.
 */
export class SessionOutput extends FrameWriter {
  #socket: net.Socket;
  /** The client's largest frame, from its hello (0 until then: nothing is sent before it). */
  peerMaxFrame = 0;
  /** What the client announced it understands (sealed_handshake.ts Feature): 0 for a first-release client. */
  peerFeatures = 0;
  #ended = false;

  constructor(socket: net.Socket, slabBytes: number) {
    super(socket, slabBytes);
    this.#socket = socket;
  }

  error(channel: number, stream: number, code: number, message: string): void {
    this.frame(FrameType.Error, channel, stream, encodeCodedReason(code, message));
  }

  /** A request's response: bytes or a string within the client's frame limit, else an ERROR in its place. */
  response(channel: number, stream: number, value: AppResult): void {
    if (value !== undefined && value !== null && typeof value !== "string" && !(value instanceof Uint8Array)) {
      this.error(channel, stream, WireError.ApplicationError, "Cannot send response: the handler returned neither bytes nor a string");
      return;
    }
    const size = value == null ? 0 : typeof value === "string" ? Buffer.byteLength(value) : value.byteLength;
    if (size > this.peerMaxFrame) {
      this.error(channel, stream, WireError.FrameTooLarge, `Cannot send response: ${size} bytes exceed the client's frame limit of ${this.peerMaxFrame}`);
      return;
    }
    this.frame(FrameType.Response, channel, stream, value ?? undefined);
  }

  /** A one-way message; throws RangeError (to the app) when it exceeds the client's frame limit. */
  message(channel: number, payload: Uint8Array | string): void {
    const size = typeof payload === "string" ? Buffer.byteLength(payload) : payload.byteLength;
    if (size > this.peerMaxFrame) {
      throw new RangeError(`Cannot send message: ${size} bytes exceed the client's frame limit of ${this.peerMaxFrame}`);
    }
    this.frame(FrameType.Message, channel, 0, payload);
  }

  /** Sends what is packed, then our FIN (with `last` bytes, if any); the socket is destroyed after `lingerMs`. */
  end(lingerMs: number, last?: Buffer): void {
    if (this.#ended) return;
    this.#ended = true;
    this.flush();
    const socket = this.#socket;
    if (last === undefined) socket.end();
    else socket.end(last);
    setTimeout(() => socket.destroy(), lingerMs).unref?.();
  }
}
