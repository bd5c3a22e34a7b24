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
 * Each session charges what it holds whenever it reads or writes. Output
 * drains without an event per write, so a charge can be stale on the high
 * side; whenever the sum crosses the limit, every session is asked again
 * before anyone is held back (at most once per `RECHECK_MS`). Past the limit
 * the server refuses new sessions, and every session that holds more than its
 * share (limit ÷ sessions) stops reading until the sum falls under the limit
 * again: the sessions holding the most wait (and are cut off if they stay
 * stalled, see ServerSession), the light ones are not touched.
 */
export class BufferBudget {
  readonly limit: number;
  #total = 0;
  #holders: () => Iterable<BudgetHolder>;
  #count: () => number;
  #now: () => number;
  #checkedAt = -Infinity;
  #waiting = new Set<BudgetHolder>();
  #timer: ReturnType<typeof setInterval> | null = null;

  constructor(limit: number, holders: () => Iterable<BudgetHolder>, count: () => number, now: () => number = Date.now) {
    this.limit = limit;
    this.#holders = holders;
    this.#count = count;
    this.#now = now;
  }

  /** Bytes held, as last reported (some may have been written since: see `refresh()`). */
  get total(): number {
    return this.#total;
  }

  /** Asks every holder afresh what it holds; returns the total. */
  refresh(): number {
    this.#checkedAt = this.#now();
    for (const h of this.#holders()) h.recharge();
    return this.#total;
  }

  /** Past the limit, every holder over its share is told to look again (and so to wait). */
  #holdBackHeaviest(): void {
    const share = this.limit / Math.max(1, this.#count());
    for (const h of this.#holders()) if (h.recharge() > share && !this.#waiting.has(h)) h.wake();
  }

  /** Replaces a holder's previous figure with its new one. */
  charge(previous: number, now: number): void {
    this.#total += now - previous;
  }

  /** True when the sum, asked afresh, is over the limit. */
  over(): boolean {
    if (this.#total <= this.limit) return false;
    if (this.#now() - this.#checkedAt >= RECHECK_MS && this.refresh() > this.limit) this.#holdBackHeaviest();
    return this.#total > this.limit;
  }

  /**
   * Whether a holder holding `held` bytes must stop reading. A holder told
   * to wait is woken (`wake()`) once the budget has room again.
   */
  mustWait(holder: BudgetHolder, held: number): boolean {
    if (held === 0 || held * this.#count() <= this.limit || !this.over()) {
      this.#waiting.delete(holder);
      return false;
    }
    this.#waiting.add(holder);
    if (this.#timer === null) {
      this.#timer = setInterval(() => this.#recheck(), RECHECK_MS);
      this.#timer.unref?.();
    }
    return true;
  }

  /** A holder is gone: its bytes are released and it waits no more. */
  release(holder: BudgetHolder, held: number): void {
    this.#total -= held;
    this.#waiting.delete(holder);
  }

  #recheck(): void {
    if (this.#waiting.size > 0 && this.over()) return;
    const woken = [...this.#waiting];
    this.#waiting.clear();
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    for (const h of woken) h.wake();
  }
}
