/** The part of a socket an output gate watches. */
interface GatedSocket {
  readonly destroyed: boolean;
  readonly writableLength: number;
  on(event: "drain" | "close", listener: () => void): unknown;
  off(event: "drain" | "close", listener: () => void): unknown;
}

/**
 * Whether a body sender may write on (docs/protocol.md §4.7): null while the
 * socket holds at most `limit` unsent bytes (with what the frame writer has
 * packed, `pending()`), else one promise, shared by every sender of the
 * session, that resolves at the socket's next 'drain' or its close.
 */
export class OutputGate {
  #socket: GatedSocket;
  #pending: () => number;
  #limit: number;
  #drained: Promise<void> | null = null;

  constructor(socket: GatedSocket, pending: () => number, limit: number) {
    this.#socket = socket;
    this.#pending = pending;
    this.#limit = limit;
  }

  writable(): Promise<void> | null {
    const socket = this.#socket;
    if (socket.destroyed || socket.writableLength + this.#pending() <= this.#limit) return null;
    return (this.#drained ??= new Promise<void>((resolve) => {
      const done = (): void => {
        socket.off("drain", done);
        socket.off("close", done);
        this.#drained = null;
        resolve();
      };
      socket.on("drain", done);
      socket.on("close", done);
    }));
  }
}
