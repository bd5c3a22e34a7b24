import type { WritableSink } from "./frame_writer.ts";
import { RecordSealer, type CipherName, type RecordOptions } from "./record_layer.ts";

/**
 * A frame writer's sink that seals what it is given (protocol v2): each
 * write — one per write batch, since the writer packs a turn's frames into
 * one — becomes as few records as MAX_RECORD_PLAINTEXT allows, written to
 * the socket underneath. The writer's bytes are copied into the records, so
 * it may reuse its slab at once. It is its direction's sealer itself: one
 * object per session, not two.
 */
export class SealingSink extends RecordSealer implements WritableSink {
  #sink: WritableSink;

  constructor(sink: WritableSink, cipher: CipherName, key: Uint8Array, options: RecordOptions = {}) {
    super(cipher, key, options);
    this.#sink = sink;
  }

  write(chunk: Uint8Array): boolean {
    ONE[0] = chunk;
    const records = this.seal(ONE, chunk.byteLength, false);
    ONE[0] = EMPTY;
    let ok = true;
    for (let i = 0; i < records.length; i++) ok = this.#sink.write(records[i]!);
    return ok;
  }

  writev(pieces: readonly Uint8Array[], total: number): boolean {
    const records = this.seal(pieces, total, false);
    const sink = this.#sink;
    let ok = true;
    sink.cork(); // a record's header, ciphertext and tag: one system call, not three
    for (let i = 0; i < records.length; i++) ok = sink.write(records[i]!);
    sink.uncork();
    return ok;
  }

  cork(): void {
    this.#sink.cork();
  }

  uncork(): void {
    this.#sink.uncork();
  }

  get destroyed(): boolean {
    return this.#sink.destroyed;
  }

  get writableEnded(): boolean {
    return this.#sink.writableEnded;
  }
}

const EMPTY = new Uint8Array(0);
/** The one piece of a write, for seal(): shared, since a write is sealed before the next begins. */
const ONE: Uint8Array[] = [EMPTY];
