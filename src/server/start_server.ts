import { ConfigError } from "../errors.ts";
import { createLogger, type Logger } from "../logger.ts";
import type { AppHooks, LoadedApp, SessionApp } from "./app.ts";
import { resolveConfig, type ServerConfig, type ServerConfigInput } from "./config.ts";
import { loadOrCreateIdentity } from "./identity.ts";
import type { InterfaceAddress } from "./interface_addresses.ts";
import { AppHandoff } from "./app_handoff.ts";
import { AppLifecycle } from "./app_lifecycle.ts";
import { appHooks, loadApp, rawServer, type CreateServer } from "./load_app.ts";
import { PerilinkServer, type ServerParts } from "./server.ts";
import type { ServerEvents } from "./server_events.ts";

export interface StartServerOptions extends ServerConfigInput {
  /** A loaded app object instead of a name or path (embedding, tests). */
  appObject?: SessionApp | ({ createServer: CreateServer } & AppHooks);
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
  /** @internal A service process's handoff (its state passes through the managers); by default it hands nothing on. */
  handoff?: AppHandoff;
}

/**
 * Starts a server: validates the configuration, loads (or creates) the
 * identity, loads the app, opens the control socket and every listener.
 * This is the embeddable server; `perilink serve` wires upgrades, service
 * processes and systemd around the same server (src/serve/).
 */
export async function startServer(options: StartServerOptions = {}): Promise<PerilinkServer> {
  const { appObject, logger, generation, control, interfaces, events, listeners = true, handoff, ...input } = options;
  const config = resolveConfig(input);
  if (config.workers.max > 1 && listeners) {
    throw new ConfigError('Cannot start service processes: only "perilink serve" knows the program to start them with; leave "workers" at 1 when embedding');
  }
  return openServer(config, {
    log: logger ?? createLogger(config.logLevel),
    generation: generation ?? 1,
    control: control ?? true,
    ...(appObject ? { appObject } : {}),
    // Only perilink serve passes things to a next generation (a service process's state, through its manager).
    ...(listeners ? {} : { handoff: handoff ?? new AppHandoff({}, { fds: SERVICE_PROCESS_REFUSAL, state: SERVICE_PROCESS_REFUSAL }) }),
    parts: { ...(listeners ? {} : { listen: [] }), ...(interfaces ? { interfaces } : {}), ...(events ? { events } : {}) },
  });
}

const SERVICE_PROCESS_REFUSAL = "a service process (--workers) hands nothing on";

/** @internal How the serve layer opens a server from a resolved configuration. */
export interface OpenServerOptions {
  log: Logger;
  generation: number;
  control: boolean;
  appObject?: StartServerOptions["appObject"];
  /** What the previous generation handed to the app, and where the app puts what goes to the next (default: nothing passed). */
  handoff?: AppHandoff;
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
      ? { kind: "raw", name: "embedded", server: await rawServer("embedded", appObject.createServer), hooks: appHooks("embedded", [appObject as unknown as Record<string, unknown>]) }
      : { kind: "session", name: "embedded", app: appObject as SessionApp, hooks: appHooks("embedded", [appObject as unknown as Record<string, unknown>]) }
    : await loadApp(config.app);
  if (app.kind === "raw" && config.access === "keys") {
    // Trusted keys are checked on sealed sessions; a raw app speaks its own protocol to whoever connects.
    throw new ConfigError(
      `Cannot serve raw-mode app ${app.name} with access "keys": trusted keys protect session-mode apps only; if the app authenticates its clients, use "access": "open"`,
    );
  }
  // A manager (S5) starts its service processes before it accepts, or takes over, anything.
  const group = options.group ? await options.group(config) : null;
  // With service processes, the app's hooks run in each of them, not in the manager.
  const lifecycle = group ? null : new AppLifecycle(app.name, app.hooks ?? {}, options.handoff ?? new AppHandoff(), options.log);
  // Descriptors an old single process passed reach a manager, where no app can take them: closed.
  const untaken = group ? (options.handoff?.closeUntaken() ?? []) : [];
  if (untaken.length > 0) options.log.info("handoff_untaken_closed", { names: untaken, why: "service processes cannot take descriptors" });
  const server = new PerilinkServer(config, identity, app, options.log, options.generation, { ...options.parts, group, lifecycle });
  try {
    await server.start(options.control);
  } catch (err) {
    await group?.drain(0);
    throw err;
  }
  return server;
}
