import type { AppLifecycle } from "./app_lifecycle.ts";
import type { ConnectionService } from "./connection_service.ts";
import type { InheritedSocket } from "./inherited_socket.ts";
import type { InterfaceAddress } from "./interface_addresses.ts";
import type { ListenSpec } from "./listen_spec.ts";
import type { ServerEvents } from "./server_events.ts";
import type { AcceptGate, DrainingGeneration, ServingProcess, StartupTakeover, UpgradeDriver } from "./server_handoff.ts";

/**
 * @internal What the layers above wire into a server (src/serve/): sockets
 * handed over or passed by systemd, the accept semaphore, the upgrade
 * machinery, a manager's service processes. An embedded server has none.
 */
export interface ServerParts {
  /** The listen entries with the ports an older generation chose for `…:0` (default: `config.listen`). */
  listen?: ListenSpec[];
  interfaces?: () => InterfaceAddress[];
  /** Bind TCP with SO_REUSEPORT (Deno: how an upgrade binds the ports alongside the old process). */
  reusePort?: boolean;
  /** Bind the UDP responders only once the old process has let go of them. */
  deferUdp?: boolean;
  inherited?: InheritedSocket[];
  /** Exclusive accept rights on the port group (S4). */
  gate?: AcceptGate | null;
  /** This process was started by an upgrade: it takes over from the old one. */
  takeover?: StartupTakeover | null;
  /** Makes this server replaceable by a new program version (S4). */
  upgrades?: (server: ServingProcess, olderGenerations: () => DrainingGeneration[]) => UpgradeDriver;
  /** Serves connections through service processes instead of here (S5). */
  group?: ConnectionService | null;
  /** The app's ready() and drain() hooks, and what passes between generations (none in a manager: its service processes run them). */
  lifecycle?: AppLifecycle | null;
  events?: ServerEvents;
}
