/**
 * Whether a session's line still carries anything (C5 on silent failures).
 * A line that silently discards packets (a pulled cable, a Wi-Fi drop, a
 * blackhole) gives TCP nothing to report for minutes; this watch notices it
 * from the session's side:
 *
 *   busy (requests outstanding) and nothing read for `silenceMs`
 *        ──▶ PING; nothing read within `pingTimeoutMs` ──▶ dead
 *   idle and nothing read for the keepalive interval (as before)
 *        ──▶ PING; nothing read within `pingTimeoutMs` ──▶ dead
 *   a request's deadline passed ──▶ PING now (unless one is out) ──▶ …
 *
 * Any byte read after the PING counts as an answer (a busy server's
 * responses may come before its PONG). A PING waits behind what we sent
 * since the last byte arrived (a large upload on a slow line): its deadline
 * grows by the time those bytes take at 16 KiB/s, up to 30 s. An idle session is pinged no more
 * often than its keepalive interval; a busy one at most once per
 * `silenceMs`, and only when it has read nothing for that long. The PING
 * carries 8 bytes (a send time, within the server's 64-byte cap) so the
 * PONG gives a round-trip time.
 */

/** A PING's deadline grows by the time the bytes sent ahead of it take at this rate, up to this much. */
const MIN_LINE_BYTES_PER_S = 16 * 1024;
const MAX_GRACE_MS = 30_000;

/** What the watch needs from its session. */
export interface LivenessHost {
  /** When the session last read a byte (performance.now() clock). */
  lastRead(): number;
  /** Bytes we sent since the last byte arrived: a PING waits behind them. */
  writtenSinceRead?(): number;
  /** Requests waiting for an answer. */
  outstanding(): number;
  /** Sends a PING with this payload. */
  ping(payload: Buffer): void;
  /** The line is dead: the session should be destroyed with this reason. */
  dead(silentForMs: number): void;
}

export interface LivenessOptions {
  /** How long a session with outstanding requests may read nothing before it sends a PING. */
  silenceMs: number;
  /** How long a PING may go unanswered (nothing read at all) before the line is dead; 0 turns the watch off. */
  pingTimeoutMs: number;
  /** The idle keepalive interval. */
  keepaliveMs: number;
}

export class Liveness {
  #host: LivenessHost;
  #opts: LivenessOptions;
  /** The one timer: the next check (keepalive, silence, or a PING's deadline). */
  #timer: ReturnType<typeof setTimeout> | null = null;
  #timerAt = Infinity;
  /** The armed timer was set at most silenceMs ahead (so it is due within silenceMs of any later moment). */
  #soon = false;
  /** When the unanswered PING was sent, or -1. */
  #pingAt = -1;
  /** Extra time the unanswered PING is given: it waits behind what we sent before it. */
  #graceMs = 0;
  #stopped = false;
  /** The latest round-trip time a PONG gave, in ms, or null. */
  rttMs: number | null = null;

  constructor(host: LivenessHost, opts: LivenessOptions) {
    this.#host = host;
    this.#opts = opts;
    this.#schedule(opts.keepaliveMs);
  }

  /** A request was added: make sure the silence check runs soon enough. */
  busy(): void {
    // A timer armed for at most silenceMs is due soon enough for any later request: no clock read per request.
    if (this.#soon || this.#stopped || this.#opts.pingTimeoutMs <= 0 || this.#pingAt >= 0) return;
    this.#schedule(this.#opts.silenceMs);
  }

  /** A request passed its deadline: check the line now. */
  timedOut(): void {
    if (this.#stopped || this.#opts.pingTimeoutMs <= 0 || this.#pingAt >= 0) return;
    this.#sendPing(performance.now());
  }

  /** A PONG arrived (its payload as sent). */
  pong(payload: Buffer): void {
    if (payload.length !== 8) return;
    const rtt = performance.now() - payload.readDoubleBE(0);
    if (rtt >= 0 && rtt < 600_000) this.rttMs = rtt;
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** Arms the timer `inMs` from now, unless it is already due sooner. */
  #schedule(inMs: number): void {
    const at = performance.now() + inMs;
    if (this.#timer && this.#timerAt <= at) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#soon = inMs <= this.#opts.silenceMs;
    this.#timer = setTimeout(this.#check, Math.max(1, inMs));
    this.#timer.unref?.();
  }

  #check = (): void => {
    const due = this.#timerAt;
    this.#timer = null;
    this.#timerAt = Infinity;
    this.#soon = false;
    if (this.#stopped) return;
    const now = performance.now();
    const o = this.#opts;
    const lastRead = this.#host.lastRead();
    if (this.#pingAt >= 0) {
      if (lastRead >= this.#pingAt) {
        this.#pingAt = -1; // answered
      } else if (now - this.#pingAt >= o.pingTimeoutMs + this.#graceMs) {
        if (now - due > o.pingTimeoutMs / 2) {
          // This timer fired late: our own event loop was stalled, not the line. The answer may
          // be waiting unread; give it the time the stall took from it.
          this.#schedule(o.pingTimeoutMs / 2);
          return;
        }
        // Timers run before the poll phase reads sockets: let what has arrived be read first.
        const pingAt = this.#pingAt;
        setImmediate(() => {
          if (this.#stopped) return;
          if (this.#host.lastRead() >= pingAt) {
            this.#pingAt = -1;
            this.#schedule(this.#host.outstanding() > 0 ? o.silenceMs : o.keepaliveMs);
            return;
          }
          this.stop();
          this.#host.dead(performance.now() - this.#host.lastRead());
        });
        return;
      } else {
        this.#schedule(this.#pingAt + o.pingTimeoutMs + this.#graceMs - now);
        return;
      }
    }
    const busy = this.#host.outstanding() > 0 && o.pingTimeoutMs > 0;
    const quietFor = busy ? o.silenceMs : o.keepaliveMs;
    if (now - lastRead >= quietFor) {
      this.#sendPing(now);
      return;
    }
    // Next look: when the quiet time would be reached; half a silence period at most while busy.
    this.#schedule(busy ? Math.min(quietFor - (now - lastRead), o.silenceMs / 2) : quietFor - (now - lastRead));
  };

  #sendPing(now: number): void {
    const payload = Buffer.allocUnsafe(8);
    payload.writeDoubleBE(now, 0);
    this.#host.ping(payload);
    if (this.#opts.pingTimeoutMs <= 0) {
      this.#schedule(this.#opts.keepaliveMs); // keepalive only, as before the watch existed
      return;
    }
    this.#pingAt = now;
    // A large upload on a slow line queues the PING behind it: give the answer the time the bytes
    // ahead of it take at MIN_LINE_BYTES_PER_S (a slower line counts as dead), at most MAX_GRACE_MS.
    this.#graceMs = Math.min(MAX_GRACE_MS, ((this.#host.writtenSinceRead?.() ?? 0) / MIN_LINE_BYTES_PER_S) * 1000);
    // Look again at the deadline, or sooner: once answered, the keepalive (or silence) rhythm goes
    // on, so an idle session still reaches the server within its idle timeout.
    const o = this.#opts;
    this.#schedule(Math.min(o.pingTimeoutMs, o.keepaliveMs, o.silenceMs));
  }
}
