import path from "node:path";
import { UsageError } from "../errors.ts";
import { isFingerprint } from "../protocol/keys.ts";
import { readClientKeyFingerprint } from "../runtime/client_key_file.ts";
import { defaultStateDir } from "../runtime/state_dir.ts";
import { addTrust, isTrustableApp, listTrust, removeTrust, TRUSTED_KEYS_FILE, type TrustEntry } from "../server/trusted_keys.ts";
import { parse } from "./args.ts";
import { jsonLine, printable } from "./terminal_text.ts";

const USAGE = 'see "perilink help"';

/**
 * `perilink trust add|list|remove`: the client keys a device's server lets in
 * (`access: "keys"`), kept in the state directory's trusted-keys file; a
 * running server sees a change at its next channel open, no restart.
 */
export async function runTrust(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parse(
    rest,
    { app: { type: "string", multiple: true }, comment: { type: "string" }, json: { type: "boolean" }, "state-dir": { type: "string" } },
    true,
  );
  const stateDir = (values["state-dir"] as string | undefined) ?? defaultStateDir();
  switch (sub) {
    case "add": {
      const fp = fingerprintArg(positionals);
      const apps = (values.app as string[] | undefined) ?? null;
      for (const a of apps ?? []) if (!isTrustableApp(a)) throw new UsageError(`Cannot trust: "${a}" is not an app name (no spaces or commas)`);
      const now = await addTrust(stateDir, { fingerprint: fp, apps, comment: ((values.comment as string | undefined) ?? "").replace(/\s+/g, " ").trim() });
      process.stdout.write(`trusted ${fp} for ${now.apps ? `app${now.apps.length > 1 ? "s" : ""} ${now.apps.join(", ")}` : "every app"}\n`);
      return 0;
    }
    case "remove": {
      const fp = fingerprintArg(positionals);
      if (!(await removeTrust(stateDir, fp))) {
        throw new UsageError(`Cannot remove ${fp}: it is not in ${path.join(stateDir, TRUSTED_KEYS_FILE)}; "perilink trust list" shows the keys trusted there`);
      }
      process.stdout.write(`no longer trusted: ${fp}\n`);
      return 0;
    }
    case "list": {
      const { entries, errors } = await listTrust(stateDir);
      const own = readClientKeyFingerprint(stateDir);
      const rows: (TrustEntry & { own?: boolean })[] = [...(own ? [{ fingerprint: own, apps: null, comment: "this state directory's own client key", own: true }] : []), ...entries];
      if (values.json) {
        process.stdout.write(jsonLine({ keys: rows, ignoredLines: errors }));
      } else {
        for (const r of rows) process.stdout.write(printable(`${r.fingerprint}  ${r.apps ? r.apps.join(",") : "*"}${r.comment ? `  ${r.comment}` : ""}`) + "\n");
        for (const e of errors) process.stderr.write(`perilink trust: line ${e.line} ignored: ${printable(e.why)}\n`);
      }
      return 0;
    }
    default:
      throw new UsageError(`Cannot read arguments: ${sub === undefined ? "give a subcommand" : `unknown subcommand "${sub}"`}; ${USAGE}`);
  }
}

function fingerprintArg(positionals: string[]): string {
  const fp = positionals[0];
  if (positionals.length !== 1 || fp === undefined || !isFingerprint(fp)) {
    throw new UsageError(`Cannot read arguments: give one key fingerprint (SHA256:…, as "perilink key" prints it on the host); ${USAGE}`);
  }
  return fp;
}
