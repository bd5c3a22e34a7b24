import { TimeoutError } from "../errors.ts";
import { ClientSession } from "./client_session.ts";
import { identifyUdp } from "./identify.ts";
import type { IdentityBook } from "./identity_book.ts";
import type { EntryHost, EntryLink, ServerEntry } from "./server_entry.ts";

/** Throws unless a connect may take this server (its id and key) at the address it asked. */
export type ServerWanted = (serverId: string, publicKey: Buffer) => void;

/** What identification needs from the client that owns it. */
export interface IdentifierHost<L extends EntryLink> {
  readonly book: IdentityBook;
  readonly entryHost: EntryHost;
  readonly probeTimeoutMs: number;
  /** Throws `ClientClosedError` once the client is closed. */
  assertOpen(): void;
  /** The entry of this server (made when new). */
  entry(serverId: string, publicKey: Buffer): ServerEntry<L>;
  /** A signed identity proved the entry's server at host:port (the address list follows). */
  identified(host: string, port: number, entry: ServerEntry<L>): void;
}

/**
 * C1 for the session table: who is at host:port — from the identity cache,
 * a UDP probe, or (if UDP gets no answer) a TCP handshake, whose session
 * the server's entry adopts. Concurrent connects to one address share one
 * identification, so a burst of them sends one probe and opens one session.
 */
export class ServerIdentifier<L extends EntryLink> {
  #host: IdentifierHost<L>;
  #running = new Map<string, { p: Promise<ServerEntry<L>>; wanted: Set<ServerWanted> }>();

  constructor(host: IdentifierHost<L>) {
    this.#host = host;
  }

  /**
   * The entry of the server at host:port. `wants` throws unless the connect
   * asking may take that server (the known-servers record): a TCP handshake
   * goes on to prove the client's key only when one of the connects sharing
   * it would.
   */
  entryFor(host: string, port: number, wants?: ServerWanted): ServerEntry<L> | Promise<ServerEntry<L>> {
    const known = this.#host.book.lookup(host, port);
    if (known) return this.#identified(host, port, this.#host.entry(known.serverId, known.publicKey));
    const key = `${host}|${port}`;
    let job = this.#running.get(key);
    if (!job) {
      const wanted = new Set<ServerWanted>();
      job = { wanted, p: this.#identify(host, port, wanted).finally(() => this.#running.delete(key)) };
      this.#running.set(key, job);
    }
    if (wants) job.wanted.add(wants);
    return job.p;
  }

  /**
   * A failover candidate's proof: a UDP probe only (no session is opened
   * for it). Nothing is pinned: an address a name suggested that proves
   * some other server teaches the client nothing it must keep (so answers
   * listing many strangers cannot churn the pins); one that proves a pinned
   * server with its key is remembered.
   */
  async prove(host: string, port: number): Promise<string> {
    const { book, probeTimeoutMs, entryHost } = this.#host;
    const id = await identifyUdp(host, port, { timeoutMs: probeTimeoutMs, signal: entryHost.signal });
    if (book.check(id.serverId, id.publicKey, `${host}:${port}`)) book.remember(host, port, id.serverId, id.publicKey);
    return id.serverId;
  }

  async #identify(host: string, port: number, wanted: ReadonlySet<ServerWanted>): Promise<ServerEntry<L>> {
    const { book, entryHost: eh } = this.#host;
    const where = `${host}:${port}`;
    try {
      const id = await identifyUdp(host, port, { timeoutMs: this.#host.probeTimeoutMs, signal: eh.signal });
      this.#host.assertOpen();
      book.pin(id.serverId, id.publicKey, where);
      book.remember(host, port, id.serverId, id.publicKey);
      return this.#identified(host, port, this.#host.entry(id.serverId, id.publicKey));
    } catch (err) {
      if (!(err instanceof TimeoutError)) throw err;
    }
    // The hello's server must be one a waiting connect may take, and not an impostor of a pinned one,
    // before the client proves its key: otherwise the handshake ends there.
    const checkServer = (id: string, key: Buffer): void => {
      let first: unknown = null;
      for (const w of wanted) {
        try {
          w(id, key);
          first = null;
          break;
        } catch (err) {
          first ??= err;
        }
      }
      if (first !== null) throw first;
      book.pin(id, key, where);
    };
    // UDP filtered or lost: the session handshake tells (and proves) the identity too.
    this.#host.assertOpen();
    await eh.limiter.acquire();
    let session: ClientSession;
    try {
      this.#host.assertOpen();
      session = await ClientSession.connect({
        host,
        port,
        timeoutMs: eh.handshakeTimeoutMs,
        requestTimeoutMs: eh.requestTimeoutMs,
        ...eh.sessionOptions,
        signal: eh.signal,
        checkServer, // an impostor of a pinned server, or another server than the one a name led to, learns nothing of us
        firstStreamId: eh.firstStreamId,
      });
    } catch (err) {
      eh.limiter.release();
      throw err;
    }
    try {
      this.#host.assertOpen();
      book.pin(session.serverId, session.publicKey, where);
    } catch (err) {
      session.destroy(); // an impostor's socket is never kept
      eh.limiter.release();
      throw err;
    }
    book.remember(host, port, session.serverId, session.publicKey);
    const entry = this.#host.entry(session.serverId, session.publicKey);
    entry.adopt(session, { host, port }); // one session per server: the entry keeps one of the two if it has one
    return this.#identified(host, port, entry);
  }

  #identified(host: string, port: number, entry: ServerEntry<L>): ServerEntry<L> {
    this.#host.identified(host, port, entry);
    return entry;
  }
}
