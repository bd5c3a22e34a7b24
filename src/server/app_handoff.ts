import { closeSync, fstatSync } from "node:fs";
import net from "node:net";
import { HandoffError } from "../errors.ts";
import { tcpServerFd, udpSocketFd } from "../runtime/handle_fds.ts";
import type { Handoff, HandoffItem } from "./app.ts";

/** The most a state may take as JSON text (UTF-8 bytes). */
export const MAX_HANDOFF_STATE_BYTES = 64 * 1024;

const HANDOFF = "PERILINK_HANDOFF";

/** What a descriptor may be named: it travels in `LISTEN_FDNAMES`, whose names cannot hold ':'. */
const NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;

/** What the previous generation handed over, as the layers above found it. */
export interface HandoffReceived {
  /** Descriptors passed by the previous generation, by name. */
  fds?: { name: string; fd: number }[];
  /** Asks the previous generation for its state: JSON text, or null when it put none. */
  state?: () => Promise<string | null>;
}

/**
 * The app's side of what passes between generations at an upgrade (S4,
 * docs/apps.md "Upgrades"): what the previous generation passed (taken by
 * name until `ready()` has settled, then the rest is closed) and what this
 * one puts for the next. `refusal` says why this process passes nothing on
 * (a runtime that cannot pass descriptors, a service process).
 */
export class AppHandoff implements Handoff {
  #incoming = new Map<string, number>();
  #fetch: (() => Promise<string | null>) | null;
  #state: unknown = undefined;
  #taking = true;
  #outgoing = new Map<string, HandoffItem>();
  #outState: string | null = null;
  #refusal: { fds?: string | null; state?: string | null };
  #handedOver = false;

  constructor(received: HandoffReceived = {}, refusal: { fds?: string | null; state?: string | null } = {}) {
    for (const { name, fd } of received.fds ?? []) this.#incoming.set(name, fd);
    this.#fetch = received.state ?? null;
    this.#refusal = refusal;
  }

  take(name: string): number | undefined {
    if (!this.#taking) return undefined;
    const fd = this.#incoming.get(name);
    this.#incoming.delete(name);
    return fd;
  }

  state(): unknown {
    return this.#state;
  }

  put(name: string, item: HandoffItem | null): void {
    if (typeof name !== "string" || !NAME_RE.test(name)) throw new HandoffError(HANDOFF, `Cannot hand on ${JSON.stringify(name)}: a name is 1 to 64 of A-Z a-z 0-9 . _ -`);
    if (item === null) {
      this.#outgoing.delete(name);
      return;
    }
    if (this.#refusal.fds) throw new HandoffError(HANDOFF, `Cannot hand on "${name}": ${this.#refusal.fds}`);
    if (!this.#outgoing.has(name) && this.#outgoing.size >= MAX_HANDED_ON) throw new HandoffError(HANDOFF, `Cannot hand on "${name}": ${MAX_HANDED_ON} descriptors are handed on already, the most; withdraw one with put(name, null)`);
    if (typeof item === "number") {
      // What the number names now: a number closed and given to another file later is refused, not passed on as this one.
      this.#files.set(name, fileOf(descriptorOf(name, item)));
    } else this.#files.delete(name); // a socket's descriptor is read at the upgrade
    this.#outgoing.set(name, item);
  }

  /** Device and inode of each numbered descriptor when it was put. */
  #files = new Map<string, string>();

  putState(value: unknown): void {
    if (this.#refusal.state) throw new HandoffError(HANDOFF, `Cannot hand on a state: ${this.#refusal.state}`);
    let text: string | undefined;
    try {
      text = value === undefined ? undefined : JSON.stringify(value);
    } catch {
      // a cycle, a BigInt: not JSON
    }
    if (text === undefined && value !== undefined) throw new HandoffError(HANDOFF, "Cannot hand on a state: it is not JSON");
    const bytes = Buffer.byteLength(text ?? "");
    if (bytes > MAX_HANDOFF_STATE_BYTES) {
      throw new HandoffError("PERILINK_HANDOFF_TOO_LARGE", `Cannot hand on a state of ${bytes} bytes as JSON: at most ${MAX_HANDOFF_STATE_BYTES} pass; hand on a file instead`);
    }
    this.#outState = text ?? null;
  }

  get handedOver(): boolean {
    return this.#handedOver;
  }

  /** @internal Fetches the previous generation's state, before `ready()`. A text that is no JSON, or too large, counts as none. */
  async receive(): Promise<void> {
    const text = this.#fetch ? await this.#fetch() : null;
    this.#fetch = null;
    if (text === null || Buffer.byteLength(text) > MAX_HANDOFF_STATE_BYTES) return;
    try {
      this.#state = JSON.parse(text);
    } catch {
      // not from a perilink parent of ours: nothing was handed over
    }
  }

  /** @internal Ends `take()`: closes every passed descriptor the app did not take; returns their names. */
  closeUntaken(): string[] {
    this.#taking = false;
    const names = [...this.#incoming.keys()];
    for (const fd of this.#incoming.values()) {
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
    }
    this.#incoming.clear();
    return names;
  }

  /** @internal The descriptors to pass at an upgrade now; throws `HandoffError` naming one that is no longer open. */
  outgoing(): { name: string; fd: number }[] {
    return [...this.#outgoing].map(([name, item]) => {
      const fd = descriptorOf(name, item);
      const was = this.#files.get(name);
      if (was !== undefined && fileOf(fd) !== was) {
        throw new HandoffError(HANDOFF, `Cannot hand on "${name}": descriptor ${fd} is another file than the one put under that name (it was closed and the number reused); put("${name}", null) when you close it`);
      }
      return { name, fd };
    });
  }

  /** @internal The state to pass (JSON text), or null. */
  outgoingState(): string | null {
    return this.#outState;
  }

  /** @internal Called when this process drains: whether a new generation took over (a service process's manager may have said so first). */
  markHandedOver(value: boolean): void {
    this.#handedOver ||= value;
  }
}

/** Handed-on descriptors one process may put, at most. */
const MAX_HANDED_ON = 64;

/** What an open descriptor is: device and inode (another file under the same number differs). */
function fileOf(fd: number): string {
  const st = fstatSync(fd);
  return `${st.dev}:${st.ino}`;
}

/** The open descriptor behind `item` (stdin, stdout and stderr pass to every process anyway); throws `HandoffError`. */
function descriptorOf(name: string, item: HandoffItem): number {
  let fd = -1;
  try {
    fd = typeof item === "number" ? item : item instanceof net.Server || item instanceof net.Socket ? tcpServerFd(item as net.Server) : udpSocketFd(item);
    if (fd > 2) fstatSync(fd);
  } catch {
    fd = -1;
  }
  if (!Number.isInteger(fd) || fd < 3) {
    const what = typeof item === "number" ? `descriptor ${item}` : "it";
    throw new HandoffError(HANDOFF, `Cannot hand on "${name}": ${what} is not an open descriptor above 2, socket or server (put("${name}", null) withdraws one that was closed)`);
  }
  return fd;
}
