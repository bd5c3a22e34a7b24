import { HostClient } from "../agent/host_client.ts";
import type { AgentLinkRow } from "../agent/host_agent.ts";
import { agentSocketPath, checkAgentSocket } from "../agent/agent_socket.ts";
import { AgentError } from "../errors.ts";
import { formatHostPort } from "../address.ts";
import { parse } from "./args.ts";
import { jsonLine, printableLine } from "./terminal_text.ts";

/** `perilink sessions`: the host agent's session table (Fig. 5/17/25 of the seed), one row per link. */
export async function runSessions(args: string[]): Promise<number> {
  const { values } = parse(args, { json: { type: "boolean" }, socket: { type: "string" } });
  const socket = (values.socket as string | undefined) ?? agentSocketPath();
  if (!(await checkAgentSocket(socket))) throw new AgentError(`Cannot show sessions: no host agent runs at ${socket}; start one with "perilink agent" (links of processes without one are their own)`);
  const client = new HostClient({ agent: true, agentSocket: socket });
  try {
    const table = await client.agentTable();
    if (values.json) {
      process.stdout.write(jsonLine(table));
      return 0;
    }
    process.stdout.write(render(table.links));
    return 0;
  } finally {
    await client.close();
  }
}

function render(rows: AgentLinkRow[]): string {
  if (rows.length === 0) return "no links: no application holds one through the agent\n";
  const head = ["MGMT", "PID", "COMMAND", "APP", "REQUESTED", "ADDRESS", "SERVER", "SESSION", "REFS", "STATE"];
  const cells = rows.map((r) => [
    String(r.managementNumber),
    String(r.pid),
    r.command,
    String(r.app),
    formatHostPort(String(r.requestedHost), Number(r.requestedPort)),
    r.communicationAddress === null ? "-" : formatHostPort(String(r.communicationAddress), Number(r.communicationPort)),
    String(r.serverId).slice(0, 8),
    r.sessionNumber === null ? "-" : String(r.sessionNumber),
    String(r.refCount),
    String(r.state),
  ].map((c) => printableLine(String(c))));
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]): string => c.map((x, i) => x.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(head), ...cells.map(line)].join("\n") + "\n";
}
