import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import { codeShaped, ControlError, PerilinkError, StateDirError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { memoryFigures } from "../runtime/memory_figures.ts";

/** The control socket's file name inside the state directory. */
export const CONTROL_SOCKET = "control.sock";

/** Largest control request line accepted, in bytes. */
const MAX_LINE = 64 * 1024;

export type ControlHandler = (request: Record<string, unknown>) => unknown | Promise<unknown>;

export function controlSocketPath(stateDir: string): string {
  return path.join(stateDir, CONTROL_SOCKET);
}

/**
 * The control socket: a Unix socket file, mode 0600, in the 0700 state
 * directory. One JSON object per line each way: `{"op": "status"}` →
 * `{"ok": true, "result": …}` or `{"ok": false, "error": {code, message}}`.
 */
export class ControlServer {
  #server: net.Server;
  #path: string;
  #handlers: Record<string, ControlHandler>;
  #log: Logger;
  /** Inode of our socket file: on close we remove the path only if it is still ours. */
  #ino = 0;

  private constructor(p: string, handlers: Record<string, ControlHandler>, log: Logger) {
    this.#path = p;
    this.#handlers = handlers;
    this.#log = log;
    this.#server = net.createServer((socket) => this.#serve(socket));
  }

  get path(): string {
    return this.#path;
  }

  /**
   * Listens on `<stateDir>/control.sock`. A stale socket file (nothing
   * answers) is replaced; a live one means another server owns this state
   * directory, which is an error.
   */
  static async listen(
    stateDir: string,
    handlers: Record<string, ControlHandler>,
    log: Logger,
    options: { replace?: boolean } = {},
  ): Promise<ControlServer> {
    const p = controlSocketPath(stateDir);
    // A process taking over from an older generation replaces that one's socket on purpose.
    if (!options.replace && (await isLive(p))) {
      throw new ControlError(`Cannot start: another perilink server is running with state directory ${stateDir}; stop it or use another --state-dir`);
    }
    await fs.rm(p, { force: true });
    const cs = new ControlServer(p, handlers, log);
    await new Promise<void>((resolve, reject) => {
      cs.#server.once("error", reject);
      cs.#server.listen(p, () => {
        cs.#server.off("error", reject);
        resolve();
      });
    });
    await fs.chmod(p, 0o600);
    cs.#ino = (await fs.stat(p)).ino;
    return cs;
  }

  async close(): Promise<void> {
    this.#server.close();
    const st = await fs.stat(this.#path).catch(() => null);
    if (st && st.ino === this.#ino) await fs.rm(this.#path, { force: true }).catch(() => {});
  }

  #serve(socket: net.Socket): void {
    let buf = "";
    socket.setEncoding("utf8");
    socket.on("error", () => {});
    socket.on("data", (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE) {
        socket.end(JSON.stringify({ ok: false, error: { code: "PERILINK_CONTROL", message: "request line too long" } }) + "\n");
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        void this.#answer(socket, line);
      }
    });
  }

  async #answer(socket: net.Socket, line: string): Promise<void> {
    let reply: unknown;
    try {
      const req = JSON.parse(line) as Record<string, unknown>;
      const handler = typeof req?.op === "string" ? this.#handlers[req.op] : undefined;
      if (!handler) throw new ControlError(`Cannot run control request: unknown op ${JSON.stringify(req?.op)}`);
      const result = await handler(req);
      // The process's memory is the runtime's business, not the server's: added here, where status leaves.
      reply = { ok: true, result: req.op === "status" && result !== null && typeof result === "object" ? { ...result, memory: memoryFigures() } : result };
    } catch (err) {
      const e = err as { code?: string; message?: string; reason?: unknown };
      reply = { ok: false, error: { code: e.code ?? "PERILINK_CONTROL", message: e.message ?? String(err), ...(typeof e.reason === "string" ? { reason: e.reason } : {}) } };
      this.#log.debug("control_request_failed", { error: err });
    }
    if (!socket.destroyed) socket.write(JSON.stringify(reply) + "\n");
  }
}

/** Whether something accepts a connection on the Unix socket `p` now (a stale socket file refuses it). */
export function isLive(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(p);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** Sends one control request to the server of `stateDir` and returns its result. */
export async function controlRequest(stateDir: string, request: Record<string, unknown>, timeoutMs = 5000): Promise<unknown> {
  const p = controlSocketPath(stateDir);
  await checkControlSocket(stateDir, p);
  return new Promise((resolve, reject) => {
    const s = net.connect(p);
    let buf = "";
    const timer = setTimeout(() => {
      s.destroy();
      reject(new ControlError(`Cannot reach the server at ${p}: no answer in ${timeoutMs} ms`));
    }, timeoutMs);
    s.setEncoding("utf8");
    s.once("connect", () => s.write(JSON.stringify(request) + "\n"));
    s.on("data", (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      clearTimeout(timer);
      s.destroy();
      try {
        const reply = JSON.parse(buf.slice(0, nl)) as { ok: boolean; result?: unknown; error?: { code: string; message: string; reason?: unknown } };
        if (reply.ok) resolve(reply.result);
        // The server's code as it sent it: one of ours, or the system's (EACCES from an upgrade's spawn).
        else {
          const err = new PerilinkError(typeof reply.error?.code === "string" ? reply.error.code : "PERILINK_CONTROL", reply.error?.message ?? "request failed");
          if (codeShaped(reply.error?.reason)) Object.assign(err, { reason: reply.error.reason });
          reject(err);
        }
      } catch (err) {
        reject(new ControlError(`Cannot read the server's answer at ${p}: ${(err as Error).message}`));
      }
    });
    s.once("close", () => {
      // Closed without a whole answer (the server died or dropped us): say so now, not at the timeout.
      clearTimeout(timer);
      reject(new ControlError(`Cannot finish the control request at ${p}: the server closed the connection without answering (did it exit?)`));
    });
    s.once("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === "EACCES") {
        reject(new ControlError(`Cannot reach the server at ${p}: this user may not open its control socket; run the command as the server's user (or root)`, { cause: err }));
        return;
      }
      const why = err.code === "ENOENT" || err.code === "ECONNREFUSED" ? "no perilink server is running there" : err.message;
      reject(new ControlError(`Cannot reach the server at ${p}: ${why}; start one with "perilink serve --state-dir ${stateDir}"`, { cause: err }));
    });
  });
}

/**
 * Before a command talks to a control socket: its state directory must be
 * no link, writable by nobody else, and this user's or root's (any owner's
 * when root asks), and the socket a socket (not a link) owned by this user
 * or, for root, by the state directory's owner.
 * Otherwise someone else put it there (a fake server could report anything
 * to `status` and `upgrade`): `PERILINK_STATE_DIR_UNSAFE`. A missing socket
 * is left to the connect, which says that no server runs.
 */
async function checkControlSocket(stateDir: string, p: string): Promise<void> {
  const uid = typeof process.getuid === "function" ? process.getuid() : undefined;
  if (uid === undefined) return;
  const [dir, sock] = await Promise.all([fs.lstat(stateDir).catch(() => null), fs.lstat(p).catch(() => null)]);
  if (dir === null) return; // no state directory: the connect says that no server runs
  const unsafe = (why: string): StateDirError => new StateDirError(`Cannot trust the control socket ${p}: ${why}; someone else may have put it there, so nothing was sent to it`);
  // Checked whether or not the socket is there yet: in a directory others may write, one could appear before the connect.
  if (dir.isSymbolicLink() || (dir.mode & 0o022) !== 0 || !(dir.uid === uid || dir.uid === 0 || uid === 0)) {
    throw unsafe("its state directory is a link, writable by others, or another user's");
  }
  if (sock === null) return;
  if (!sock.isSocket()) throw unsafe("it is not a socket");
  if (sock.uid !== uid && !(uid === 0 && sock.uid === dir.uid)) throw unsafe(`it is owned by uid ${sock.uid}, not by this user (uid ${uid})${uid === 0 ? " or the state directory's owner" : ""}`);
}
