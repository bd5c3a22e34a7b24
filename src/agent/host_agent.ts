import { spawn } from "node:child_process";
import { linkSync, promises as fs, renameSync, rmSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { AgentError, StateDirError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { ensurePrivateDir } from "../runtime/state_dir.ts";
import { tcpServerFd } from "../runtime/handle_fds.ts";
import { TARGET } from "../target.ts";
import { MetricsText } from "../open_metrics.ts";
import { createClient, type PerilinkClient } from "../client/client.ts";
import type { ClientOptions } from "../client/client_options.ts";
import { SlotShare } from "./slot_share.ts";
import { AgentPeer, type AgentLimits } from "./agent_peer.ts";
import { LinkOpening } from "./link_opening.ts";
import { isLive } from "../server/control_server.ts";
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
  /** How to start this program again for an upgrade (`perilink agent upgrade`, SIGUSR2); without it the agent cannot replace itself. */
  respawn?: { cmd: string; args: string[] };
  /** This process was started by an upgrade: its socket came from the old agent, whose path it removes at its own end. */
  takeover?: boolean;
  /** How long an agent that handed over lets its processes' requests in flight finish. */
  drainTimeoutMs?: number;
}

/** The environment variable that tells a new agent it takes over from an old one. */
export const AGENT_HANDOFF_ENV = "PERILINK_AGENT_HANDOFF";

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
  /** Each server session's requests in flight, shared out between the processes (slot_share.ts). */
  #share = new SlotShare();
  #limits: AgentLimits;
  #log: Logger;
  #ino = 0;
  #closed: Promise<void> | null = null;
  #options: HostAgentOptions;
  #upgrading: Promise<number> | null = null;
  #noPeers: (() => void) | null = null;
  /** Resolves once this agent handed over to a new one and its processes left (or the drain deadline passed). */
  readonly handedOver: Promise<void>;
  #handedOver!: () => void;

  private constructor(options: HostAgentOptions) {
    this.socketPath = options.socketPath;
    this.#options = options;
    this.handedOver = new Promise((r) => (this.#handedOver = r));
    this.#limits = { ...TARGET.agent, ...options.limits };
    this.#log = options.log;
    // One session per server for every process: one process's unread body must not stall the others' streams.
    this.client = createClient({ ...options.client, creditOnArrival: true });
    const maxPayload = 16 * TARGET.client.maxFrameBytes;
    this.#server = net.createServer((socket) => {
      if (this.#peers.size >= this.#limits.maxProcesses) {
        this.#log.warn("agent_peer_refused", { peers: this.#peers.size, why: "maxProcesses" });
        socket.destroy();
        return;
      }
      const peer = new AgentPeer(socket, this.client, this.#limits, maxPayload, this.#log, {
        closed: (p) => {
          this.#peers.delete(p);
          if (this.#peers.size === 0) this.#noPeers?.();
        },
        sessions: () => this.table(),
        metrics: () => this.metrics(),
        upgrade: () => this.upgrade(),
        share: this.#share,
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
      await privateSocketDir(path.dirname(p));
      const there = await fs.lstat(p).catch(() => null);
      if (there !== null) {
        if (!there.isSocket()) throw new AgentError(`Cannot start the agent: ${p} is there and is not a socket; remove it, or choose another --socket`);
        await checkAgentSocket(p);
        if (await isLive(p)) throw new AgentError(`Cannot start the agent: another one answers at ${p}; stop it, or set PERILINK_AGENT_SOCKET`);
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
    if (fd === undefined) await fs.chmod(p, 0o600);
    // systemd's socket is systemd's to remove; ours, or one an old agent handed over, is ours.
    if (fd === undefined || this.#options.takeover) this.#ino = (await fs.stat(p).catch(() => ({ ino: 0 }))).ino;
    this.#log.info("agent_started", { socket: p, pid: process.pid, fromSystemd: fd !== undefined });
  }

  /** The agent's session table's client metrics (client_metrics.ts), with the agent's own processes and links. */
  metrics(): string {
    let links = 0;
    let inflight = 0;
    for (const p of this.#peers) {
      links += p.links.size;
      inflight += p.inflight;
    }
    const own = new MetricsText()
      .gauge("perilink_agent_processes", "Application processes connected to the agent", this.#peers.size)
      .gauge("perilink_agent_links", "Links the processes hold through the agent", links)
      .gauge("perilink_agent_requests_inflight", "Requests in flight through the agent", inflight)
      .text();
    return own.slice(0, -"# EOF\n".length) + this.client.metrics();
  }

  /** Processes connected now. */
  get processes(): number {
    return this.#peers.size;
  }

  /** The table: one row per link (with the process holding it), and the sessions under them. */
  table(): AgentTable {
    const owner = new Map<number, { peer: AgentPeer; link: number }>();
    for (const peer of this.#peers) for (const [id, link] of peer.links) if (!(link instanceof LinkOpening)) owner.set(link.managementNumber, { peer, link: id });
    const rows = this.client.sessions();
    const links: AgentLinkRow[] = [];
    for (const r of rows) {
      if (r.managementNumber === 0) continue; // a session no link rides: in `sessions` below
      const o = owner.get(r.managementNumber);
      links.push({ pid: o?.peer.pid ?? 0, command: o?.peer.command ?? "", link: o?.link ?? 0, ...r, address: r.communicationAddress });
    }
    // Every session: active (links ride it), lingering (kept for lingerMs after its last link), draining (finishing after a move).
    const sessions = new Map<string, unknown>();
    for (const r of rows) {
      const key = `${r.serverId}/${r.sessionNumber}`;
      if (r.sessionNumber === null || sessions.has(key)) continue;
      const state = r.managementNumber === 0 ? r.state : "active";
      sessions.set(key, { serverId: r.serverId, keyFingerprint: r.keyFingerprint, sessionNumber: r.sessionNumber, address: r.communicationAddress, port: r.communicationPort, links: r.managementNumber === 0 ? 0 : r.refCount, line: r.line, state });
    }
    return { links, sessions: [...sessions.values()] };
  }

  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  /**
   * Replaces this agent with a new process of the same program, seamlessly:
   * the listening socket is handed over open (no application finds it
   * closed), and once the new agent serves, every process is told to move
   * (GOAWAY); their requests in flight finish here. Resolves with the new
   * agent's pid. Node.js only (Deno cannot pass a descriptor).
   */
  upgrade(): Promise<number> {
    this.#upgrading ??= this.#upgrade().finally(() => (this.#upgrading = null));
    return this.#upgrading;
  }

  async #upgrade(): Promise<number> {
    const respawn = this.#options.respawn;
    if (!respawn || this.#closed) throw new AgentError("Cannot upgrade the agent: it was not started by perilink agent, or it is stopping");
    const fd = tcpServerFd(this.#server);
    const child = spawn(respawn.cmd, respawn.args, {
      stdio: ["ignore", "inherit", "inherit", fd, "ipc"],
      env: { ...process.env, LISTEN_FDS: "1", LISTEN_FDNAMES: "agent", [AGENT_HANDOFF_ENV]: "1" },
      detached: false,
    });
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 20_000);
      child.once("message", (m: unknown) => {
        clearTimeout(timer);
        resolve((m as { t?: string })?.t === "ready");
      });
      child.once("exit", () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (!ready) {
      child.kill("SIGKILL");
      throw new AgentError("Cannot upgrade the agent: the new agent did not start (see its log lines); this one carries on");
    }
    child.disconnect();
    child.unref();
    this.#log.info("agent_handed_over", { to: child.pid, processes: this.#peers.size });
    this.#ino = 0; // the path is the new agent's now
    this.#stopAccepting();
    const drained = new Promise<void>((r) => (this.#noPeers = r));
    for (const p of this.#peers) p.goAway();
    if (this.#peers.size === 0) this.#noPeers?.();
    const timer = setTimeout(() => this.#noPeers?.(), this.#options.drainTimeoutMs ?? 30_000);
    void drained.then(() => {
      clearTimeout(timer);
      this.#handedOver();
    });
    return child.pid ?? 0;
  }

  /**
   * Stops accepting on the socket the new agent now serves too. Closing a
   * listening Unix socket removes its path (libuv unlinks it): a second name
   * for the same socket keeps it, and takes the path back at once.
   */
  #stopAccepting(): void {
    const keep = `${this.socketPath}.handover`;
    let linked = false;
    try {
      rmSync(keep, { force: true });
      linkSync(this.socketPath, keep);
      linked = true;
    } catch (err) {
      this.#log.warn("agent_handover_link_failed", { error: err });
    }
    this.#server.close();
    if (linked) renameSync(keep, this.socketPath);
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

/**
 * The socket's directory: made 0700 if it is not there; if it is, it must
 * already be this user's alone (0700, no link) — it is refused, not changed
 * (`--socket ~/agent.sock` must not make the home directory private).
 */
async function privateSocketDir(dir: string): Promise<void> {
  const st = await fs.lstat(dir).catch(() => null);
  if (st === null) return ensurePrivateDir(dir);
  const uid = typeof process.getuid === "function" ? process.getuid() : undefined;
  if (st.isSymbolicLink() || !st.isDirectory() || (st.mode & 0o077) !== 0 || (uid !== undefined && st.uid !== uid)) {
    throw new StateDirError(`Cannot start the agent in ${dir}: the socket's directory must be this user's alone (mode 0700, not a link); give the socket a directory of its own (--socket DIR/agent.sock)`);
  }
  await ensurePrivateDir(dir); // and the directories above it
}
