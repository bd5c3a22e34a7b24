import type net from "node:net";
import type { FrameDecoder } from "../protocol/frame_decoder.ts";
import type { FrameWriter } from "../protocol/frame_writer.ts";
import type { BudgetHolder, BufferBudget } from "./buffer_budget.ts";
import type { ServerLimits } from "./limits.ts";

/** Least progress, per `writeTimeoutMs`, of a frame in progress (see `#checkStall`). */
const MIN_PROGRESS_BYTES = 16 * 1024;

/**
 * The input side as flow control sees it: the frame decoder, and for a
 * sealed session the record layer before it (a record in progress is held,
 * and owed, like a frame in progress).
 */
export interface FlowInput extends Pick<FrameDecoder, "buffered" | "midFrame" | "frameRemaining" | "pause" | "resume"> {
  /** Bytes the peer still owes to finish a record it began (0: none). */
  readonly recordRemaining?: number;
}

/** What a session's flow control reads and reports to. */
export interface FlowSession {
  readonly socket: net.Socket;
  readonly writer: FrameWriter;
  readonly limits: ServerLimits;
  readonly budget: BufferBudget;
  /** The input (frame decoder, records), once the handshake is done. */
  decoder(): FlowInput | null;
  /** Handlers running (requests and async message handlers), and how many of them were already answered (cancelled). */
  running(): number;
  /** Bytes that running handlers keep (message payloads): charged to the buffer budget with the rest. */
  pinnedBytes?(): number;
  abandoned(): number;
  closed(): boolean;
  /** Held bytes decoded on resume were bad. */
  resumeFailed(err: unknown): void;
  /** The peer let the session make no progress for `writeTimeoutMs`. */
  stalled(reason: "write_timeout" | "read_timeout", heldBytes: number): void;
}

/**
 * Whether one session reads on (S3, docs/protocol.md §4.5), in one place.
 * Reading stops — decoder and socket paused — while:
 *
 * - more than `maxInflightPerSession` handlers that owe an answer run (or more
 *   than twice that run at all, counting cancelled ones);
 * - the session's unsent output is over `maxSessionOutputBytes`;
 * - the server is over `maxBufferedBytes` and this session, not in the middle
 *   of a frame, holds more than its share;
 * - the decoder asked the budget for memory for a frame in progress and was
 *   refused (it asks again when woken).
 *
 * And whether paused or not, a peer that owes progress for `writeTimeoutMs` is
 * reported `stalled`: output queued that it does not read, or a frame it began
 * and does not go on sending at a pace that finishes it (each period at least
 * an eighth of what the frame still lacks, or 16 KiB).
 */
export class SessionFlow implements BudgetHolder {
  #s: FlowSession;
  #paused = false;
  /** Bytes charged to the server's buffer budget. */
  #charged = 0;
  #waitsForBudget = false;
  #growthRefused = false;
  /** The frame in progress asked the budget for memory (and may hold its overdraft). */
  #reserved = false;
  #stallTimer: ReturnType<typeof setTimeout> | null = null;
  #sentAtStall = 0;
  #readAtStall = 0;
  /** Made on the first watch: most sessions never need it. */
  #checkStallBound: (() => void) | null = null;

  constructor(session: FlowSession) {
    this.#s = session;
  }

  /** Looks again whether to read: after a read, a write, an answer, a drain. */
  update(): void {
    const s = this.#s;
    if (s.closed()) return;
    const { socket, limits, budget } = s;
    const decoder = s.decoder();
    const unsent = socket.writableLength + s.writer.pending;
    const held = unsent + (decoder === null ? 0 : decoder.buffered) + (s.pinnedBytes?.() ?? 0);
    budget.charge(this.#charged, held);
    this.#charged = held;
    const midFrame = decoder !== null && decoder.midFrame;
    if (!midFrame) budget.frameDone(this);
    // A frame in progress asks the budget for its memory itself (reserve); pausing it would
    // only keep it from finishing and freeing what it holds.
    this.#waitsForBudget = !midFrame && budget.mustWait(this, held);
    // A client that keeps to the announced maxInflight never trips the first test, so its
    // CANCEL and PING frames always get through; one that does not is simply not read.
    const running = s.running();
    const blocked =
      running - s.abandoned() > limits.maxInflightPerSession ||
      running > 2 * limits.maxInflightPerSession ||
      unsent > limits.maxSessionOutputBytes ||
      this.#waitsForBudget ||
      this.#growthRefused;
    if (blocked && !this.#paused) {
      this.#paused = true;
      decoder?.pause();
      socket.pause();
    } else if (!blocked && this.#paused) {
      this.#paused = false;
      socket.resume();
      try {
        decoder?.resume();
      } catch (err) {
        s.resumeFailed(err);
        return;
      }
      if (this.#growthRefused && !this.#paused) {
        // The held bytes asked for memory again and were refused again: wait on.
        this.#paused = true;
        socket.pause();
      }
    }
    this.#watchStall();
  }

  /** FrameSink's `reserve`: memory for a frame arriving in parts, from the server's budget. */
  reserve(bytes: number): boolean {
    this.#reserved = true;
    if (this.#s.budget.reserve(this, bytes)) {
      this.#charged += bytes;
      return true;
    }
    this.#growthRefused = true;
    return false;
  }

  /** BudgetHolder: reports what the session holds now. */
  recharge(): number {
    const s = this.#s;
    if (s.closed()) return 0;
    const decoder = s.decoder();
    const held = s.socket.writableLength + s.writer.pending + (decoder === null ? 0 : decoder.buffered) + (s.pinnedBytes?.() ?? 0);
    s.budget.charge(this.#charged, held);
    this.#charged = held;
    return held;
  }

  /** BudgetHolder: the server has room again, or is over budget while this session holds much. */
  wake(): void {
    this.#growthRefused = false; // ask again
    this.update();
  }

  /** The session closed: its bytes go back to the budget and nothing is watched any more. */
  release(): void {
    if (this.#stallTimer !== null) clearTimeout(this.#stallTimer);
    this.#stallTimer = null;
    this.#s.budget.release(this, this.#charged);
    this.#charged = 0;
  }

  /** Bytes the kernel has taken from us so far: it grows only while the peer reads. */
  #sent(): number {
    const socket = this.#s.socket;
    return socket.bytesWritten - socket.writableLength;
  }

  /**
   * True while the peer owes us the rest of a frame that we are not holding
   * back — or that holds budget it could not grow (paused on a refused
   * reservation): that frame cannot finish until others free memory, so if
   * nobody does within `writeTimeoutMs`, it is cut off too. Otherwise peers
   * whose half-sent frames hold the whole budget, each paused, would keep
   * every new client refused until their idle timeout.
   */
  #owesRead(): boolean {
    const decoder = this.#s.decoder();
    return (!this.#paused || this.#growthRefused) && decoder !== null && (decoder.midFrame || (decoder.recordRemaining ?? 0) > 0);
  }

  #watchStall(): void {
    if (this.#stallTimer !== null) return;
    const s = this.#s;
    // Output still packed in the writer counts too: its flush comes with no update after it.
    if (s.socket.writableLength === 0 && s.writer.pending === 0 && !this.#owesRead()) return;
    this.#sentAtStall = this.#sent();
    this.#readAtStall = s.socket.bytesRead;
    this.#stallTimer = setTimeout(this.#checkStallBound ?? this.#bindCheckStall(), s.limits.writeTimeoutMs);
    this.#stallTimer.unref?.();
  }

  // Apart from #watchStall, which runs on every update: a function that holds a closure
  // allocates its context on every call, whether it makes the closure or not.
  #bindCheckStall(): () => void {
    return (this.#checkStallBound = () => this.#checkStall());
  }

  #checkStall(): void {
    this.#stallTimer = null;
    const s = this.#s;
    if (s.closed()) return;
    s.writer.flush(); // what is packed is not the peer's fault
    if (s.socket.writableLength > 0 && this.#sent() === this.#sentAtStall) {
      s.stalled("write_timeout", this.#charged);
      return;
    }
    if (this.#owesRead()) {
      // A frame in progress must come on at a pace that finishes it: each period at least an
      // eighth of what it still lacks (16 KiB at the least, or all of it). A peer that trickles a
      // byte now and then would otherwise hold its frame's memory for ever.
      const input = s.decoder()!;
      const remaining = input.midFrame ? input.frameRemaining : (input.recordRemaining ?? 0);
      const need = Math.min(remaining, Math.max(MIN_PROGRESS_BYTES, remaining / 8));
      if (s.socket.bytesRead - this.#readAtStall < need) {
        s.stalled("read_timeout", this.#charged);
        return;
      }
    }
    this.#watchStall();
  }

  /** A frame was decoded: the overdraft the budget may have granted for it is over. */
  frameDone(): void {
    if (!this.#reserved) return; // the common case: a frame that arrived whole, nothing asked
    this.#reserved = false;
    this.#s.budget.frameDone(this);
  }
}
