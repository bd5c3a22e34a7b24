import { HostClient } from "../agent/host_client.ts";
import type { AgentLinkRow, AgentTable } from "../agent/host_agent.ts";
import { agentSocketPath, checkAgentSocket } from "../agent/agent_socket.ts";
import { AgentError } from "../errors.ts";
import { formatHostPort } from "../address.ts";
import { intOption, parse } from "./args.ts";
import { jsonLine, printableLine } from "./terminal_text.ts";

/**
 * `perilink sessions`: the host agent's session table (Fig. 5/17/25 of the
 * seed), one row per link, then the sessions under them. `--watch` draws it
 * again every `--interval` ms (in place on a terminal, like top) until
 * interrupted, or `--count` times.
 */
export async function runSessions(args: string[]): Promise<number> {
  const { values } = parse(args, { json: { type: "boolean" }, socket: { type: "string" }, watch: { type: "boolean" }, interval: { type: "string" }, count: { type: "string" } });
  const socket = (values.socket as string | undefined) ?? agentSocketPath();
  const intervalMs = intOption(values.interval, "interval", 1000);
  const count = values.count === undefined ? (values.watch ? Infinity : 1) : intOption(values.count, "count", 1);
  if (!(await checkAgentSocket(socket))) throw new AgentError(`Cannot show sessions: no host agent runs at ${socket}; start one with "perilink agent" (links of processes without one are their own)`);
  const client = new HostClient({ agent: true, agentSocket: socket });
  let stop = false;
  const interrupt = (): void => void (stop = true);
  process.once("SIGINT", interrupt);
  try {
    const tty = process.stdout.isTTY === true;
    for (let i = 0; i < count && !stop; i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, intervalMs));
      const table = await client.agentTable();
      const text = values.json ? jsonLine(table) : render(table);
      // In place on a terminal; one table after another (a blank line between) when written to a file or pipe.
      process.stdout.write(values.watch && tty ? `\x1b[H\x1b[2J${text}` : i > 0 && !values.json ? `\n${text}` : text);
    }
    return 0;
  } finally {
    process.off("SIGINT", interrupt);
    await client.close();
  }
}

function grid(head: string[], cells: string[][]): string {
  const safe = cells.map((row) => row.map((c) => printableLine(c)));
  const widths = head.map((h, i) => Math.max(h.length, ...safe.map((c) => c[i]!.length)));
  const line = (c: string[]): string => c.map((x, i) => x.padEnd(widths[i]!)).join("  ").trimEnd();
  return [line(head), ...safe.map(line)].join("\n") + "\n";
}

function render(table: AgentTable): string {
  const links = table.links as AgentLinkRow[];
  const linkText =
    links.length === 0
      ? "no links: no application holds one through the agent\n"
      : grid(
          ["MGMT", "PID", "COMMAND", "APP", "REQUESTED", "ADDRESS", "SERVER", "SESSION", "REFS", "STATE"],
          links.map((r) => [
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
          ]),
        );
  const sessions = table.sessions as { serverId: string; sessionNumber: number; address: string | null; port: number | null; links: number; state: string }[];
  if (sessions.length === 0) return linkText;
  const sessionText = grid(
    ["SESSION", "SERVER", "ADDRESS", "LINKS", "STATE"],
    sessions.map((s) => [String(s.sessionNumber), String(s.serverId).slice(0, 8), s.address === null ? "-" : formatHostPort(s.address, Number(s.port)), String(s.links), s.state]),
  );
  return `${linkText}\n${sessionText}`;
}
