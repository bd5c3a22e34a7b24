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
  const last = s.lastUpgrade;
  const lines = [
    `server     ${s.serverId}`,
    `key        ${s.keyFingerprint}`,
    `version    ${s.version ?? "unknown (an older program)"}  up ${duration(s.uptimeMs)}`,
    `pid        ${s.pid}  generation ${s.generation}  ${s.runtime}  target ${s.target}`,
    `app        ${s.app} (${s.mode})  ${s.accepting ? "accepting" : "not accepting"}`,
    `sessions   ${s.sessions}  in flight ${s.inflight}  requests ${s.counters.requests ?? 0}  probes ${s.counters.probes ?? 0}`,
    ...(s.memory ? [`memory     rss ${mib(s.memory.rssBytes)}  heap ${mib(s.memory.heapUsedBytes)} of ${mib(s.memory.heapLimitBytes)} limit`] : []),
    `listeners  ${s.listeners.filter((l) => l.transport === "tcp").length} addresses (tcp+udp each):`,
    ...s.listeners.filter((l) => l.transport === "tcp").map((l) => `  ${formatHostPort(l.address, l.port)}`),
  ];
  if (last) lines.push(`upgrade    last: ${last.outcome} (generation ${last.generation}, ${last.at})${last.error ? `: ${last.error}` : ""}`);
  if (s.upgrade) lines.push(`upgrade    under way: new pid ${s.upgrade.pid ?? "-"} for ${duration(s.upgrade.forMs)}`);
  for (const d of s.draining ?? []) lines.push(`draining   generation ${d.generation} pid ${d.pid}: ${d.sessions} sessions, ${d.inflight} in flight`);
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

/** A duration in its two largest units: 93784000 → "1 d 2 h", 4200 → "4 s". */
function duration(ms: number): string {
  const units: [string, number][] = [["d", 86_400_000], ["h", 3_600_000], ["min", 60_000], ["s", 1000]];
  const parts: string[] = [];
  let rest = Math.max(0, ms);
  for (const [name, size] of units) {
    const n = Math.floor(rest / size);
    rest -= n * size;
    if (n > 0 || (name === "s" && parts.length === 0)) parts.push(`${n} ${name}`);
    if (parts.length === 2) break;
  }
  return parts.join(" ");
}
