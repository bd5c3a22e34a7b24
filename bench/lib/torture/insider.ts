import type net from "node:net";
import { loadOrCreateClientKey, type ClientKey } from "../../../src/client/client_key.ts";
import { FrameType } from "../../../src/protocol/constants.ts";
import { encodeChannelOpen } from "../../../src/protocol/payloads.ts";
import type { AttackTarget, Counters } from "./attack.ts";
import type { Stopper } from "./stopper.ts";
import { encodeFrame, openSession, type OpenedSession } from "./raw_session.ts";

/**
 * What the insider attacks share: a host the device trusts (it proves the
 * key of the server's own state directory) that has gone bad. Access
 * control lets it in, so only the budgets stand between it and the
 * device's memory and slots.
 */
export function trustedKey(target: AttackTarget): Promise<ClientKey> {
  return loadOrCreateClientKey(target.stateDir);
}

/**
 * One trusted session from `source` with channel 1 open to the app:
 * null when the server refused it (counted in `refused`) or gave no hello
 * (`noHello`); the caller pauses and tries again.
 */
export async function insiderSession(target: AttackTarget, source: string, key: ClientKey, c: Counters, sockets: Set<net.Socket>): Promise<OpenedSession | null> {
  const s = await admittedSession(target, source, key, c, sockets);
  s?.send(encodeFrame(FrameType.ChannelOpen, 1, 0, encodeChannelOpen({ app: "torture", requestedHost: target.host, requestedPort: target.port })));
  return s;
}

/** One session from `source` proving `key`, counted in `sessions`; null when refused (`refused`) or given no hello (`noHello`). */
export async function admittedSession(target: AttackTarget, source: string, key: ClientKey, c: Counters, sockets: Set<net.Socket>): Promise<OpenedSession | null> {
  let s: OpenedSession;
  try {
    s = await openSession(target.host, target.port, source, 5000, sockets, key);
  } catch {
    c.noHello!++;
    return null;
  }
  if (s.status !== 0) {
    c.refused!++;
    s.socket.destroy();
    return null;
  }
  c.sessions!++;
  return s;
}

/** Resolves true on 'drain', false when the socket closes or the attack stops; a wait over 1 s counts in `stalls` (every flood that never reads uses it). */
export function drained(socket: net.Socket, stopper: Stopper, c: Counters): Promise<boolean> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const done = (ok: boolean): void => {
      socket.off("drain", onDrain);
      socket.off("close", onClose);
      clearInterval(poll);
      if (Date.now() - t0 > 1000) c.stalls!++;
      resolve(ok);
    };
    const onDrain = (): void => done(true);
    const onClose = (): void => done(false);
    const poll = setInterval(() => stopper.stopped && done(false), 100);
    socket.once("drain", onDrain);
    socket.once("close", onClose);
  });
}
