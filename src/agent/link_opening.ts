import type { Link, LinkRequestOptions } from "../client/link.ts";
import { TimeoutError } from "../errors.ts";
import { TARGET } from "../target.ts";

/**
 * A link the agent is opening for a process. Its number is taken, and the
 * requests and messages the process sends on it meanwhile wait for it: a
 * process may send them right behind its connect (agent_link.ts opens links
 * ahead to a server it reached already), and they fail with the connect's
 * error if it fails, or with the process's going away. `closing`: the
 * process closed it while it opened.
 */
export class LinkOpening {
  closing = false;
  readonly opened: Promise<Link>;
  #open!: (link: Link) => void;
  #fail!: (err: unknown) => void;

  constructor() {
    this.opened = new Promise<Link>((resolve, reject) => {
      this.#open = resolve;
      this.#fail = reject;
    });
    this.opened.catch(() => {}); // nothing may have waited for it
  }

  open(link: Link): void {
    this.#open(link);
  }

  fail(err: unknown): void {
    this.#fail(err);
  }

  /** A one-way message: sent once the link is open (within a request's deadline), or failed as the connect did. */
  send(payload: Buffer): Promise<void> {
    const body = ownBytes(payload);
    return this.wait(TARGET.client.requestTimeoutMs, undefined).then((link) => link.send(body));
  }

  /** The link once open, within the request's deadline; what it waited is taken off the `timeoutMs` it has left. */
  async forRequest(options: LinkRequestOptions): Promise<Link> {
    const timeoutMs = options.timeoutMs ?? TARGET.client.requestTimeoutMs;
    const start = performance.now();
    const link = await this.wait(timeoutMs, options.signal);
    options.timeoutMs = Math.max(1, Math.round(timeoutMs - (performance.now() - start)));
    return link;
  }

  /**
   * The link once it is open, for a request that may wait `timeoutMs` (its
   * deadline: `PERILINK_REQUEST_TIMEOUT` past it) and until `signal` aborts.
   */
  wait(timeoutMs: number, signal: AbortSignal | undefined): Promise<Link> {
    return new Promise<Link>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const onAbort = (): void => {
        done();
        reject(signal!.reason);
      };
      const timer = setTimeout(() => {
        done();
        reject(new TimeoutError("PERILINK_REQUEST_TIMEOUT", `Cannot send: its link was still opening after ${timeoutMs} ms (the request's timeoutMs)`));
      }, timeoutMs);
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      this.opened.then(
        (link) => {
          done();
          resolve(link);
        },
        (err: unknown) => {
          done();
          reject(err);
        },
      );
    });
  }
}

/**
 * A payload that waits for a link to open, as its own bytes: a frame's
 * payload is a view of the whole read it came in, which it would otherwise
 * keep alive while it waits.
 */
export function ownBytes(payload: Buffer): Buffer {
  return payload.byteLength === payload.buffer.byteLength ? payload : Buffer.from(payload);
}
