import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import path from "node:path";
import { SemaphoreError } from "../errors.ts";

/** The lock file of a port group's accept semaphore, inside the 0700 state directory. */
export const SEMAPHORE_FILE = "accept.lock";

/** The util-linux command that applies flock(2) to a descriptor we pass it. */
const FLOCK = "flock";
/** flock's exit code when the lock is taken by another (-E), apart from its error codes. */
const CONFLICT = 75;

/**
 * The accept semaphore of one port group (S4, S5): a binary semaphore whose
 * holder alone may accept connections on the group's listening sockets.
 *
 * It is an exclusive flock(2) on `accept.lock` (0600) in the 0700 state
 * directory:
 * - at most one open file description holds it;
 * - the kernel releases it when the holder's descriptor closes, which
 *   includes the holder's death, so a crashed process never blocks the next;
 * - other local users cannot open the file, so they can neither take the
 *   semaphore nor hold it against us;
 * - any process of the service's user may wait on it: no parent/child
 *   relation is needed (an operator or systemd may start the new process).
 *
 * Node has no flock(), so the lock is applied by the `flock` command
 * (util-linux) to *our* descriptor, passed to it as fd 3. A flock belongs to
 * the open file description, which both processes share: when the command
 * exits, the lock stays with our descriptor. Waiting happens in the kernel.
 */
export class AcceptSemaphore {
  readonly path: string;
  #fd: number | null = null;

  constructor(file: string) {
    this.path = file;
  }

  /** The semaphore of the port group served from `stateDir`. */
  static forStateDir(stateDir: string): AcceptSemaphore {
    return new AcceptSemaphore(path.join(stateDir, SEMAPHORE_FILE));
  }

  get held(): boolean {
    return this.#fd !== null;
  }

  /** Takes the semaphore if it is free now; true on success. */
  tryAcquire(): Promise<boolean> {
    return this.#lock(["-n"], 0);
  }

  /** Waits until the semaphore is free and takes it; `PERILINK_SEMAPHORE_TIMEOUT` after `timeoutMs`. */
  async acquire(timeoutMs: number): Promise<void> {
    if (!(await this.#lock(["-w", (Math.max(timeoutMs, 1) / 1000).toFixed(3)], timeoutMs))) {
      throw new SemaphoreError("PERILINK_SEMAPHORE_TIMEOUT", `Cannot take the accept semaphore ${this.path}: still held after ${timeoutMs} ms by another process of this server`);
    }
  }

  /** Gives the semaphore up (closing our descriptor releases the lock). */
  release(): void {
    const fd = this.#fd;
    this.#fd = null;
    if (fd !== null) closeSync(fd);
  }

  async #lock(flags: string[], timeoutMs: number): Promise<boolean> {
    if (this.#fd !== null) return true;
    const fd = openSync(this.path, "a", 0o600);
    let code: number | null;
    try {
      code = await new Promise<number | null>((resolve, reject) => {
        const child = spawn(FLOCK, ["-x", "-E", String(CONFLICT), ...flags, "3"], { stdio: ["ignore", "ignore", "pipe", fd] });
        let err = "";
        child.stderr!.setEncoding("utf8").on("data", (s: string) => (err += s));
        // Bounded even if the command misbehaves: its own -w is the real limit.
        const guard = setTimeout(() => child.kill("SIGKILL"), timeoutMs + 5000);
        child.once("error", (e: NodeJS.ErrnoException) => {
          clearTimeout(guard);
          reject(
            new SemaphoreError(
              "PERILINK_SEMAPHORE",
              e.code === "ENOENT"
                ? "Cannot use the accept semaphore: the flock command is missing; install util-linux"
                : `Cannot use the accept semaphore: ${e.message}`,
            ),
          );
        });
        child.once("close", (c) => {
          clearTimeout(guard);
          if (c !== 0 && c !== CONFLICT) reject(new SemaphoreError("PERILINK_SEMAPHORE", `Cannot use the accept semaphore: flock exited with ${c}: ${err.trim()}`));
          else resolve(c);
        });
      });
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    if (code !== 0) {
      closeSync(fd);
      return false;
    }
    this.#fd = fd;
    return true;
  }
}
