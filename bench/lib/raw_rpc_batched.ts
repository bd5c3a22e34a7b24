import net from "node:net";
import { HEADER_SIZE, messageReader } from "./rpc_frames.ts";
import { connectNoDelay, RpcReplies } from "./rpc_replies.ts";

/**
 * The length-prefixed RPC of raw_rpc.ts (4-byte big-endian payload length,
 * 4-byte request id, payload), with every write of an event-loop turn packed
 * into one buffer and handed to the socket in one `write()` from
 * `setImmediate`, on both sides — the batching perilink's FrameWriter does,
 * with nothing else. It is the practical limit for request/response over one
 * Node connection: one syscall per turn each way, no per-message framing
 * objects.
 */

const SLAB_SIZE = 64 * 1024;
/** Below this much room a fresh slab is taken after a flush. */
const MIN_ROOM = 512;

/**
 * Packs messages into a slab and writes whatever one turn produced with one
 * `write()`. Bytes handed to the socket are never overwritten: a nearly used
 * slab is replaced, and the socket releases the old one once written.
 */
export class BatchWriter {
  #socket: net.Socket;
  #slab = Buffer.allocUnsafe(SLAB_SIZE);
  #start = 0;
  #pos = 0;
  #scheduled = false;
  #flushBound = (): void => this.flush();

  constructor(socket: net.Socket) {
    this.#socket = socket;
  }

  /** Queues one message for the end of this turn. */
  message(id: number, payload: Uint8Array): void {
    const need = HEADER_SIZE + payload.byteLength;
    if (need > SLAB_SIZE >>> 1) {
      // Large: flush what is packed, then the message in two writes under cork.
      const header = Buffer.allocUnsafe(HEADER_SIZE);
      header.writeUInt32BE(payload.byteLength, 0);
      header.writeUInt32BE(id, 4);
      this.#socket.cork();
      this.flush();
      this.#socket.write(header);
      this.#socket.write(payload);
      this.#socket.uncork();
      return;
    }
    if (this.#slab.length - this.#pos < need) this.#newSlab();
    const slab = this.#slab;
    const p = this.#pos;
    slab.writeUInt32BE(payload.byteLength, p);
    slab.writeUInt32BE(id, p + 4);
    slab.set(payload, p + HEADER_SIZE);
    this.#pos = p + need;
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#flushBound);
    }
  }

  /** Hands every packed byte to the socket now. */
  flush(): void {
    this.#scheduled = false;
    if (this.#pos === this.#start || this.#socket.destroyed) return;
    this.#socket.write(this.#slab.subarray(this.#start, this.#pos));
    this.#start = this.#pos;
    if (this.#slab.length - this.#pos < MIN_ROOM) this.#newSlab();
  }

  #newSlab(): void {
    if (this.#pos !== this.#start && !this.#socket.destroyed) this.#socket.write(this.#slab.subarray(this.#start, this.#pos));
    this.#slab = Buffer.allocUnsafe(SLAB_SIZE);
    this.#start = 0;
    this.#pos = 0;
  }
}

/**
 * Echoes every request on one connected socket (TCP, or TLS over it), the
 * answers of one turn in one write; `onAnswer` runs once per request.
 */
export function serveBatchedEcho(socket: net.Socket, onAnswer: () => void): void {
  const out = new BatchWriter(socket);
  socket.on(
    "data",
    messageReader((id, payload) => {
      onAnswer();
      out.message(id, payload);
    }),
  );
  socket.on("error", () => socket.destroy());
}

/** An echo server whose answers leave once per turn; `handled` counts requests answered. */
export function createBatchedEchoServer(): { server: net.Server; handled(): number } {
  let handled = 0;
  const server = net.createServer({ noDelay: true }, (socket) => serveBatchedEcho(socket, () => handled++));
  return { server, handled: () => handled };
}

/** A promise-based client whose requests of one turn leave in one write. */
export class BatchedRpcClient {
  #out: BatchWriter;
  #socket: net.Socket;
  #replies: RpcReplies;

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    const out = new BatchWriter(socket);
    this.#out = out;
    this.#replies = new RpcReplies(socket, "batched rpc", (id, payload) => out.message(id, payload));
  }

  static async connect(host: string, port: number): Promise<BatchedRpcClient> {
    return new BatchedRpcClient(await connectNoDelay(host, port));
  }

  /** A client on a socket connected already (e.g. a TLS socket after its handshake). */
  static over(socket: net.Socket): BatchedRpcClient {
    return new BatchedRpcClient(socket);
  }

  request(payload: Uint8Array): Promise<Buffer> {
    return this.#replies.request(payload);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#socket.once("close", () => resolve());
      this.#out.flush();
      this.#socket.end();
    });
  }
}
