import { createCipheriv, createDecipheriv, createSecretKey, hkdfSync, type KeyObject } from "node:crypto";
import { RecordError } from "../errors.ts";

/**
 * Sealed records (protocol v2, docs/protocol.md §2.5): after the handshake,
 * each direction is a sequence of AEAD records, one per write batch (at most
 * `MAX_RECORD_PLAINTEXT` bytes of frames each, frames may span records):
 *
 *   length u32 (ciphertext + tag) ‖ ciphertext ‖ tag (16)
 *
 * The 4-byte length is the AEAD's associated data. Nonces are never sent:
 * the n-th record of a direction is sealed with nonce n (4 zero bytes, then
 * n as u64 big-endian), so a record replayed, reordered, dropped or changed
 * fails authentication and ends the session. Every `REKEY_EVERY` records
 * both sides replace the direction's key with HKDF of itself (no message
 * needed), so no key seals more than that many records.
 */

export type CipherName = "chacha20-poly1305" | "aes-256-gcm";

/** The cipher bits a client offers and a server picks one of (the client hello's `ciphers`). */
export const CIPHER_BITS: Readonly<Record<CipherName, number>> = { "chacha20-poly1305": 1, "aes-256-gcm": 2 };

export const RECORD_HEADER_SIZE = 4;
export const TAG_SIZE = 16;
/** Largest plaintext of one record (as TLS 1.3's): the most a receiver buffers before it can authenticate. */
export const MAX_RECORD_PLAINTEXT = 16 * 1024;
/**
 * Largest plaintext of a record to a receiver that announced large records
 * (Feature.LargeRecords, §2.5), after each direction's first record: a
 * 64 KiB DATA frame and its header fit in one, and a record costs a fixed
 * few microseconds whatever its size, so bulk bytes are sealed at a
 * quarter of the per-record cost. The first record stays within
 * MAX_RECORD_PLAINTEXT: before the client's proof, a server holds no more.
 */
export const LARGE_RECORD_PLAINTEXT = 68 * 1024;
/** Records up to this size are sealed into one buffer (one socket write); larger ones go out in parts. */
const COPY_AT_MOST = 4096;
/** Records sealed under one key before both sides move to the next. */
export const REKEY_EVERY = 2 ** 20;
const REKEY_INFO = Buffer.from("perilink/2 rekey", "ascii");

/** The ciphers this runtime provides, preferred first (ChaCha20-Poly1305: fast in software, as on a Raspberry Pi). */
export function supportedCiphers(): CipherName[] {
  return (["chacha20-poly1305", "aes-256-gcm"] as const).filter(canUse);
}

function canUse(cipher: CipherName): boolean {
  try {
    const c = createCipheriv(cipher, Buffer.alloc(32), Buffer.alloc(12), { authTagLength: TAG_SIZE } as never);
    c.final();
    return true;
  } catch {
    return false;
  }
}

/** The nonce of the record being sealed or opened: shared, since createCipheriv copies its IV and records are handled one at a time. */
const NONCE = Buffer.alloc(12);

/** A direction's cipher, key and record counter: what sealer and opener share. */
abstract class RecordDirection {
  readonly cipher: CipherName;
  /** A KeyObject: the key's bytes live outside the JS heap, and no view keeps the handshake's output alive. */
  #key: KeyObject;
  #count = 0;
  #rekeyEvery: number;

  constructor(cipher: CipherName, key: Uint8Array, rekeyEvery: number) {
    if (key.length !== 32) throw new RangeError("a record key is 32 bytes");
    if (!Number.isInteger(rekeyEvery) || rekeyEvery < 1) throw new RangeError("rekeyEvery must be a positive integer");
    this.cipher = cipher;
    this.#key = createSecretKey(key);
    this.#rekeyEvery = rekeyEvery;
  }

  /** Records sealed (or opened) so far. */
  get records(): number {
    return this.#count;
  }

  /** The key for the next record, its nonce written to NONCE; the key moves on every `rekeyEvery` records. */
  protected nextKey(): KeyObject {
    const n = this.#count;
    if (n >= Number.MAX_SAFE_INTEGER) throw new RecordError("Cannot seal another record: the session's record counter is used up; open a new session");
    if (n > 0 && n % this.#rekeyEvery === 0) this.#key = createSecretKey(Buffer.from(hkdfSync("sha256", this.#key, EMPTY, REKEY_INFO, 32)));
    NONCE.writeUInt32BE(Math.floor(n / 0x1_0000_0000), 4);
    NONCE.writeUInt32BE(n >>> 0, 8);
    this.#count = n + 1;
    return this.#key;
  }
}

/** Options both ends of a direction must agree on; the defaults are the protocol's. */
export interface RecordOptions {
  /** Records under one key (`REKEY_EVERY`; tests make it small). */
  rekeyEvery?: number;
  /**
   * Largest plaintext of a record after the direction's first (which is
   * never past `MAX_RECORD_PLAINTEXT`): what the sealer seals, what the
   * opener accepts. Default `MAX_RECORD_PLAINTEXT`; `LARGE_RECORD_PLAINTEXT`
   * when the receiver announced large records.
   */
  maxPlaintext?: number;
}

/** Seals one direction's plaintext into records. */
export class RecordSealer extends RecordDirection {
  #maxPlaintext: number;

  constructor(cipher: CipherName, key: Uint8Array, options: RecordOptions = {}) {
    super(cipher, key, options.rekeyEvery ?? REKEY_EVERY);
    this.#maxPlaintext = options.maxPlaintext ?? MAX_RECORD_PLAINTEXT;
  }

  /**
   * The records for `pieces` (in order, `total` bytes in all), ready to
   * write in order: as few as `MAX_RECORD_PLAINTEXT` allows, one for a small
   * batch. With `whole` (the default) each buffer is one record.
   */
  seal(pieces: readonly Uint8Array[], total: number, whole = true): Buffer[] {
    const out: Buffer[] = [];
    if (total === 0) return out;
    let i = 0;
    let offset = 0;
    let left = total;
    do {
      const size = Math.min(left, this.records === 0 ? Math.min(MAX_RECORD_PLAINTEXT, this.#maxPlaintext) : this.#maxPlaintext);
      const key = this.nextKey();
      const cipher = createCipheriv(this.cipher, key, NONCE, { authTagLength: TAG_SIZE } as never) as ReturnType<typeof createCipheriv> & { setAAD(b: Buffer): void; getAuthTag(): Buffer };
      // A small record is one buffer (one socket write); a large one, unless `whole`, is its
      // header, ciphertext and tag as they come, so the ciphertext is never copied.
      const copy = whole || size <= COPY_AT_MOST;
      const record = Buffer.allocUnsafe(copy ? RECORD_HEADER_SIZE + size + TAG_SIZE : RECORD_HEADER_SIZE);
      record.writeUInt32BE(size + TAG_SIZE, 0);
      cipher.setAAD(record.subarray(0, RECORD_HEADER_SIZE));
      if (!copy) out.push(record);
      let at = RECORD_HEADER_SIZE;
      let need = size;
      while (need > 0) {
        const piece = pieces[i]!;
        const take = Math.min(need, piece.length - offset);
        const ct = cipher.update(piece.subarray(offset, offset + take));
        if (copy) at += ct.copy(record, at);
        else out.push(ct);
        need -= take;
        offset += take;
        if (offset === piece.length) {
          i++;
          offset = 0;
        }
      }
      const last = cipher.final();
      if (copy) {
        at += last.copy(record, at);
        cipher.getAuthTag().copy(record, at);
        out.push(record);
      } else {
        if (last.length > 0) out.push(last);
        out.push(cipher.getAuthTag());
      }
      left -= size;
    } while (left > 0);
    return out;
  }
}

/**
 * Opens one direction's records as bytes arrive, however they are split.
 * Only whole, authenticated records come out: the frames inside are never
 * seen before their record has been checked. At most one record's bytes are
 * held (`buffered`).
 */
export class RecordOpener extends RecordDirection {
  #maxPlaintext: number;
  /**
   * The record in progress: one buffer of its whole size once its header is
   * known (however many reads bring it, it is one allocation, never a buffer
   * per read), or of the header's 4 bytes before that.
   */
  #partial: Buffer | null = null;
  #heldBytes = 0;
  /** Bytes of the record in progress, header included, once its header is known. */
  #want = 0;

  constructor(cipher: CipherName, key: Uint8Array, options: RecordOptions = {}) {
    super(cipher, key, options.rekeyEvery ?? REKEY_EVERY);
    this.#maxPlaintext = options.maxPlaintext ?? MAX_RECORD_PLAINTEXT;
  }

  /** Bytes held of a record not yet whole. */
  get buffered(): number {
    return this.#heldBytes;
  }

  /** Bytes allocated for the record in progress (at most 16 KiB, or four times what arrived); 0 when none is in progress. */
  get allocated(): number {
    return this.#heldBytes === 0 ? 0 : this.#partial!.length;
  }

  /** Bytes still missing from the record in progress (its header first); 0 when none is in progress. */
  get remaining(): number {
    if (this.#heldBytes === 0) return 0;
    return this.#want === 0 ? RECORD_HEADER_SIZE - this.#heldBytes : this.#want - this.#heldBytes;
  }

  /**
   * Appends to `out` the plaintext of every record `chunk` completes, in
   * order. Throws `RecordError` at the first record that does not open; the
   * records before it were authentic and are in `out`.
   */
  push(chunk: Buffer, out: Buffer[]): void {
    let data = chunk;
    if (this.#heldBytes > 0) {
      data = this.#fill(data);
      if (this.#heldBytes < this.#want || this.#want === 0) return;
      const record = this.#partial!;
      this.#partial = null;
      this.#heldBytes = 0;
      this.#want = 0;
      out.push(this.#open(record));
      giveBack(record);
    }
    // `data` starts at a record: records that arrived whole are opened where they lie.
    let at = 0;
    while (data.length - at >= RECORD_HEADER_SIZE) {
      const size = this.#recordSize(data, at);
      if (data.length - at < size) break;
      out.push(this.#open(data.subarray(at, at + size)));
      at += size;
    }
    if (at < data.length) {
      // The start of a record: copied, so that it does not keep the whole chunk alive.
      this.#partial = Buffer.allocUnsafeSlow(RECORD_HEADER_SIZE);
      this.#heldBytes = 0;
      this.#want = 0;
      this.#fill(data.subarray(at));
    }
  }

  /** Copies what `data` brings of the record in progress; returns what follows it. */
  #fill(data: Buffer): Buffer {
    let at = 0;
    if (this.#want === 0) {
      const take = Math.min(RECORD_HEADER_SIZE - this.#heldBytes, data.length);
      data.copy(this.#partial!, this.#heldBytes, 0, take);
      this.#heldBytes += take;
      at = take;
      if (this.#heldBytes < RECORD_HEADER_SIZE) return EMPTY;
      this.#want = this.#recordSize(this.#partial!, 0);
    }
    const take = Math.min(this.#want - this.#heldBytes, data.length - at);
    if (this.#heldBytes + take > this.#partial!.length) this.#grow(this.#heldBytes + take);
    data.copy(this.#partial!, this.#heldBytes, at, at + take);
    this.#heldBytes += take;
    return data.subarray(at + take);
  }

  /**
   * Room for `need` bytes of the record in progress. A record of up to 16 KiB
   * gets its whole size at once, as before large records; a larger one gets
   * one of the process's spare buffers when one is free (no more memory),
   * else at most four times what has arrived: so a peer that announces
   * 68 KiB and sends 4 bytes makes the receiver allocate 16 KiB, no more than
   * a small record does, beyond the 4 spares of the whole process.
   */
  #grow(need: number): void {
    const old = this.#partial!;
    const spare = this.#want > SMALL_RECORD && this.#want <= LARGE_RECORD ? SPARE.pop() : undefined; // already allocated: no more memory
    const size = spare ? this.#want : Math.min(this.#want, Math.max(SMALL_RECORD, 4 * need, 2 * old.length));
    const grown = spare ? spare.subarray(0, size) : size === this.#want ? recordBuffer(size) : Buffer.allocUnsafeSlow(size);
    old.copy(grown, 0, 0, this.#heldBytes);
    this.#partial = grown;
  }

  /** The peer ended its side: a record it began and did not finish was cut. */
  end(): void {
    if (this.#heldBytes > 0) throw new RecordError(`Cannot open record ${this.records}: the connection ended ${this.#heldBytes} bytes into it (cut)`);
  }

  /** The whole size of the record whose header is at `at`; a length out of bounds is a `RecordError` at once. */
  #recordSize(b: Buffer, at: number): number {
    const length = b.readUInt32BE(at);
    const most = this.records === 0 ? Math.min(MAX_RECORD_PLAINTEXT, this.#maxPlaintext) : this.#maxPlaintext;
    if (length < TAG_SIZE || length - TAG_SIZE > most) {
      throw new RecordError(`Cannot open record ${this.records}: its length ${length} is outside ${TAG_SIZE}..${most + TAG_SIZE}`);
    }
    return RECORD_HEADER_SIZE + length;
  }

  #open(record: Buffer): Buffer {
    const n = this.records;
    const key = this.nextKey();
    const end = record.length - TAG_SIZE;
    try {
      const d = createDecipheriv(this.cipher, key, NONCE, { authTagLength: TAG_SIZE } as never) as ReturnType<typeof createDecipheriv> & {
        setAAD(b: Buffer): void;
        setAuthTag(b: Buffer): void;
      };
      d.setAAD(record.subarray(0, RECORD_HEADER_SIZE));
      d.setAuthTag(record.subarray(end));
      const plain = d.update(record.subarray(RECORD_HEADER_SIZE, end));
      const last = d.final();
      return last.length === 0 ? plain : Buffer.concat([plain, last]);
    } catch {
      throw new RecordError(`Cannot open record ${n}: it failed authentication (changed, replayed, reordered or from another session)`);
    }
  }
}

const EMPTY = Buffer.alloc(0);
/** A whole record of the default size, and of the large size, header and tag included. */
const SMALL_RECORD = RECORD_HEADER_SIZE + MAX_RECORD_PLAINTEXT + TAG_SIZE;
const LARGE_RECORD = RECORD_HEADER_SIZE + LARGE_RECORD_PLAINTEXT + TAG_SIZE;
/**
 * Buffers for large records that arrived in parts, given back once opened
 * (the plaintext is a copy, so nothing refers to them): a bulk transfer
 * reuses a few instead of allocating 68 KiB for each record, most of what it
 * made the collector do. At most SPARE_MOST, for the whole process.
 */
const SPARE: Buffer[] = [];
const SPARE_MOST = 4;

/** A buffer for a record of `size` bytes that arrives in parts: a spare one for a large record. */
function recordBuffer(size: number): Buffer {
  if (size <= SMALL_RECORD || size > LARGE_RECORD) return Buffer.allocUnsafeSlow(size);
  return (SPARE.pop() ?? Buffer.allocUnsafeSlow(LARGE_RECORD)).subarray(0, size);
}

/** Keeps the buffer of an opened record for the next one, when it is a large one's and few are kept. */
function giveBack(record: Buffer): void {
  if (record.buffer.byteLength === LARGE_RECORD && record.byteOffset === 0 && SPARE.length < SPARE_MOST) SPARE.push(Buffer.from(record.buffer));
}
