import { createHash, randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import { PerilinkError } from "../errors.ts";
import { writeFileAtomic } from "./state_dir.ts";

/** The secret, inside the 0700 state directory, that names a port group's semaphore. */
export const SEMAPHORE_KEY_FILE = "accept.key";

/** How often a waiting process retries; the holder's release is usually announced, so this is the fallback. */
const RETRY_MS = 5;

export class SemaphoreTimeoutError extends PerilinkError {
  constructor(ms: number) {
    super("PERILINK_SEMAPHORE_TIMEOUT", `Cannot take the accept semaphore: still held after ${ms} ms by another process of this server`);
  }
}

/**
 * The accept semaphore of one port group (S4, S5): a binary semaphore whose
 * holder alone may accept connections on the group's listening sockets.
 *
 * It is a Linux abstract-namespace Unix socket bound under a name derived
 * from a random secret kept in the state directory (0600 in 0700):
 * - binding is exclusive, so at most one process holds it;
 * - the kernel frees the name when the holder's socket closes, including when
 *   the holder dies, so a crashed process never blocks the next one;
 * - other local users cannot read the secret, so they can neither take the
 *   semaphore nor squat its name ahead of us;
 * - any process that can read the state directory can use it: no
 *   parent/child relation is needed (an operator or systemd may start the new one).
 */
export class AcceptSemaphore {
  readonly name: string;
  #held: net.Server | null = null;

  private constructor(name: string) {
    this.name = name;
  }

  /** The semaphore of the port group served from `stateDir` (creates its secret on first use). */
  static async forStateDir(stateDir: string): Promise<AcceptSemaphore> {
    const file = path.join(stateDir, SEMAPHORE_KEY_FILE);
    let secret: string;
    try {
      secret = (await fs.readFile(file, "utf8")).trim();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      secret = randomBytes(32).toString("hex");
      await writeFileAtomic(file, secret + "\n", 0o600);
      // Two processes may race to create it: whoever renamed last wins; read back what is there.
      secret = (await fs.readFile(file, "utf8")).trim();
    }
    const digest = createHash("sha256").update("perilink-accept-semaphore\0").update(secret).digest("hex").slice(0, 40);
    return new AcceptSemaphore(`\0perilink-accept-${digest}`);
  }

  get held(): boolean {
    return this.#held !== null;
  }

  /** Takes the semaphore once if free; true on success. */
  async tryAcquire(): Promise<boolean> {
    if (this.#held) return true;
    const server = net.createServer((c) => c.destroy());
    const ok = await new Promise<boolean>((resolve, reject) => {
      server.once("error", (err: NodeJS.ErrnoException) => (err.code === "EADDRINUSE" ? resolve(false) : reject(err)));
      server.listen({ path: this.name, exclusive: true }, () => resolve(true));
    });
    if (ok) {
      server.unref();
      this.#held = server;
    }
    return ok;
  }

  /** Waits until the semaphore is free and takes it; `SemaphoreTimeoutError` after `timeoutMs`. */
  async acquire(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await this.tryAcquire())) {
      if (Date.now() >= deadline) throw new SemaphoreTimeoutError(timeoutMs);
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
  }

  /** Gives the semaphore up; resolves once the name is free for another process. */
  async release(): Promise<void> {
    const s = this.#held;
    this.#held = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}
