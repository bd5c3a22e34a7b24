import { DecoratorHandler, type Dispatcher } from "undici";
import { OutcomeUnknownError, UnreachableError } from "../errors.ts";

/** Methods a server may run twice with the same effect (RFC 9110 §9.2.2), so sent again after a broken line. */
const IDEMPOTENT = new Set(["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"]);

/**
 * Errors of a connection that broke after the request may have been
 * written. A headers timeout is not one: the server is alive but slow, and a
 * second copy would only load it more.
 */
const LINE_ERRORS = new Set(["UND_ERR_SOCKET", "ECONNRESET", "EPIPE", "ETIMEDOUT", "ENETUNREACH", "EHOSTUNREACH"]);

/** How often one request is sent again after its line broke before any answer came. */
const MAX_RESENDS = 2;

type Handler = Dispatcher.DispatchHandler;
type Controller = Parameters<NonNullable<Handler["onRequestStart"]>>[0];

/** A body that can be written again as it was: none, text or bytes (a fetch() body is a stream: never). */
function replayable(body: Dispatcher.DispatchOptions["body"]): boolean {
  return body === undefined || body === null || typeof body === "string" || body instanceof Uint8Array;
}

/**
 * The one controller the application's handler sees, whatever attempt is
 * running: an abort reaches the attempt in progress, and stops a resend.
 */
class AttemptController {
  #current: Controller | null = null;
  #aborted = false;
  #reason: Error | null = null;
  #paused = false;

  follow(c: Controller): void {
    this.#current = c;
    if (this.#aborted) c.abort(this.#reason!);
    else if (this.#paused) c.pause();
  }

  abort(reason: Error): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#current?.abort(reason);
  }

  pause(): void {
    this.#paused = true;
    this.#current?.pause();
  }

  resume(): void {
    this.#paused = false;
    this.#current?.resume();
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  get reason(): Error | null {
    return this.#reason;
  }

  get paused(): boolean {
    return this.#paused;
  }
}

/**
 * C5 for HTTP: wraps an application's handler. When the line breaks before
 * the response starts, an idempotent request with a replayable body is sent
 * again (`again`: its server's pool, whose next connection goes to another
 * address, or a plain device's next address); any other request fails with
 * `PERILINK_OUTCOME_UNKNOWN`, which says it may have run. A request that
 * never left (no address answered, the socket limit) fails with its own
 * error: it did not run.
 */
export class FailoverHandler implements Handler {
  #inner: Handler;
  #opts: Dispatcher.DispatchOptions;
  #again: (handler: FailoverHandler) => void;
  #onUnreachable: () => void;
  #controller = new AttemptController();
  #begun = false;
  #started = false;
  #sends = 0;
  #resendable: boolean;

  constructor(inner: Handler, opts: Dispatcher.DispatchOptions, again: (handler: FailoverHandler) => void, onUnreachable: () => void) {
    this.#inner = new DecoratorHandler(inner) as Handler;
    this.#opts = opts;
    this.#again = again;
    this.#onUnreachable = onUnreachable;
    this.#resendable = IDEMPOTENT.has((opts.method ?? "GET").toUpperCase()) && replayable(opts.body) && !opts.upgrade;
  }

  onRequestStart(controller: Controller, context: unknown): void {
    this.#sends++;
    this.#controller.follow(controller);
    if (this.#begun) return;
    this.#begun = true;
    this.#inner.onRequestStart?.(this.#controller as unknown as Controller, context);
  }

  onRequestUpgrade(_c: Controller, ...rest: unknown[]): void {
    this.#started = true;
    (this.#inner.onRequestUpgrade as ((...a: unknown[]) => void) | undefined)?.(this.#controller, ...rest);
  }

  onResponseStarted(): void {
    (this.#inner as { onResponseStarted?: () => void }).onResponseStarted?.();
  }

  onResponseStart(_c: Controller, ...rest: unknown[]): void {
    this.#started = true;
    (this.#inner.onResponseStart as ((...a: unknown[]) => void) | undefined)?.(this.#controller, ...rest);
  }

  onResponseData(_c: Controller, chunk: Buffer): void {
    this.#inner.onResponseData?.(this.#controller as unknown as Controller, chunk);
  }

  onResponseEnd(_c: Controller, trailers: Parameters<NonNullable<Handler["onResponseEnd"]>>[1]): void {
    this.#inner.onResponseEnd?.(this.#controller as unknown as Controller, trailers);
  }

  onResponseError(_c: Controller, err: Error): void {
    const code = (err as { code?: unknown }).code;
    if (err instanceof UnreachableError) this.#onUnreachable();
    if (!this.#started && !this.#controller.aborted && this.#sends > 0 && typeof code === "string" && LINE_ERRORS.has(code)) {
      if (this.#resendable && this.#sends <= MAX_RESENDS) return this.#again(this);
      const method = (this.#opts.method ?? "GET").toUpperCase();
      const why = this.#resendable ? `sent ${this.#sends} times` : IDEMPOTENT.has(method) ? "not sent again, as its body cannot be replayed" : `not sent again, as ${method} is not idempotent`;
      err = new OutcomeUnknownError(`Cannot finish ${method} ${this.#opts.path}: the connection broke before the answer (${err.message}), so the server may have run it; ${why}`, { cause: err });
    }
    if (!this.#begun) {
      // It never reached a connection (no address, the socket limit): the application still gets its controller first.
      this.#begun = true;
      this.#inner.onRequestStart?.(this.#controller as unknown as Controller, {});
    }
    this.#inner.onResponseError?.(this.#controller as unknown as Controller, err);
  }
}
