import { HostAgent } from "../agent/host_agent.ts";
import { agentSocketPath } from "../agent/agent_socket.ts";
import { createLogger, isLogLevel } from "../logger.ts";
import { defaultStateDir } from "../runtime/state_dir.ts";
import { systemdNotifySender } from "../runtime/notify_sender.ts";
import { takeListenFds, LISTEN_FDS_START } from "../systemd/listen_fds.ts";
import { UsageError } from "../errors.ts";
import { parse } from "./args.ts";

/**
 * `perilink agent`: this user's host agent (C11), holding one session
 * table for every application of the user on the host. Runs until SIGTERM
 * or SIGINT; under systemd (socket activation) it serves the socket passed.
 */
export async function runAgent(args: string[]): Promise<number> {
  const { values } = parse(args, { socket: { type: "string" }, "state-dir": { type: "string" }, "log-level": { type: "string" } });
  const level = (values["log-level"] as string | undefined) ?? "info";
  if (!isLogLevel(level)) throw new UsageError(`Cannot start the agent: --log-level must be debug, info, warn, error or silent, not "${level}"`);
  const log = createLogger(level);
  const passed = takeListenFds(process.env, process.pid);
  const socketPath = (values.socket as string | undefined) ?? agentSocketPath();
  const agent = await HostAgent.start({
    socketPath,
    ...(passed && passed.count >= 1 ? { fd: LISTEN_FDS_START } : {}),
    client: { stateDir: (values["state-dir"] as string | undefined) ?? defaultStateDir() },
    log,
  });
  const notify = process.env.NOTIFY_SOCKET ? systemdNotifySender(process.env.NOTIFY_SOCKET, (err) => log.warn("notify_failed", { error: err })) : null;
  await notify?.send(["READY=1", `STATUS=Serving the session table at ${socketPath}`]);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off("SIGTERM", stop);
      process.off("SIGINT", stop);
      resolve();
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
  });
  await notify?.send(["STOPPING=1"]);
  await agent.close();
  return 0;
}
