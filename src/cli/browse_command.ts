import { browseServers, DEFAULT_BROWSE_TIMEOUT_MS } from "../client/browse.ts";
import { UsageError } from "../errors.ts";
import { intOption, parse } from "./args.ts";
import { jsonLine, printableLine } from "./terminal_text.ts";

/**
 * `perilink browse`: the perilink servers on the LAN, found by DNS-SD
 * (mDNS) and each proven by its signed probe, one row per server id.
 */
export async function runBrowse(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { json: { type: "boolean" }, timeout: { type: "string" }, interface: { type: "string", multiple: true } }, true);
  if (positionals.length > 0) throw new UsageError("Cannot browse: it takes no HOST:PORT; it looks on every interface (or each --interface IF)");
  const timeoutMs = intOption(values.timeout, "timeout", DEFAULT_BROWSE_TIMEOUT_MS);
  const interfaces = values.interface as string[] | undefined;
  const servers = await browseServers({ timeoutMs, ...(interfaces ? { interfaces } : {}) });
  if (values.json) process.stdout.write(jsonLine(servers));
  if (servers.length === 0) {
    process.stderr.write(`perilink browse: no devices found in ${timeoutMs} ms (a device advertises with "discovery" in its configuration)\n`);
    return 0;
  }
  if (values.json) return 0;
  // Names, versions and addresses come from the network: escaped for the terminal.
  for (const s of servers) {
    const flag = s.txt === "differs" ? "  (TXT names another id or key: the probe wins)" : s.txt === "missing" ? "  (no id in TXT)" : "";
    process.stdout.write(
      `${printableLine(s.names.join(", "))}\n  server   ${s.serverId}\n  key      ${s.keyFingerprint}\n  at       ${printableLine(s.addresses.join(" "))}\n` +
        `  ports    ${s.ports.join(", ")}\n  version  ${printableLine(s.version ?? "?")}${flag}\n`,
    );
  }
  return 0;
}
