import path from "node:path";
import { CLIENT_PIN_FILE } from "../client/client_options.ts";
import { IdentityBook } from "../client/identity_book.ts";
import { UsageError } from "../errors.ts";
import { defaultStateDir } from "../runtime/state_dir.ts";
import { parse } from "./args.ts";
import { jsonLine, printable } from "./terminal_text.ts";

/**
 * `perilink forget NAME|ADDRESS|SERVER-ID|FINGERPRINT [--state-dir DIR]`:
 * takes a server out of the state directory's known-servers record and pins
 * (client-pins.json), after a device was replaced on purpose; the next
 * connect by that name or address trusts the server that answers, as on
 * first use — in running clients too, which read the file before refusing a server.
 */
export async function runForget(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { "state-dir": { type: "string" }, json: { type: "boolean" } }, true);
  const target = positionals[0];
  if (positionals.length !== 1 || target === undefined || target.length === 0) {
    throw new UsageError('Cannot read arguments: give one name, address, server id or key fingerprint to forget; see "perilink help"');
  }
  const stateDir = (values["state-dir"] as string | undefined) ?? defaultStateDir();
  const file = path.join(stateDir, CLIENT_PIN_FILE);
  const book = new IdentityBook(30_000, 4096, { pinFile: file });
  const { records, pins } = book.forgetKnown(target);
  await book.flush();
  if (book.writeError) throw book.writeError;
  if (values.json) {
    process.stdout.write(jsonLine({ target, records: records.map((r) => ({ [r.kind]: r.host, port: r.port, serverId: r.serverId })), pins }));
  } else if (records.length === 0 && pins === 0) {
    process.stdout.write(`nothing was known of ${printable(target)} in ${printable(file)}\n`);
  } else {
    for (const r of records) process.stdout.write(`forgot ${r.kind} ${printable(r.host)} port ${r.port} → server ${r.serverId}\n`);
    if (pins > 0) process.stdout.write(`forgot the pinned key of ${pins} server(s)\n`);
  }
  return 0;
}
