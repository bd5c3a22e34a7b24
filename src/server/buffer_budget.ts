/** A session as the budget sees it. */
export interface BudgetHolder {
  /** Reports again, with `budget.charge`, the bytes it holds now (frames in progress, unsent output); returns them. */
  recharge(): number;
  /** Looks again whether to read: the budget has room again, or it holds too much and must wait. */
  wake(): void;
}

/** How often a budget that holds sessions back looks again whether it has room. */
const RECHECK_MS = 50;

/**
 * The server's memory budget for buffers (`limits.maxBufferedBytes`): bytes
 * held for incoming frames in progress and outgoing frames not yet written,
 * summed over sessions.
 *
 * - Memory for a frame arriving in parts is reserved before it is allocated
 *   (`reserve`). A reservation that does not fit waits until one does — except
 *   that one holder at a time may go past the limit by what its frame needs, so
 *   frames in progress can always finish and free their memory (the sum stays
 *   under limit + one frame).
 * - Output is charged as it is queued (`charge`). Output drains without an
 *   event per write, so a charge can be stale on the high side; whenever the
 *   sum crosses the limit, every holder is asked again before anyone is held
 *   back (at most once per `RECHECK_MS`).
 * - Past the limit the server refuses new sessions, and every holder over its
 *   share (limit ÷ sessions) that is not in the middle of a frame stops reading
 *   until the sum falls under the limit again: the sessions holding the most
 *   wait, the light ones are not touched.
 */
export class BufferBudget {
  readonly limit: number;
  #total = 0;
  #holders: () => Iterable<BudgetHolder>;
  #count: () => number;
  #now: () => number;
  #checkedAt = -Infinity;
  #waiting = new Set<BudgetHolder>();
  #overdraft: BudgetHolder | null = null;
  #timer: ReturnType<typeof setInterval> | null = null;

  constructor(limit: number, holders: () => Iterable<BudgetHolder>, count: () => number, now: () => number = () => performance.now()) {
    this.limit = limit;
    this.#holders = holders;
    this.#count = count;
    this.#now = now;
  }

  /** Replaces a holder's previous figure with its new one. */
  charge(previous: number, now: number): void {
    this.#total += now - previous;
  }

  /** Asks every holder afresh what it holds; returns the total. */
  refresh(): number {
    this.#checkedAt = this.#now();
    for (const h of this.#holders()) h.recharge();
    return this.#total;
  }

  /** True when the sum, asked afresh, is over the limit. */
  over(): boolean {
    if (this.#total <= this.limit) return false;
    if (this.#now() - this.#checkedAt >= RECHECK_MS && this.refresh() > this.limit) this.#holdBackHeaviest();
    return this.#total > this.limit;
  }

  /**
   * Asks for `bytes` more for a frame arriving in parts; granted bytes are
   * charged at once (the holder's next `charge` replaces them). Refused: the
   * holder waits and is woken when there may be room.
   */
  reserve(holder: BudgetHolder, bytes: number): boolean {
    // Charges can be stale on the high side: ask afresh before refusing (at most once per RECHECK_MS).
    if (this.#total + bytes > this.limit && this.#now() - this.#checkedAt >= RECHECK_MS) this.refresh();
    if (this.#total + bytes > this.limit) {
      if (this.#overdraft !== null && this.#overdraft !== holder) {
        this.#wait(holder);
        return false;
      }
      this.#overdraft = holder; // the one frame allowed past the limit, so that progress never stops
    }
    this.#total += bytes;
    this.#waiting.delete(holder);
    return true;
  }

  /** The holder's frame in progress is complete: it no longer holds the overdraft. */
  frameDone(holder: BudgetHolder): void {
    if (this.#overdraft === holder) this.#overdraft = null;
  }

  /**
   * Whether a holder holding `held` bytes (none of them a frame in progress)
   * must stop reading. A holder told to wait is woken (`wake()`) once the
   * budget has room again.
   */
  mustWait(holder: BudgetHolder, held: number): boolean {
    if (held === 0 || held * this.#count() <= this.limit || !this.over()) {
      this.#waiting.delete(holder);
      return false;
    }
    this.#wait(holder);
    return true;
  }

  /** A holder is gone: its bytes are released and it waits no more. */
  release(holder: BudgetHolder, held: number): void {
    this.#total -= held;
    this.#waiting.delete(holder);
    this.frameDone(holder);
  }

  /** Past the limit, every holder over its share is told to look again (and so to wait). */
  #holdBackHeaviest(): void {
    const share = this.limit / Math.max(1, this.#count());
    for (const h of this.#holders()) if (h.recharge() > share && !this.#waiting.has(h)) h.wake();
  }

  #wait(holder: BudgetHolder): void {
    this.#waiting.add(holder);
    if (this.#timer === null) {
      this.#timer = setInterval(() => this.#recheck(), RECHECK_MS);
      this.#timer.unref?.();
    }
  }

  #recheck(): void {
    // Under the limit, every waiter asks again: one whose frame fits is granted without the
    // overdraft, whoever holds it.
    if (this.#waiting.size > 0 && this.over()) return;
    const woken = [...this.#waiting];
    this.#waiting.clear();
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    for (const h of woken) h.wake(); // each asks again; one still refused waits again
  }
}
