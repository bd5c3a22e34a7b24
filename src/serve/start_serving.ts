import { PerilinkError } from "../errors.ts";
import { createLogger, type Logger } from "../logger.ts";
import { resolveConfig, type ServerConfigInput } from "../server/config.ts";
import type { PerilinkServer } from "../server/server.ts";
import type { ServerEvents } from "../server/server_events.ts";
import { openServer, startServer } from "../server/start_server.ts";
import { takeActivationSockets } from "../systemd/activation_sockets.ts";
import { AcceptSemaphore } from "../handoff/accept_semaphore.ts";
import { handoffPlan } from "../handoff/handoff_mode.ts";
import { takeInheritedSockets } from "../handoff/inherited_sockets.ts";
import { readStartContext, Takeover } from "../handoff/takeover.ts";
import { upgradeHostFor } from "../handoff/upgrade_host.ts";
import { Upgrader, type RespawnSpec } from "../handoff/upgrader.ts";
import { ServiceGroup } from "../group/service_group.ts";
import { AppHandoff } from "../server/app_handoff.ts";

export interface ServingOptions {
  log?: Logger;
  /** How this process was started: an upgrade starts the new program, and service processes, the same way. */
  respawn: RespawnSpec;
  /** Told about upgrades and drains (the systemd notifier). */
  events?: ServerEvents;
}

/**
 * What `perilink serve` runs: the embeddable server (server/) composed with
 * what makes it a service — the sockets an older generation handed over or
 * systemd passed (S7), the accept semaphore and the takeover of a process
 * started by an upgrade, the upgrader for its own successor (S4), and a
 * manager's service processes (S5). How the ports pass is handoff_mode.ts.
 */
export async function startServing(input: ServerConfigInput, options: ServingOptions): Promise<PerilinkServer> {
  const config = resolveConfig(input);
  const log = options.log ?? createLogger(config.logLevel);
  const ctx = readStartContext();
  const plan = handoffPlan(ctx.handoff);
  // An upgraded process keeps the ports the kernel chose for `…:0` entries in the old one. The
  // config keeps port 0, so that this process in turn hands those ports on at its own upgrade.
  const listen = config.listen.map((spec, i) => {
    const port = ctx.ports[config.listenText[i]!];
    return spec.port === 0 && port !== undefined ? { ...spec, port } : spec;
  });
  // Sockets from a perilink parent (upgrade), else from systemd (socket activation); and what its app put.
  const passed = plan.adoptInherited ? takeInheritedSockets() : { sockets: takeActivationSockets(), app: [] };
  const gate = plan.semaphore ? AcceptSemaphore.forStateDir(config.stateDir) : null;
  const generation = ctx.generation;
  const respawn = options.respawn;
  const takeover = ctx.handoff ? new Takeover(process, log, ctx.timeoutMs) : null;
  let group: ServiceGroup | null = null;
  const handoff = new AppHandoff(
    { fds: passed.app, ...(takeover ? { state: () => takeover.appState(ctx.appState) } : {}) },
    plan.passSockets ? {} : { fds: "this runtime cannot pass descriptors to a new process (a state passes)" },
  );
  try {
    return await openServer(config, {
      log,
      generation,
      control: true,
      handoff,
      ...(config.workers.max > 1
        ? { group: async (c) => (group = await ServiceGroup.start(c, respawn, generation, log, ctx.drainingPids, takeover ? () => takeover.appStates(ctx.appState) : null)) }
        : {}),
      parts: {
        listen,
        inherited: passed.sockets,
        gate,
        reusePort: plan.reusePort,
        deferUdp: plan.deferUdp,
        takeover,
        // With service processes their apps' states pass (no descriptors), and the manager keeps no sockets for a probation.
        upgrades: (server, older) =>
          new Upgrader(
            config.workers.max > 1
              ? upgradeHostFor(server, gate, older, { appStates: async () => (group ? group.appStates() : { state: null }) })
              : upgradeHostFor(server, gate, older, handoff, config.probationMs),
            respawn,
          ),
        ...(options.events ? { events: options.events } : {}),
      },
    });
  } catch (err) {
    // The old process rolls back at once, with the reason, rather than at its timeout.
    await takeover?.failed((err as Error).message ?? String(err), err instanceof PerilinkError ? err.code : undefined);
    throw err;
  }
}

/**
 * A service process of a group (S5), started by its manager with the same
 * arguments: no listener, no control socket and no metrics listener of its
 * own (the manager's add up its reports); it serves the connections (or the
 * listening sockets) its manager gives it.
 */
export function startServiceProcess(input: ServerConfigInput, log: Logger, generation: number, handoff: AppHandoff): Promise<PerilinkServer> {
  // Its manager serves the group's metrics and advertises the group (DNS-SD): a service process does neither.
  const { metrics: _metrics, ...own } = input;
  return startServer({ ...own, discovery: { advertise: "off" }, logger: log, control: false, listeners: false, generation, handoff });
}
