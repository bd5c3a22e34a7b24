import { createLogger } from "../logger.ts";
import { readConfigFile, type ServerConfigInput } from "../server/config.ts";
import { startServer } from "../server/server.ts";
import { parse } from "./args.ts";

/**
 * `perilink serve`: runs a server until SIGINT/SIGTERM, then drains. SIGHUP
 * re-scans the device's addresses. Logs one JSON line per event to stderr.
 */
export async function runServe(args: string[]): Promise<number> {
  const { values } = parse(args, {
    config: { type: "string" },
    listen: { type: "string", multiple: true },
    app: { type: "string" },
    "state-dir": { type: "string" },
    "log-level": { type: "string" },
  });
  const input: ServerConfigInput = values.config ? await readConfigFile(values.config as string) : {};
  if (values.listen) input.listen = values.listen as string[];
  if (values.app) input.app = values.app as string;
  if (values["state-dir"]) input.stateDir = values["state-dir"] as string;
  if (values["log-level"]) input.logLevel = values["log-level"] as ServerConfigInput["logLevel"];
  const server = await startServer({ ...input, logger: createLogger(input.logLevel ?? "info") });

  const onHup = (): void => void server.rescan();
  process.on("SIGHUP", onHup);
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      server.log.info("signal", { signal });
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      resolve();
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
  process.off("SIGHUP", onHup);
  await server.drain();
  return 0;
}
