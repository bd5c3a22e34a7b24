import { controlRequest } from "../server/control_server.ts";
import { defaultStateDir } from "../runtime/state_dir.ts";
import { ControlError } from "../errors.ts";
import { parse } from "./args.ts";

/** `perilink metrics`: the running server's metrics as OpenMetrics text, over its control socket. */
export async function runMetrics(args: string[]): Promise<number> {
  const { values } = parse(args, { "state-dir": { type: "string" } });
  const stateDir = (values["state-dir"] as string | undefined) ?? defaultStateDir();
  const text = await controlRequest(stateDir, { op: "metrics" });
  if (typeof text !== "string") throw new ControlError(`Cannot show metrics: the server at ${stateDir} does not serve them (an older program?); upgrade it`);
  process.stdout.write(text);
  return 0;
}
