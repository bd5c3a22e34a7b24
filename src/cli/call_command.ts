import { CLIENT_PIN_FILE, createClient } from "../client/client.ts";
import { parseLinePreference } from "../client/line/line_score.ts";
import { formatHostPort } from "../address.ts";
import { defaultStateDir } from "../runtime/state_dir.ts";
import { TARGET } from "../target.ts";
import { ConfigError, UsageError } from "../errors.ts";
import { isFingerprint } from "../protocol/keys.ts";
import { resolveOptions, type ResolutionOptions, type ResolutionSource } from "../client/names/resolution_options.ts";
import { intOption, parse, parseTarget } from "./args.ts";
import { jsonLine, printable, printableLine } from "./terminal_text.ts";
import { checkDataFile, transfer } from "./transfer.ts";

/** The file, in the state directory, where `perilink call` keeps the server keys it pinned. */
export const CALL_PIN_FILE = CLIENT_PIN_FILE;

/**
 * `perilink call HOST:PORT …`: one client, one request to each target, then
 * the session table, so two addresses of one server visibly share one session.
 * It proves the state directory's client key (made on first use), and the
 * keys it pins are kept there, so a later call still refuses a server that
 * claims a known identifier with another key.
 */
export async function runCall(args: string[]): Promise<number> {
  const { values, positionals } = parse(
    args,
    {
      app: { type: "string" },
      data: { type: "string" },
      "data-file": { type: "string" },
      output: { type: "string" },
      json: { type: "boolean" },
      raw: { type: "boolean" },
      timeout: { type: "string" },
      "name-server": { type: "string", multiple: true },
      resolve: { type: "string" },
      interface: { type: "string", multiple: true },
      prefer: { type: "string" },
      "state-dir": { type: "string" },
      expect: { type: "string" },
      "trust-new": { type: "boolean" },
    },
    true,
  );
  if (positionals.length === 0) throw new UsageError("Cannot call: give at least one HOST:PORT");
  const targets = positionals.map(parseTarget);
  const app = (values.app as string | undefined) ?? "perilink-call";
  const data = (values.data as string | undefined) ?? "info";
  const timeoutMs = intOption(values.timeout, "timeout", TARGET.client.requestTimeoutMs);
  const stateDir = (values["state-dir"] as string | undefined) ?? defaultStateDir();
  const expectKey = values.expect as string | undefined;
  if (expectKey !== undefined && !isFingerprint(expectKey)) throw new UsageError('Cannot read arguments: --expect takes a key fingerprint, "SHA256:" and 43 base64 characters, as "perilink id" prints it');
  if (expectKey !== undefined && values["trust-new"]) throw new UsageError("Cannot read arguments: --expect and --trust-new do not go together (--expect already decides which server to trust)");
  const dataFile = values["data-file"] as string | undefined;
  const output = values.output as string | undefined;
  if ((dataFile !== undefined || output !== undefined) && (targets.length > 1 || values.json || values.raw)) {
    throw new UsageError("Cannot read arguments: --data-file and --output stream to one HOST:PORT, without --json or --raw");
  }
  if (dataFile !== undefined && values.data !== undefined) throw new UsageError("Cannot read arguments: give --data or --data-file, not both");
  if (dataFile !== undefined && dataFile !== "-") checkDataFile(dataFile);
  const linePreference = values.prefer === undefined ? undefined : parseLinePreference(values.prefer as string);
  let client: ReturnType<typeof createClient>;
  try {
    client = createClient({ lingerMs: 0, requestTimeoutMs: timeoutMs, stateDir, resolution: resolutionOptions(values), linePreference });
  } catch (err) {
    // What the options asked for cannot be done (a name source this build lacks): the command line's fault.
    if (err instanceof ConfigError) throw new UsageError(err.message, { cause: err });
    throw err;
  }
  try {
    if (dataFile !== undefined || output !== undefined) {
      const t = targets[0]!;
      const link = await client.connect({ host: t.host, port: t.port, app, expectKey, trustNew: values["trust-new"] === true });
      await transfer(link, dataFile, data, output ?? "-", timeoutMs);
      link.close();
      return 0;
    }
    const answers: { target: string; response: Buffer }[] = [];
    const links = [];
    for (const t of targets) links.push(await client.connect({ host: t.host, port: t.port, app, expectKey, trustNew: values["trust-new"] === true }));
    // Several addresses of one server: measure their lines first, so the requests ride the better one.
    await client.refreshLines();
    for (const [i, link] of links.entries()) answers.push({ target: positionals[i]!, response: await link.request(data) });
    const sessions = client.sessions();
    if (values.raw) {
      // The responses' bytes as they came, one after another: for a pipe, not a terminal.
      for (const a of answers) process.stdout.write(a.response);
    } else if (values.json) {
      const responses = answers.map((a) => ({ target: a.target, response: a.response.toString("utf8") }));
      process.stdout.write(jsonLine({ responses, sessions, addresses: client.addresses() }));
    } else {
      // Server-supplied text is escaped: a response cannot drive the terminal (docs/operations.md).
      for (const a of answers) process.stdout.write(`${printable(a.target)}  ${printable(a.response.toString("utf8"))}\n`);
      process.stdout.write(`\n${client.socketsInUse} session(s) for ${targets.length} target(s):\n`);
      const head = ["mgmt", "app", "requested", "address", "communication", "server", "session", "refs", "line"];
      const rows = sessions.map((s) => cells([
        String(s.managementNumber),
        s.app,
        formatHostPort(s.requestedHost, s.requestedPort),
        s.requestedAddress,
        s.communicationAddress === null ? "-" : formatHostPort(s.communicationAddress, s.communicationPort ?? 0),
        s.serverId,
        String(s.sessionNumber ?? "-"),
        String(s.refCount),
        s.line === null ? "-" : `score ${s.line.score ?? "-"}: ${s.line.bandwidthMbps ?? "?"} Mb/s, ${s.line.routers ?? "?"} routers, MTU ${s.line.pathMtu ?? "?"}, ${s.line.rttMs ?? "?"} ms`,
      ]));
      const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
      for (const r of [head, ...rows]) process.stdout.write(r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd() + "\n");
      const list = client.addresses().map((a) => cells([a.name, a.address, a.source, a.ttl === null ? "-" : String(a.ttl), a.serverId ?? "-"]));
      process.stdout.write(`\naddress list:\n`);
      const lhead = ["name", "address", "source", "ttl", "server"];
      const lw = lhead.map((h, i) => Math.max(h.length, ...list.map((r) => r[i]!.length)));
      for (const r of [lhead, ...list]) process.stdout.write(r.map((c, i) => c.padEnd(lw[i]!)).join("  ").trimEnd() + "\n");
    }
    for (const l of links) l.close();
  } finally {
    await client.close();
  }
  return 0;
}

/** A table row's cells, escaped for the terminal (names and app ids may come from the network). */
function cells(row: string[]): string[] {
  return row.map(printableLine);
}

/** `--name-server ADDR[:PORT]…`, `--resolve hosts,dns,…`, `--interface IF…` → the client's resolution options. */
function resolutionOptions(values: Record<string, unknown>): ResolutionOptions {
  const out: ResolutionOptions = {};
  const servers = values["name-server"] as string[] | undefined;
  const order = values.resolve as string | undefined;
  const ifs = values.interface as string[] | undefined;
  try {
    if (servers) out.nameServers = servers;
    if (order !== undefined) out.order = order.split(",").map((x) => x.trim()) as ResolutionSource[];
    if (ifs) out.interfaces = ifs;
    resolveOptions(out);
  } catch (err) {
    throw new UsageError(`Cannot read arguments: ${(err as Error).message}`);
  }
  return out;
}
