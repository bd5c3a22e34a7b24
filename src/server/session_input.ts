import { ProtocolError } from "../errors.ts";
import { WireError } from "../protocol/constants.ts";
import type { FrameDecoder } from "../protocol/frame_decoder.ts";
import { keyFingerprint } from "../protocol/keys.ts";
import { RecordOpener, type CipherName } from "../protocol/record_layer.ts";
import { CLIENT_AUTH_SIZE, verifyClientAuth } from "../protocol/sealed_handshake.ts";
import type { FlowInput } from "./session_flow.ts";

/** Plaintext of the records one read completed; shared, since a read is handled to its end before the next. */
const OPENED: Buffer[] = [];

/**
 * Largest frame payload a stranger's session may send (a key the server does
 * not trust, under `access: "keys"`): what pairing needs, and PINGs. So a
 * stranger cannot make the device open megabytes for each refusal it gets.
 */
export const STRANGER_MAX_FRAME = 4096;
/** What a stranger's session may send in all, frames' bytes (pairing takes a few hundred). */
export const STRANGER_MAX_BYTES = 64 * 1024;

/** What the server makes of a proven key: trusted, a stranger it lets pair, or one whose session it ended. */
export type KeyVerdict = "trusted" | "stranger" | "ended";

/** The server's view of a session's key: once proven (with side effects: vouching, refusals), and whether it is trusted now. Shared by every session. */
export interface KeyCheck<S = unknown> {
  keyProven(session: S): KeyVerdict;
  keyTrusted(session: S): boolean;
}

/**
 * A sealed session's input, between the socket and the frame decoder
 * (protocol v2, docs/protocol.md §2.5): records are opened as they complete
 * (only authenticated bytes go on), and the client's proof of its key is
 * taken from the front of the first one before any frame.
 */
export class SealedInput extends RecordOpener implements FlowInput {
  #decoder: FrameDecoder;
  /** The handshake's transcript hash: the client's proof is checked against it, and a pairing proof is bound to it. */
  readonly transcript: Buffer;
  #proven = false;
  /** The start of a proof that arrived split across records. */
  #proof: Buffer | null = null;
  /** The fingerprint (`SHA256:…`) of the client's Ed25519 key, once proven. */
  fingerprint = "";

  #keys: KeyCheck;
  #session: unknown;
  /** While the key is a stranger's: the frames' bytes it sent; -1 otherwise. */
  #strangerBytes = -1;

  /** `keys.keyProven(session)` runs once the client's key is proven, before any frame of its is decoded. */
  /** `maxPlaintext`: the largest record after the first that this side announced it opens (§2.5). */
  constructor(cipher: CipherName, key: Uint8Array, transcript: Buffer, decoder: FrameDecoder, keys: KeyCheck = TRUSTED, session: unknown = null, maxPlaintext?: number) {
    super(cipher, key, { maxPlaintext });
    this.transcript = transcript;
    this.#decoder = decoder;
    this.#keys = keys;
    this.#session = session;
  }

  /** FlowInput: bytes held anywhere on the way in — a record in progress, a proof in parts, frames in the decoder. */
  override get buffered(): number {
    return super.buffered + (this.#proof === null ? 0 : this.#proof.length) + this.#decoder.buffered;
  }

  /** Nothing of the peer's held: no record, proof or frame in progress. */
  get idle(): boolean {
    return super.buffered === 0 && this.#proof === null && this.#decoder.idle;
  }

  get midFrame(): boolean {
    return this.#decoder.midFrame;
  }

  get frameRemaining(): number {
    return this.#decoder.frameRemaining;
  }

  /** Bytes the peer still owes to finish the record it began. */
  get recordRemaining(): number {
    return this.remaining;
  }

  pause(): void {
    this.#decoder.pause();
  }

  resume(): void {
    this.#decoder.resume();
  }

  /**
   * Opens what `chunk` completes and passes the frames' bytes to the decoder.
   * Throws `ProtocolError` (a `RecordError`, or a proof that does not
   * verify); the authentic records before the fault have been passed on.
   */
  /** Opens `chunk` into the decoder (see `open`). */
  take(chunk: Buffer): void {
    const decoder = this.#decoder;
    let failure: unknown = null;
    try {
      this.push(chunk, OPENED);
    } catch (err) {
      failure = err;
    }
    try {
      for (let i = 0; i < OPENED.length; i++) {
        const proven = this.#proven;
        const plain = proven ? OPENED[i]! : this.#takeProof(OPENED[i]!);
        if (!proven && this.#proven && this.#verdict() === "ended") return; // nothing more of its is read
        if (this.#strangerBytes >= 0 && (this.#strangerBytes += plain.length) > STRANGER_MAX_BYTES && this.#stillStranger()) {
          throw denied(`more than ${STRANGER_MAX_BYTES} bytes`);
        }
        if (plain.length > 0) decoder.push(plain);
      }
    } finally {
      OPENED.length = 0;
    }
    if (failure !== null) throw failure;
  }

  #verdict(): KeyVerdict {
    const verdict = this.#keys.keyProven(this.#session);
    if (verdict === "stranger") {
      this.#strangerBytes = 0;
      this.#decoder.limit(STRANGER_MAX_FRAME, (len) => (this.#stillStranger() ? denied(`a frame of ${len} bytes (at most ${STRANGER_MAX_FRAME})`) : null));
    }
    return verdict;
  }

  /** At a stranger's bound: a key trusted since (paired, `perilink trust`) lifts the bounds; true when it is still a stranger's. */
  #stillStranger(): boolean {
    if (!this.#keys.keyTrusted(this.#session)) return true;
    this.#strangerBytes = -1;
    this.#decoder.unlimit();
    return false;
  }

  /** Takes the proof from the front of the plaintext; returns what follows it. */
  #takeProof(plain: Buffer): Buffer {
    if (plain.length === 0) return plain;
    const have = this.#proof === null ? plain : Buffer.concat([this.#proof, plain]);
    if (have.length < CLIENT_AUTH_SIZE) {
      this.#proof = have;
      return EMPTY;
    }
    this.#proof = null;
    this.fingerprint = keyFingerprint(verifyClientAuth(have.subarray(0, CLIENT_AUTH_SIZE), this.transcript));
    this.#proven = true;
    return have.subarray(CLIENT_AUTH_SIZE);
  }
}

const EMPTY = Buffer.alloc(0);
const TRUSTED: KeyCheck = { keyProven: () => "trusted", keyTrusted: () => true };

function denied(what: string): ProtocolError {
  return new ProtocolError(WireError.AccessDenied, `Cannot accept ${what} from a key this server does not trust: pair it first (perilink pair), or trust it on the device (perilink trust add)`, "PERILINK_ACCESS_DENIED");
}
