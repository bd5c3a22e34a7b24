import path from "node:path";
import { controlRequest } from "../server/control_server.ts";
import { DEFAULT_UPGRADE_TIMEOUT_MS } from "../handoff/handoff_protocol.ts";
import { defaultStateDir } from "../runtime/state_dir.ts";
import type { UpgradeResult } from "../handoff/upgrader.ts";
import { intOption, parse } from "./args.ts";
import { jsonLine, printable } from "./terminal_text.ts";
import { MAX_TIMER_MS } from "../duration.ts";

/**
 * `perilink upgrade`: asks the running server to replace itself with a new
 * program version. Exits 0 only once the new process is accepting.
 */
export async function runUpgrade(args: string[]): Promise<number> {
  const { values } = parse(args, {
    "state-dir": { type: "string" },
    program: { type: "string" },
    app: { type: "string" },
    timeout: { type: "string" },
    json: { type: "boolean" },
  });
  const stateDir = (values["state-dir"] as string | undefined) ?? defaultStateDir();
  const timeoutMs = intOption(values.timeout, "timeout", DEFAULT_UPGRADE_TIMEOUT_MS);
  const req: Record<string, unknown> = { op: "upgrade", timeoutMs };
  if (values.program) req.program = path.resolve(values.program as string);
  if (values.app) req.app = path.resolve(values.app as string);
  // The server answers once the new process accepted and passed its probation (at most the timeout too), or rolled back.
  const r = (await controlRequest(stateDir, req, Math.min(3 * timeoutMs + 5000, MAX_TIMER_MS))) as UpgradeResult;
  if (values.json) process.stdout.write(jsonLine(r));
  else process.stdout.write(printable(`upgraded: generation ${r.generation} (pid ${r.pid}) is accepting; pid ${r.previousPid} drains and exits; took ${r.ms} ms`) + "\n");
  return 0;
}
