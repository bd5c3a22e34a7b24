import { DecoratorHandler, type Dispatcher } from "undici";
import { ClientClosedError, OutcomeUnknownError, SocketLimitError, UnreachableError } from "../errors.ts";

/** Methods a server may run twice with the same effect (RFC 9110 §9.2.2), so sent again after a broken line. */
const IDEMPOTENT = new Set(["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"]);

/** Errors of a connection that broke or went silent after the request may have been written. */
const LINE_ERRORS = new Set(["UND_ERR_SOCKET", "ECONNRESET", "EPIPE", "ETIMEDOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_CLOSED", "ENETUNREACH", "EHOSTUNREACH"]);

/** How often one request is sent again after its line broke before any answer came. */
const MAX_RESENDS = 2;

type Handler = Dispatcher.DispatchHandler;
type Controller = Parameters<NonNullable<Handler["onRequestStart"]>>[0];

/** True for errors raised before any connection took the request: it did not run. */
export function beforeSending(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return err instanceof UnreachableError || err instanceof SocketLimitError || err instanceof ClientClosedError || code === "UND_ERR_CONNECT_TIMEOUT";
}

/** A body that can be written again as it was: none, text or bytes. */
function replayable(body: Dispatcher.DispatchOptions["body"]): boolean {
  return body === undefined || body === null || typeof body === "string" || body instanceof Uint8Array;
}

/**
 * C5 for HTTP: wraps an application's handler. When the line breaks before
 * the response starts, an idempotent request with a replayable body is sent
 * again on the same server's pool, whose next connection goes to another
 * address; any other request fails with `PERILINK_OUTCOME_UNKNOWN`, which
 * says it may have run. A request that never left (no address answered, the
 * socket limit) fails with its own error: it did not run.
 */
export class FailoverHandler implements Handler {
  #inner: Handler;
  #opts: Dispatcher.DispatchOptions;
  #again: (handler: FailoverHandler) => void;
  #onUnreachable: () => void;
  #started = false;
  #resends = 0;
  #resendable: boolean;

  constructor(inner: Handler, opts: Dispatcher.DispatchOptions, again: (handler: FailoverHandler) => void, onUnreachable: () => void) {
    this.#inner = new DecoratorHandler(inner) as Handler;
    this.#opts = opts;
    this.#again = again;
    this.#onUnreachable = onUnreachable;
    this.#resendable = IDEMPOTENT.has((opts.method ?? "GET").toUpperCase()) && replayable(opts.body) && !opts.upgrade;
  }

  onRequestStart(controller: Controller, context: unknown): void {
    this.#inner.onRequestStart?.(controller, context);
  }

  onRequestUpgrade(...args: Parameters<NonNullable<Handler["onRequestUpgrade"]>>): void {
    this.#started = true;
    this.#inner.onRequestUpgrade?.(...args);
  }

  onResponseStart(...args: Parameters<NonNullable<Handler["onResponseStart"]>>): void {
    this.#started = true;
    this.#inner.onResponseStart?.(...args);
  }

  onResponseData(...args: Parameters<NonNullable<Handler["onResponseData"]>>): void {
    this.#inner.onResponseData?.(...args);
  }

  onResponseEnd(...args: Parameters<NonNullable<Handler["onResponseEnd"]>>): void {
    this.#inner.onResponseEnd?.(...args);
  }

  onResponseError(controller: Controller, err: Error): void {
    const code = (err as { code?: unknown }).code;
    if (err instanceof UnreachableError) this.#onUnreachable();
    if (!this.#started && !controller?.aborted && typeof code === "string" && LINE_ERRORS.has(code)) {
      if (this.#resendable && this.#resends < MAX_RESENDS) {
        this.#resends++;
        this.#again(this);
        return;
      }
      const method = (this.#opts.method ?? "GET").toUpperCase();
      const why = this.#resendable ? `sent ${this.#resends + 1} times` : IDEMPOTENT.has(method) ? "not sent again, as its body cannot be replayed" : `not sent again, as ${method} is not idempotent`;
      err = new OutcomeUnknownError(`Cannot finish ${method} ${this.#opts.path}: the connection broke before the answer (${err.message}), so the server may have run it; ${why}`, { cause: err });
    }
    this.#inner.onResponseError?.(controller, err);
  }
}
