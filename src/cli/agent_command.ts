import { AGENT_HANDOFF_ENV, HostAgent } from "../agent/host_agent.ts";
import { HostClient } from "../agent/host_client.ts";
import { agentSocketPath } from "../agent/agent_socket.ts";
import { createLogger, isLogLevel } from "../logger.ts";
import { defaultStateDir } from "../runtime/state_dir.ts";
import { systemdNotifySender } from "../runtime/notify_sender.ts";
import { takeListenFds, LISTEN_FDS_START } from "../systemd/listen_fds.ts";
import { UsageError } from "../errors.ts";
import { parse } from "./args.ts";
import { jsonLine } from "./terminal_text.ts";

/**
 * `perilink agent`: this user's host agent (C11), holding one session
 * table for every application of the user on the host. Runs until SIGTERM
 * or SIGINT; under systemd (socket activation) it serves the socket passed.
 * SIGUSR2, or `perilink agent upgrade`, replaces it with the program now in
 * place without closing its socket. `perilink agent upgrade` asks the
 * running one to do so and prints the new agent's pid.
 */
export async function runAgent(args: string[]): Promise<number> {
  if (args[0] === "upgrade") return upgradeAgent(args.slice(1));
  if (args[0] === "metrics") return agentMetrics(args.slice(1));
  const { values } = parse(args, { socket: { type: "string" }, "state-dir": { type: "string" }, "log-level": { type: "string" } });
  const level = (values["log-level"] as string | undefined) ?? "info";
  if (!isLogLevel(level)) throw new UsageError(`Cannot start the agent: --log-level must be debug, info, warn, error or silent, not "${level}"`);
  const log = createLogger(level);
  const takeover = process.env[AGENT_HANDOFF_ENV] === "1";
  delete process.env[AGENT_HANDOFF_ENV];
  const passed = takeListenFds(process.env, process.pid);
  const socketPath = (values.socket as string | undefined) ?? agentSocketPath();
  const agent = await HostAgent.start({
    socketPath,
    ...(passed && passed.count >= 1 ? { fd: LISTEN_FDS_START } : {}),
    client: { stateDir: (values["state-dir"] as string | undefined) ?? defaultStateDir() },
    log,
    respawn: { cmd: process.execPath, args: [...process.execArgv, ...process.argv.slice(1)] },
    takeover,
  });
  const notify = process.env.NOTIFY_SOCKET ? systemdNotifySender(process.env.NOTIFY_SOCKET, (err) => log.warn("notify_failed", { error: err })) : null;
  // A new agent started by an upgrade tells the old one it serves, and systemd that it is the main process now.
  if (takeover && process.send) process.send({ t: "ready" });
  await notify?.send([...(takeover ? [`MAINPID=${process.pid}`] : []), "READY=1", `STATUS=Serving the session table at ${socketPath}`]);
  const onUpgrade = (): void => {
    agent.upgrade().then(
      (pid) => log.info("agent_upgraded", { to: pid }),
      (err: unknown) => log.error("agent_upgrade_failed", { error: err }),
    );
  };
  process.on("SIGUSR2", onUpgrade);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off("SIGTERM", stop);
      process.off("SIGINT", stop);
      resolve();
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
    void agent.handedOver.then(stop);
  });
  process.off("SIGUSR2", onUpgrade);
  await notify?.send(["STOPPING=1"]);
  await agent.close();
  return 0;
}

/** `perilink agent metrics`: the agent's counters as OpenMetrics text (docs/client.md, "Metrics"). */
async function agentMetrics(args: string[]): Promise<number> {
  const { values } = parse(args, { socket: { type: "string" } });
  const client = new HostClient({ agent: true, agentSocket: (values.socket as string | undefined) ?? agentSocketPath() });
  try {
    process.stdout.write(await client.agentMetrics());
    return 0;
  } finally {
    await client.close();
  }
}

async function upgradeAgent(args: string[]): Promise<number> {
  const { values } = parse(args, { socket: { type: "string" }, json: { type: "boolean" } });
  const socket = (values.socket as string | undefined) ?? agentSocketPath();
  const client = new HostClient({ agent: true, agentSocket: socket });
  try {
    const conn = await client.agent();
    const { header } = await conn.call({ t: "upgrade" });
    if (values.json) process.stdout.write(jsonLine({ pid: header.pid }));
    else process.stdout.write(`agent upgraded: pid ${String(header.pid)} serves ${socket}\n`);
    return 0;
  } finally {
    await client.close();
  }
}
