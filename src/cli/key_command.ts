import { loadOrCreateClientKey } from "../runtime/client_key_file.ts";
import { defaultStateDir } from "../runtime/state_dir.ts";
import { parse } from "./args.ts";

/**
 * `perilink key [--state-dir DIR] [--json]`: this host's client key
 * fingerprint (made on first use), the one a device trusts with
 * `perilink trust add`.
 */
export async function runKey(args: string[]): Promise<number> {
  const { values } = parse(args, { "state-dir": { type: "string" }, json: { type: "boolean" } });
  const key = await loadOrCreateClientKey((values["state-dir"] as string | undefined) ?? defaultStateDir());
  process.stdout.write(values.json ? JSON.stringify({ fingerprint: key.fingerprint }) + "\n" : `${key.fingerprint}\n`);
  return 0;
}
