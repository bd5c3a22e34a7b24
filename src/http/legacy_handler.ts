import { util, type Dispatcher } from "undici";

type Abort = (reason?: Error) => void;
type Headers = Buffer[] | string[] | null;

/** undici's callback form of a dispatch handler, the one its pools call without conversion. */
export interface LegacyHandler {
  onConnect?(abort: Abort, context?: unknown): void;
  onResponseStarted?(): void;
  onUpgrade?(statusCode: number, rawHeaders: Headers, socket: unknown): void;
  onHeaders?(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean;
  onData?(chunk: Buffer): boolean;
  onComplete?(trailers: Headers): void;
  onError?(err: Error): void;
  onBodySent?(chunk: unknown): void;
  onRequestSent?(): void;
}

type NewHandler = Dispatcher.DispatchHandler;
type Controller = Parameters<NonNullable<NewHandler["onRequestStart"]>>[0];

/** The controller a handler of undici's newer form is given: pause, resume and abort of the request. */
class RequestController {
  #abort: Abort;
  #aborted = false;
  #reason: Error | null = null;
  paused = false;
  resumeFn: (() => void) | null = null;
  rawHeaders: Headers = null;
  rawTrailers: Headers = null;

  constructor(abort: Abort) {
    this.#abort = abort;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.resumeFn?.();
  }

  abort(reason?: Error): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason ?? null;
    this.#abort(reason);
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  get reason(): Error | null {
    return this.#reason;
  }
}

const parse = (raw: Headers): Record<string, string | string[]> => (raw === null ? {} : (util.parseHeaders(raw as Buffer[]) as Record<string, string | string[]>));

/** Calls a handler of undici's newer form (onRequestStart, onResponseStart…) through the callback form. */
class NewFormHandler implements LegacyHandler {
  #h: NewHandler;
  #c: RequestController = new RequestController(() => {});

  constructor(h: NewHandler) {
    this.#h = h;
  }

  #ctl(): Controller {
    return this.#c as unknown as Controller;
  }

  onConnect(abort: Abort, context?: unknown): void {
    this.#c = new RequestController(abort);
    this.#h.onRequestStart?.(this.#ctl(), context);
  }

  onResponseStarted(): void {
    (this.#h as { onResponseStarted?: () => void }).onResponseStarted?.();
  }

  onUpgrade(statusCode: number, rawHeaders: Headers, socket: unknown): void {
    this.#c.rawHeaders = rawHeaders;
    (this.#h.onRequestUpgrade as ((...a: unknown[]) => void) | undefined)?.(this.#ctl(), statusCode, parse(rawHeaders), socket);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    this.#c.resumeFn = resume;
    this.#c.rawHeaders = rawHeaders;
    (this.#h.onResponseStart as ((...a: unknown[]) => void) | undefined)?.(this.#ctl(), statusCode, parse(rawHeaders), statusText);
    return !this.#c.paused;
  }

  onData(chunk: Buffer): boolean {
    this.#h.onResponseData?.(this.#ctl(), chunk);
    return !this.#c.paused;
  }

  onComplete(trailers: Headers): void {
    this.#c.rawTrailers = trailers;
    (this.#h.onResponseEnd as ((...a: unknown[]) => void) | undefined)?.(this.#ctl(), parse(trailers));
  }

  onError(err: Error): void {
    this.#h.onResponseError?.(this.#ctl(), err);
  }
}

/** The handler in the callback form: as it is, or through an adapter when it speaks the newer form. */
export function legacyHandler(h: Dispatcher.DispatchHandler): LegacyHandler {
  return typeof h.onRequestStart === "function" ? new NewFormHandler(h) : (h as LegacyHandler);
}
