import type { Dispatcher } from "undici";
import { OutcomeUnknownError, UnreachableError } from "../errors.ts";
import { legacyHandler, type LegacyHandler } from "./legacy_handler.ts";

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

type Abort = (reason?: Error) => void;

/** A body that can be written again as it was: none, text or bytes (a fetch() body is a stream: never). */
function replayable(body: Dispatcher.DispatchOptions["body"]): boolean {
  return body === undefined || body === null || typeof body === "string" || body instanceof Uint8Array;
}

/**
 * C5 for HTTP: wraps an application's handler (in undici's callback form,
 * which its pools speak natively, so a request costs no conversion). When
 * the line breaks before the response starts, an idempotent request with a
 * replayable body is sent again (`again`: its server's pool, whose next
 * connection goes to another address, or a plain device's next address);
 * any other request fails with `PERILINK_OUTCOME_UNKNOWN`, which says it may
 * have run. A request that never left (no address answered, the socket
 * limit) fails with its own error: it did not run. The application sees one
 * `onConnect`, and its abort reaches whichever attempt runs, and stops a resend.
 */
export class FailoverHandler implements LegacyHandler {
  #inner: LegacyHandler;
  #opts: Dispatcher.DispatchOptions;
  #again: (handler: FailoverHandler) => void;
  #onUnreachable: () => void;
  #abortCurrent: Abort | null = null;
  #aborted: Error | null = null;
  #begun = false;
  #started = false;
  #sends = 0;
  #resendable: boolean;
  #abort: Abort = (reason) => {
    if (this.#aborted !== null) return;
    this.#aborted = reason ?? new Error("aborted");
    this.#abortCurrent?.(this.#aborted);
  };

  constructor(inner: Dispatcher.DispatchHandler, opts: Dispatcher.DispatchOptions, again: (handler: FailoverHandler) => void, onUnreachable: () => void) {
    this.#inner = legacyHandler(inner);
    this.#opts = opts;
    this.#again = again;
    this.#onUnreachable = onUnreachable;
    this.#resendable = IDEMPOTENT.has((opts.method ?? "GET").toUpperCase()) && replayable(opts.body) && !opts.upgrade;
  }

  onConnect(abort: Abort, context?: unknown): void {
    this.#sends++;
    this.#abortCurrent = abort;
    if (this.#aborted !== null) return abort(this.#aborted);
    if (this.#begun) return;
    this.#begun = true;
    this.#inner.onConnect?.(this.#abort, context);
  }

  onResponseStarted(): void {
    this.#inner.onResponseStarted?.();
  }

  onUpgrade(statusCode: number, rawHeaders: Buffer[] | string[] | null, socket: unknown): void {
    this.#started = true;
    this.#inner.onUpgrade?.(statusCode, rawHeaders, socket);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    this.#started = true;
    return this.#inner.onHeaders?.(statusCode, rawHeaders, resume, statusText) ?? true;
  }

  onData(chunk: Buffer): boolean {
    return this.#inner.onData?.(chunk) ?? true;
  }

  onComplete(trailers: string[] | Buffer[] | null): void {
    this.#inner.onComplete?.(trailers);
  }

  onBodySent(chunk: unknown): void {
    this.#inner.onBodySent?.(chunk);
  }

  onRequestSent(): void {
    this.#inner.onRequestSent?.();
  }

  onError(err: Error): void {
    const code = (err as { code?: unknown }).code;
    if (err instanceof UnreachableError) this.#onUnreachable();
    if (!this.#started && this.#aborted === null && this.#sends > 0 && typeof code === "string" && LINE_ERRORS.has(code)) {
      if (this.#resendable && this.#sends <= MAX_RESENDS) return this.#again(this);
      const method = (this.#opts.method ?? "GET").toUpperCase();
      const why = this.#resendable ? `sent ${this.#sends} times` : IDEMPOTENT.has(method) ? "not sent again, as its body cannot be replayed" : `not sent again, as ${method} is not idempotent`;
      err = new OutcomeUnknownError(`Cannot finish ${method} ${this.#opts.path}: the connection broke before the answer (${err.message}), so the server may have run it; ${why}`, { cause: err });
    }
    if (!this.#begun) {
      // It never reached a connection (no address, the socket limit): the application still gets its abort first.
      this.#begun = true;
      this.#inner.onConnect?.(this.#abort, {});
    }
    this.#inner.onError?.(err);
  }
}
