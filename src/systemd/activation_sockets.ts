import { SocketActivationError } from "../errors.ts";
import { detectRuntime } from "../runtime/runtime.ts";
import { parseSocketName, type InheritedSocket } from "../server/inherited_socket.ts";
import { LISTEN_FDS_START, takeListenFds } from "./listen_fds.ts";
import { socketOfFd, type BoundSocket } from "./socket_of_fd.ts";

/**
 * systemd socket activation (S7): when `LISTEN_PID` is this process and
 * `LISTEN_FDS` counts sockets from fd 3, those sockets are adopted instead of
 * binding the ports again (they are the same inherited descriptors an upgrade
 * passes, and go the same way through the listener set). Each is matched to a
 * `--listen` entry by its name when `LISTEN_FDNAMES` gives it perilink's form
 * `tcp@ADDRESS@PORT` / `udp@ADDRESS@PORT` (FileDescriptorName=; the socket may
 * then be bound elsewhere, e.g. a wildcard), else by the address and port the
 * kernel says it is bound to. Entries with no passed socket are bound as usual.
 * The variables are removed, so processes started later do not see them.
 */
export function takeActivationSockets(env: NodeJS.ProcessEnv = process.env, pid = process.pid, describe: (fd: number) => BoundSocket | null = socketOfFd): InheritedSocket[] {
  // systemd always sets LISTEN_PID: descriptors passed without it are not from systemd.
  if (env.LISTEN_PID === undefined) return [];
  const passed = takeListenFds(env, pid);
  if (passed === null) return [];
  const { count, names } = passed;
  if (count > MAX_ACTIVATION_FDS) {
    throw new SocketActivationError(`Cannot use the sockets systemd passed: LISTEN_FDS=${count} is more than ${MAX_ACTIVATION_FDS}; check the socket unit`);
  }
  if (!detectRuntime().canInheritSockets) {
    throw new SocketActivationError(
      `Cannot use the sockets systemd passed (LISTEN_FDS=${count}): ${detectRuntime().name === "deno" ? "Deno" : "this runtime"} cannot adopt a listening socket; run perilink on Node.js, or stop the .socket unit so perilink binds its ports`,
    );
  }
  const out: InheritedSocket[] = [];
  for (let i = 0; i < count; i++) {
    const fd = LISTEN_FDS_START + i;
    const bound = describe(fd);
    const named = parseSocketName(names[i] ?? "");
    if (!bound) {
      throw new SocketActivationError(
        `Cannot use the socket systemd passed as fd ${fd}${names[i] ? ` ("${names[i]}")` : ""}: it is not a TCP or UDP socket; perilink serves ListenStream= and ListenDatagram= sockets with an address and port`,
      );
    }
    if (named && named.transport !== bound.transport) {
      throw new SocketActivationError(
        `Cannot use the socket systemd passed as fd ${fd}: it is named "${names[i]}" but is a ${bound.transport.toUpperCase()} socket; name it ${bound.transport}@…`,
      );
    }
    out.push({ fd, transport: bound.transport, address: named?.address ?? bound.address, port: named?.port ?? bound.port, fromSystemd: true });
  }
  return out;
}

/** A socket unit passes a handful of sockets; anything near this is a mistake. */
const MAX_ACTIVATION_FDS = 1024;
