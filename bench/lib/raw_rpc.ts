import net from "node:net";
import { encodeMessage, messageReader } from "./rpc_frames.ts";
import { connectNoDelay, RpcReplies } from "./rpc_replies.ts";

/**
 * A minimal length-prefixed RPC over one TCP socket, written plainly: each
 * message is a 4-byte big-endian payload length, a 4-byte request id, then the
 * payload. The server echoes every request. It is the reference for what one
 * Node connection can carry with nothing else in the way.
 */

/** An echo server; `handled` counts requests answered. */
export function createEchoServer(): { server: net.Server; handled(): number } {
  let handled = 0;
  const server = net.createServer({ noDelay: true }, (socket) => {
    const read = messageReader((id, payload) => {
      handled++;
      socket.write(encodeMessage(id, payload));
    });
    // Answers to one received chunk leave in one write.
    socket.on("data", (chunk: Buffer) => {
      socket.cork();
      read(chunk);
      socket.uncork();
    });
    socket.on("error", () => socket.destroy());
  });
  return { server, handled: () => handled };
}

/** A promise-based client: any number of requests in flight on one socket. */
export class RawRpcClient {
  #socket: net.Socket;
  #replies: RpcReplies;
  #corked = false;
  #uncork = (): void => {
    this.#corked = false;
    this.#socket.uncork();
  };

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    this.#replies = new RpcReplies(socket, "raw rpc", (id, payload) => {
      // Requests made in one tick leave in one write.
      if (!this.#corked) {
        this.#corked = true;
        socket.cork();
        process.nextTick(this.#uncork);
      }
      socket.write(encodeMessage(id, payload));
    });
  }

  static async connect(host: string, port: number): Promise<RawRpcClient> {
    return new RawRpcClient(await connectNoDelay(host, port));
  }

  request(payload: Uint8Array): Promise<Buffer> {
    return this.#replies.request(payload);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#socket.once("close", () => resolve());
      this.#socket.end();
    });
  }
}
