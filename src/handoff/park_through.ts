import type { ChildProcess } from "node:child_process";
import type net from "node:net";
import { tcpServerHandle } from "../runtime/handle_fds.ts";
import type { ParkedSocket } from "../server/listener_sockets.ts";
import { isMessage, type OldToNew } from "./handoff_protocol.ts";

/**
 * A copy of `server`'s listening socket that no event loop here watches, for
 * the old process to keep through an upgrade's probation (S4): its bare
 * handle goes to the new process and comes back (`park`, `parked`), since
 * Node can neither stop watching a listening socket without closing it nor
 * dup() one. Rejects when the new process exits first or does not answer
 * within `timeoutMs`.
 */
export function parkThrough(child: ChildProcess, server: net.Server, timeoutMs: number): Promise<ParkedSocket> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, handle?: ParkedSocket): void => {
      clearTimeout(timer);
      child.off("message", onMessage);
      child.off("exit", onExit);
      if (err) reject(err);
      else resolve(handle!);
    };
    const onMessage = (m: unknown, handle: unknown): void => {
      if (isMessage(m, "parked") && handle) done(null, handle as ParkedSocket);
    };
    const onExit = (): void => done(new Error("the new process exited before it sent the socket back"));
    const timer = setTimeout(() => done(new Error(`the new process did not send the socket back within ${timeoutMs} ms`)), timeoutMs);
    child.on("message", onMessage);
    child.once("exit", onExit);
    try {
      child.send({ t: "park" } satisfies OldToNew, tcpServerHandle(server) as net.Server, (err) => err && done(err));
    } catch (err) {
      done(err as Error);
    }
  });
}
