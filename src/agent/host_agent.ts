import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import { AgentError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { ensurePrivateDir } from "../runtime/state_dir.ts";
import { TARGET } from "../target.ts";
import { createClient, type PerilinkClient } from "../client/client.ts";
import type { ClientOptions } from "../client/client_options.ts";
import { AgentPeer, type AgentLimits } from "./agent_peer.ts";
import { checkAgentSocket } from "./agent_socket.ts";

export interface HostAgentOptions {
  /** The Unix socket to listen on (agent_socket.ts: `agentSocketPath()`). */
  socketPath: string;
  /** A listening socket passed by systemd (socket activation) instead of binding `socketPath`. */
  fd?: number;
  /** The session table's options (state directory, limits, names…). */
  client?: ClientOptions;
  limits?: Partial<AgentLimits>;
  log: Logger;
}

/** The agent's table: links with the processes holding them, and the sessions under them (`perilink sessions --json`). */
export interface AgentTable {
  links: AgentLinkRow[];
  sessions: unknown[];
}

/** A link row of the agent's table, with the process that holds it (`perilink sessions`). */
export interface AgentLinkRow {
  pid: number;
  command: string;
  link: number;
  [key: string]: unknown;
}

/**
 * The host agent (C11): one session table for every application of this
 * user on the host, so that a CUPS backend, a tray monitor and a command
 * line open one session per server between them, not one each. It listens
 * on a Unix socket (mode 0600 in a 0700 directory of this user's) and serves
 * each process that connects (agent_peer.ts).
 */
export class HostAgent {
  readonly client: PerilinkClient;
  readonly socketPath: string;
  #server: net.Server;
  #peers = new Set<AgentPeer>();
  #limits: AgentLimits;
  #log: Logger;
  #ino = 0;
  #closed: Promise<void> | null = null;

  private constructor(options: HostAgentOptions) {
    this.socketPath = options.socketPath;
    this.#limits = { ...TARGET.agent, ...options.limits };
    this.#log = options.log;
    this.client = createClient(options.client);
    const maxPayload = 16 * TARGET.client.maxFrameBytes;
    this.#server = net.createServer((socket) => {
      if (this.#peers.size >= this.#limits.maxProcesses) {
        this.#log.warn("agent_peer_refused", { peers: this.#peers.size, why: "maxProcesses" });
        socket.destroy();
        return;
      }
      const peer = new AgentPeer(socket, this.client, this.#limits, maxPayload, this.#log, {
        closed: (p) => this.#peers.delete(p),
        sessions: () => this.table(),
      });
      this.#peers.add(peer);
    });
  }

  static async start(options: HostAgentOptions): Promise<HostAgent> {
    const agent = new HostAgent(options);
    await agent.#listen(options.fd);
    return agent;
  }

  async #listen(fd: number | undefined): Promise<void> {
    const p = this.socketPath;
    if (fd === undefined) {
      await ensurePrivateDir(path.dirname(p));
      if (await checkAgentSocket(p).catch(() => true)) {
        if (await answers(p)) throw new AgentError(`Cannot start the agent: another one answers at ${p}; stop it, or set PERILINK_AGENT_SOCKET`);
        await fs.rm(p, { force: true }); // stale: its agent is gone
      }
    }
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(fd === undefined ? p : { fd }, () => {
        this.#server.off("error", reject);
        resolve();
      });
    });
    if (fd === undefined) {
      await fs.chmod(p, 0o600);
      this.#ino = (await fs.stat(p)).ino;
    }
    this.#log.info("agent_started", { socket: p, pid: process.pid, fromSystemd: fd !== undefined });
  }

  /** Processes connected now. */
  get processes(): number {
    return this.#peers.size;
  }

  /** The table: one row per link (with the process holding it), and the sessions under them. */
  table(): AgentTable {
    const owner = new Map<number, { peer: AgentPeer; link: number }>();
    for (const peer of this.#peers) for (const [id, link] of peer.links) if (link.managementNumber !== undefined) owner.set(link.managementNumber, { peer, link: id });
    const rows = this.client.sessions();
    const links: AgentLinkRow[] = [];
    for (const r of rows) {
      const o = owner.get(r.managementNumber);
      links.push({ pid: o?.peer.pid ?? 0, command: o?.peer.command ?? "", link: o?.link ?? 0, ...r, address: r.communicationAddress });
    }
    const sessions = new Map<string, unknown>();
    for (const r of rows) {
      if (r.sessionNumber !== null && !sessions.has(`${r.serverId}/${r.sessionNumber}`)) {
        sessions.set(`${r.serverId}/${r.sessionNumber}`, { serverId: r.serverId, keyFingerprint: r.keyFingerprint, sessionNumber: r.sessionNumber, address: r.communicationAddress, port: r.communicationPort, links: r.refCount, line: r.line, state: "active" });
      }
    }
    return { links, sessions: [...sessions.values()] };
  }

  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      for (const p of this.#peers) p.socket.destroy();
    });
    await this.client.close();
    const st = await fs.stat(this.socketPath).catch(() => null);
    if (st && st.ino === this.#ino) await fs.rm(this.socketPath, { force: true }).catch(() => {});
    this.#log.info("agent_stopped", { pid: process.pid });
  }
}

function answers(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(p);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}
