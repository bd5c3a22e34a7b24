import net from "node:net";
import { messageReader } from "./rpc_frames.ts";

interface Waiter {
  resolve(payload: Buffer): void;
  reject(err: Error): void;
}

/**
 * The client side of the length-prefixed echo RPC (bench/lib/raw_rpc.ts): request
 * ids, the table of answers awaited on one socket, and their settling — an
 * answer resolves its request, the socket's close rejects every one still
 * open. How a request reaches the socket is the client's (`send`).
 */
export class RpcReplies {
  #pending = new Map<number, Waiter>();
  #nextId = 1;
  #send: (id: number, payload: Uint8Array) => void;

  /** `name` begins the message of the error a request gets when the socket closes first. */
  constructor(socket: net.Socket, name: string, send: (id: number, payload: Uint8Array) => void) {
    this.#send = send;
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
      for (const w of this.#pending.values()) w.reject(new Error(`${name}: connection closed`));
      this.#pending.clear();
    });
  }

  /** Sends `payload` under the next id; resolves with the answer's payload. */
  request(payload: Uint8Array): Promise<Buffer> {
    const id = this.#nextId;
    this.#nextId = (id + 1) >>> 0 || 1;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#send(id, payload);
    });
  }
}

/** A connected TCP socket with Nagle off, or the connect error. */
export function connectNoDelay(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, noDelay: true });
    socket.once("error", reject);
    socket.once("connect", () => {
      socket.off("error", reject);
      resolve(socket);
    });
  });
}
