import { controlRequest } from "../server/control_server.ts";
import type { MemoryFigures } from "../runtime/memory_figures.ts";
import type { ServerStatus } from "../server/server.ts";
import { defaultStateDir } from "../runtime/state_dir.ts";
import { formatHostPort } from "../address.ts";
import { parse } from "./args.ts";
import { jsonLine, printableLine } from "./terminal_text.ts";

/** `perilink status`: asks the running server over its control socket. */
export async function runStatus(args: string[]): Promise<number> {
  const { values } = parse(args, { "state-dir": { type: "string" }, json: { type: "boolean" } });
  const stateDir = (values["state-dir"] as string | undefined) ?? defaultStateDir();
  const s = (await controlRequest(stateDir, { op: "status" })) as ServerStatus & { memory?: MemoryFigures };
  if (values.json) {
    process.stdout.write(jsonLine(s));
    return 0;
  }
  const lines = [
    `server     ${s.serverId}`,
    `key        ${s.keyFingerprint}`,
    `pid        ${s.pid}  generation ${s.generation}  ${s.runtime}  target ${s.target}`,
    `app        ${s.app} (${s.mode})  ${s.accepting ? "accepting" : "not accepting"}`,
    `sessions   ${s.sessions}  in flight ${s.inflight}  requests ${s.counters.requests ?? 0}  probes ${s.counters.probes ?? 0}`,
    ...(s.memory ? [`memory     rss ${mib(s.memory.rssBytes)}  heap ${mib(s.memory.heapUsedBytes)} of ${mib(s.memory.heapLimitBytes)} limit`] : []),
    `listeners  ${s.listeners.filter((l) => l.transport === "tcp").length} addresses (tcp+udp each):`,
    ...s.listeners.filter((l) => l.transport === "tcp").map((l) => `  ${formatHostPort(l.address, l.port)}`),
  ];
  if (s.workers?.length) {
    lines.push(`workers    ${s.workers.length} service processes, ${s.dispatch} dispatch:`);
    for (const w of s.workers) {
      lines.push(
        `  #${w.slot} pid ${w.pid ?? "-"}  ${w.state}  sessions ${w.sessions}  in flight ${w.inflight}  requests ${w.requests}  connections ${w.connections}  restarts ${w.restarts}`,
      );
    }
  }
  // Whatever sits at the control socket answered this: escaped, so it cannot drive the terminal.
  process.stdout.write(lines.map(printableLine).join("\n") + "\n");
  return 0;
}

function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}
