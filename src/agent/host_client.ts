import { AgentError, ClientClosedError } from "../errors.ts";
import { createClient as createLocalClient, type PerilinkClient } from "../client/client.ts";
import type { ClientOptions, ConnectOptions, SessionRow } from "../client/client_options.ts";
import type { AddressRow } from "../client/names/address_list.ts";
import type { LinkApi } from "../client/link_api.ts";
import { AgentConnection } from "./agent_connection.ts";
import { AgentLink } from "./agent_link.ts";
import { agentSocketPath, checkAgentSocket } from "./agent_socket.ts";
import type { AgentTable } from "./host_agent.ts";

export interface HostClientOptions extends ClientOptions {
  /**
   * Whether links go through the host agent (`perilink agent`), so that
   * every process of this user shares one session per server (C11):
   * `"auto"` (default) when an agent answers, in-process otherwise; `true`
   * always (`PERILINK_AGENT` when none answers); `false` never.
   */
  agent?: "auto" | boolean;
  /** The agent's socket (default: `PERILINK_AGENT_SOCKET`, else `$XDG_RUNTIME_DIR/perilink/agent.sock`). */
  agentSocket?: string;
}

/** How long connecting to the agent's socket may take, and then its hello: a socket-activated agent starts a process first (seconds on a small device). */
const AGENT_CONNECT_MS = 2000;
const AGENT_HELLO_MS = 10_000;
/** The most servers remembered as reached (for opening links ahead); past it the set starts again. */
const MAX_REACHED = 1024;
/** How long links wait for an agent to come back after the one they used went away. */
const AGENT_BACK_MS = 5000;

/**
 * The client an application creates (`createClient`): its links ride the
 * host agent when one runs for this user (C11: one session per server for
 * every application on the host), else a session table in this process
 * (client.ts), with the same API either way. The choice is made at the
 * first connect and kept: `usesAgent` says which it was.
 */
export class HostClient {
  #options: HostClientOptions;
  #socketPath: string;
  #mode: Promise<"agent" | "local"> | null = null;
  #local: PerilinkClient | null = null;
  /** The connection to the agent (the last one opened), and the attempt to open one under way. */
  #current: AgentConnection | null = null;
  #opening: Promise<AgentConnection> | null = null;
  #links = new Set<AgentLink>();
  /** Where connect() may open links ahead (AgentLink.openAhead): what was reached, on which connection. */
  #reached = new Set<string>();
  #reachedConn: AgentConnection | null = null;
  /** Ahead opens of links closed before the agent answered them: settle when it has. */
  #unanswered = new Set<Promise<void>>();
  #closed = false;
  /** Aborted by close(): an attempt to reach the agent under way gives up at once. */
  #closing = new AbortController();

  constructor(options: HostClientOptions = {}) {
    this.#options = options;
    this.#socketPath = options.agentSocket ?? agentSocketPath();
    if (options.agent === false) this.#useLocal();
  }

  /** True once links go through the agent, false once they stay in this process, null before the first connect. */
  get usesAgent(): boolean | null {
    return this.#local !== null ? false : this.#current !== null ? true : null;
  }

  #useLocal(): PerilinkClient {
    const { agent: _a, agentSocket: _s, ...local } = this.#options;
    this.#local ??= createLocalClient(local);
    this.#mode = Promise.resolve("local");
    return this.#local;
  }

  #choose(): Promise<"agent" | "local"> {
    this.#mode ??= (async () => {
      const want = this.#options.agent ?? "auto";
      let present = false;
      try {
        if (!(await checkAgentSocket(this.#socketPath))) throw new AgentError(`Cannot use the host agent: none runs at ${this.#socketPath}; start one with "perilink agent"`);
        present = true;
        await this.agent();
        return "agent";
      } catch (err) {
        if (err instanceof ClientClosedError) {
          this.#mode = null;
          throw err; // closed meanwhile: not in-process either
        }
        if (want === true) {
          this.#mode = null;
          throw err;
        }
        // "auto": no agent — in-process, silently; one that is not ours (never talked to) or that did not
        // answer (stale, full) — in-process too, with a warning: this process's sessions are not shared.
        if (present || (err instanceof AgentError && err.message.includes("someone else"))) process.emitWarning(`${(err as Error).message} (working in-process: this process's sessions are not shared)`, { code: "PERILINK_AGENT" });
        this.#useLocal();
        return "local";
      }
    })();
    return this.#mode;
  }

  /**
   * The connection to the agent, opened again if the last one ended. Once
   * links used an agent, a new one is waited for (up to AGENT_BACK_MS: a
   * restart by systemd, a replacement) before links give up on it.
   */
  agent(): Promise<AgentConnection> {
    if (this.#closed) return Promise.reject(new ClientClosedError("Cannot reach the host agent: the client is closed; create a new one"));
    const current = this.#current;
    if (current !== null && !current.closed && !current.draining) return Promise.resolve(current);
    // One attempt at a time, shared by every link that asks meanwhile: sixty links that lost their
    // agent wait for one new one together, not sixty times AGENT_BACK_MS one after another.
    this.#opening ??= this.#open(this.#current !== null).finally(() => (this.#opening = null));
    return this.#opening;
  }

  async #open(wait: boolean): Promise<AgentConnection> {
    const deadline = Date.now() + (wait ? AGENT_BACK_MS : 0);
    for (let crossed = 0; ; ) {
      let conn: AgentConnection;
      try {
        if (wait && !(await checkAgentSocket(this.#socketPath))) throw Object.assign(new Error("no socket"), { code: "ENOENT" });
        // Waiting for an agent to come back, its hello gets what is left of that wait (at least 2 s), not the full 10 s.
        const helloMs = wait ? Math.min(AGENT_HELLO_MS, Math.max(2000, deadline - Date.now())) : AGENT_HELLO_MS;
        conn = await AgentConnection.open(this.#socketPath, AGENT_CONNECT_MS, helloMs, this.#closing.signal);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if ((code === "ENOENT" || code === "ECONNREFUSED") && Date.now() < deadline && !this.#closed) {
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        // Its hello crossed a handover (the agent's bye came first): the next agent has the socket already.
        if (err instanceof AgentError && err.unsent && crossed++ < 2 && !this.#closed) continue;
        if (this.#closed) throw new ClientClosedError("Cannot reach the host agent: the client was closed meanwhile");
        throw err instanceof AgentError ? err : new AgentError(`Cannot reach the host agent at ${this.#socketPath}: ${(err as Error).message}; start one with "perilink agent"`, { cause: err });
      }
      if (this.#closed) {
        conn.close();
        throw new ClientClosedError("Cannot reach the host agent: the client was closed meanwhile");
      }
      this.#current = conn;
      return conn;
    }
  }

  /** The servers (host|port|trustNew|expectKey) links of this process reached through `conn`: forgotten when the connection changes. */
  #reachedOn(conn: AgentConnection): Set<string> {
    if (this.#reachedConn !== conn) {
      this.#reachedConn = conn;
      this.#reached.clear();
    }
    return this.#reached;
  }

  async connect(options: ConnectOptions): Promise<LinkApi> {
    if (this.#closed) throw new ClientClosedError("Cannot connect: the client is closed; create a new one");
    if ((await this.#choose()) === "local") return this.#local!.connect(options);
    const link = new AgentLink({ agent: () => this.agent() }, options);
    // Links closed before their ahead open was answered count apart in the agent, within the same bound: at it, wait for one.
    while (this.#current !== null && this.#unanswered.size >= this.#current.linksAhead && this.#unanswered.size > 0) await Promise.race(this.#unanswered);
    const conn = this.#current;
    const key = `${options.host}|${options.port}|${options.trustNew === true}|${options.expectKey ?? ""}`;
    const reached = conn !== null && !conn.closed && !conn.draining ? this.#reachedOn(conn) : null;
    if (reached?.has(key) && this.#links.size < conn!.linksAhead) {
      // Reached through this agent already: the link opens behind its first use, as a cached connect does in-process.
      link.openAhead(conn!).catch(() => reached.delete(key));
    } else {
      await link.open();
      if (this.#current !== null) {
        const known = this.#reachedOn(this.#current);
        if (known.size >= MAX_REACHED) known.clear();
        known.add(key);
      }
    }
    this.#links.add(link);
    link.once("close", () => {
      this.#links.delete(link);
      const answering = link.answering;
      if (answering === null) return;
      const settled = answering.then(
        () => void this.#unanswered.delete(settled),
        () => void this.#unanswered.delete(settled),
      );
      this.#unanswered.add(settled);
    });
    return link;
  }

  /** This process's links: from the table here, or (through the agent) as the agent described them. */
  sessions(): SessionRow[] {
    if (this.#local) return this.#local.sessions();
    return [...this.#links].map((l) => ({
      managementNumber: l.managementNumber,
      app: l.app,
      requestedHost: l.requestedHost,
      requestedAddress: l.requestedHost,
      requestedPort: l.requestedPort,
      communicationAddress: null,
      communicationPort: null,
      serverId: l.serverId,
      keyFingerprint: "",
      sessionNumber: l.sessionNumber,
      refCount: 0,
      state: l.state === "ready" ? "active" : l.state === "closed" ? "closed" : "moving",
      line: null,
    }));
  }

  /** The agent's whole table: every process's links and the sessions under them (`perilink sessions`). */
  async agentTable(): Promise<AgentTable> {
    const { payload } = await (await this.agent()).call({ t: "sessions" });
    return JSON.parse(payload.toString("utf8")) as AgentTable;
  }

  /** The addresses this process's own table knows (through the agent: none; `agentAddresses()` has the agent's). */
  addresses(): AddressRow[] {
    return this.#local?.addresses() ?? [];
  }

  /** Every address the agent's table knows, with where it came from (through the agent); in-process, `addresses()`. */
  async agentAddresses(): Promise<AddressRow[]> {
    if ((await this.#choose()) === "local") return this.#local!.addresses();
    const { payload } = await (await this.agent()).call({ t: "addresses" });
    return JSON.parse(payload.toString("utf8")) as AddressRow[];
  }

  /** This process's own client metrics: through the agent none (an empty exposition); `agentMetrics()` has the agent's. */
  metrics(): string {
    return this.#local?.metrics() ?? "# EOF\n";
  }

  /** The counters of the table this process uses, as OpenMetrics text: the agent's (its processes, links, and its table's client metrics) through the agent; in-process, `metrics()`. */
  async agentMetrics(): Promise<string> {
    if ((await this.#choose()) === "local") return this.#local!.metrics();
    const { header } = await (await this.agent()).call({ t: "metrics" });
    return String(header.text);
  }

  /** Forgets `target` (client.ts): in this process's table, or in the agent's, which every process of this user shares. */
  async forget(target: string): Promise<{ records: number; pins: number }> {
    if ((await this.#choose()) === "local") return this.#local!.forget(target);
    const { header } = await (await this.agent()).call({ t: "forget", target });
    return { records: Number(header.records) || 0, pins: Number(header.pins) || 0 };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort();
    for (const l of this.#links) l.close();
    this.#links.clear();
    // An attempt to reach an agent under way gives up now (#closing); it is not waited for.
    this.#current?.close();
    await this.#local?.close();
  }
}

/** Creates a client (docs/client.md): through the host agent when one runs, else in this process. */
export function createClient(options: HostClientOptions = {}): HostClient {
  return new HostClient(options);
}
