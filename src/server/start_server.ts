import { ConfigError } from "../errors.ts";
import { createLogger, type Logger } from "../logger.ts";
import type { LoadedApp, SessionApp } from "./app.ts";
import { resolveConfig, type ServerConfig, type ServerConfigInput } from "./config.ts";
import { loadOrCreateIdentity } from "./identity.ts";
import type { InterfaceAddress } from "./interface_addresses.ts";
import { loadApp, rawServer, type CreateServer } from "./load_app.ts";
import { PerilinkServer, type ServerParts } from "./server.ts";
import type { ServerEvents } from "./server_events.ts";

export interface StartServerOptions extends ServerConfigInput {
  /** A loaded app object instead of a name or path (embedding, tests). */
  appObject?: SessionApp | { createServer: CreateServer };
  logger?: Logger;
  /** Generation number of this process; 1 for a fresh start. */
  generation?: number;
  /** Whether to open the control socket in the state directory (default true). */
  control?: boolean;
  /** Source of the device's addresses for `auto` entries (tests inject a list). */
  interfaces?: () => InterfaceAddress[];
  /** Told about upgrades and drains. */
  events?: ServerEvents;
  /**
   * @internal `false` in a service process of a group (S5): it opens no
   * listener of its own; its manager passes it connections or listening sockets.
   */
  listeners?: boolean;
}

/**
 * Starts a server: validates the configuration, loads (or creates) the
 * identity, loads the app, opens the control socket and every listener.
 * This is the embeddable server; `perilink serve` wires upgrades, service
 * processes and systemd around the same server (src/serve/).
 */
export async function startServer(options: StartServerOptions = {}): Promise<PerilinkServer> {
  const { appObject, logger, generation, control, interfaces, events, listeners = true, ...input } = options;
  const config = resolveConfig(input);
  if (config.workers.max > 1 && listeners) {
    throw new ConfigError('Cannot start service processes: only "perilink serve" knows the program to start them with; leave "workers" at 1 when embedding');
  }
  return openServer(config, {
    log: logger ?? createLogger(config.logLevel),
    generation: generation ?? 1,
    control: control ?? true,
    ...(appObject ? { appObject } : {}),
    parts: { ...(listeners ? {} : { listen: [] }), ...(interfaces ? { interfaces } : {}), ...(events ? { events } : {}) },
  });
}

/** @internal How the serve layer opens a server from a resolved configuration. */
export interface OpenServerOptions {
  log: Logger;
  generation: number;
  control: boolean;
  appObject?: StartServerOptions["appObject"];
  /** Made once the identity and app are loaded, before the server exists (a manager's service processes). */
  group?: (config: ServerConfig) => Promise<ServerParts["group"]>;
  parts: ServerParts;
}

/** @internal Loads the identity and the app, makes the server, and starts it. */
export async function openServer(config: ServerConfig, options: OpenServerOptions): Promise<PerilinkServer> {
  const identity = await loadOrCreateIdentity(config.stateDir);
  const appObject = options.appObject;
  const app: LoadedApp = appObject
    ? "createServer" in appObject && typeof appObject.createServer === "function"
      ? { kind: "raw", name: "embedded", server: await rawServer("embedded", appObject.createServer) }
      : { kind: "session", name: "embedded", app: appObject as SessionApp }
    : await loadApp(config.app);
  if (app.kind === "raw" && config.access === "keys") {
    // Trusted keys are checked on sealed sessions; a raw app speaks its own protocol to whoever connects.
    throw new ConfigError(
      `Cannot serve raw-mode app ${app.name} with access "keys": trusted keys protect session-mode apps only; if the app authenticates its clients, use "access": "open"`,
    );
  }
  // A manager (S5) starts its service processes before it accepts, or takes over, anything.
  const group = options.group ? await options.group(config) : null;
  const server = new PerilinkServer(config, identity, app, options.log, options.generation, { ...options.parts, group });
  try {
    await server.start(options.control);
  } catch (err) {
    await group?.drain(0);
    throw err;
  }
  return server;
}
