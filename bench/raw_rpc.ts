import net from "node:net";

/**
 * A minimal length-prefixed RPC over one TCP socket, written plainly: each
 * message is a 4-byte big-endian payload length, a 4-byte request id, then the
 * payload. The server echoes every request. It is the reference for what one
 * Node connection can carry with nothing else in the way.
 */

const HEADER_SIZE = 8;

/** Encodes one message. */
export function encodeMessage(id: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER_SIZE + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.writeUInt32BE(id, 4);
  out.set(payload, HEADER_SIZE);
  return out;
}

/** Returns a `data` handler that splits the byte stream into messages. */
export function messageReader(onMessage: (id: number, payload: Buffer) => void): (chunk: Buffer) => void {
  let rest: Buffer = Buffer.alloc(0);
  return (chunk) => {
    const buf = rest.length === 0 ? chunk : Buffer.concat([rest, chunk]);
    let off = 0;
    while (buf.length - off >= HEADER_SIZE) {
      const len = buf.readUInt32BE(off);
      if (buf.length - off - HEADER_SIZE < len) break;
      onMessage(buf.readUInt32BE(off + 4), buf.subarray(off + HEADER_SIZE, off + HEADER_SIZE + len));
      off += HEADER_SIZE + len;
    }
    rest = buf.subarray(off);
  };
}

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

interface Waiter {
  resolve(payload: Buffer): void;
  reject(err: Error): void;
}

/** A promise-based client: any number of requests in flight on one socket. */
export class RawRpcClient {
  #socket: net.Socket;
  #pending = new Map<number, Waiter>();
  #nextId = 1;
  #corked = false;
  #uncork = (): void => {
    this.#corked = false;
    this.#socket.uncork();
  };

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on(
      "data",
      messageReader((id, payload) => {
        const w = this.#pending.get(id);
        if (w) {
          this.#pending.delete(id);
          w.resolve(payload);
        }
      }),
    );
    socket.on("error", () => {});
    socket.on("close", () => {
      for (const w of this.#pending.values()) w.reject(new Error("raw rpc: connection closed"));
      this.#pending.clear();
    });
  }

  static connect(host: string, port: number): Promise<RawRpcClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port, noDelay: true });
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(new RawRpcClient(socket));
      });
    });
  }

  request(payload: Uint8Array): Promise<Buffer> {
    const id = this.#nextId;
    this.#nextId = (id + 1) >>> 0 || 1;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      // Requests made in one tick leave in one write.
      if (!this.#corked) {
        this.#corked = true;
        this.#socket.cork();
        process.nextTick(this.#uncork);
      }
      this.#socket.write(encodeMessage(id, payload));
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#socket.once("close", () => resolve());
      this.#socket.end();
    });
  }
}
