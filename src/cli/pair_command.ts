import path from "node:path";
import { CLIENT_PIN_FILE } from "../client/client_options.ts";
import { ClientSession } from "../client/client_session.ts";
import { IdentityBook } from "../client/identity_book.ts";
import { UsageError, PairingError } from "../errors.ts";
import { keyFingerprint } from "../protocol/keys.ts";
import { newPairingCode, normalizePairingCode, PAIR_APP, pairingProof, proofMatches } from "../protocol/pairing_code.ts";
import { loadOrCreateClientKey } from "../runtime/client_key_file.ts";
import { defaultStateDir } from "../runtime/state_dir.ts";
import { loadOrCreateIdentity } from "../server/identity.ts";
import { offerPairing, PAIRING_DEFAULT_TTL_MS, PAIRING_MAX_ATTEMPTS } from "../server/pairing.ts";
import { isTrustableApp } from "../server/trusted_keys.ts";
import { intOption, parse, parseTarget } from "./args.ts";
import { jsonLine, printableLine } from "./terminal_text.ts";

/**
 * `perilink pair [--app NAME]… [--ttl SECONDS]` on the device: a one-time
 * code for the server of this state directory. `perilink pair HOST:PORT CODE`
 * on the host: proves the code in a sealed session, and the device trusts
 * this host's client key (for the apps the device side named).
 */
export async function runPair(args: string[]): Promise<number> {
  const { values, positionals } = parse(
    args,
    { app: { type: "string", multiple: true }, ttl: { type: "string" }, json: { type: "boolean" }, timeout: { type: "string" }, "state-dir": { type: "string" } },
    true,
  );
  const stateDir = (values["state-dir"] as string | undefined) ?? defaultStateDir();
  if (positionals.length === 0) return offer(stateDir, values);
  if (positionals.length !== 2) throw new UsageError("Cannot read arguments: on the host give HOST:PORT and the device's CODE; on the device, neither");
  if (values.app !== undefined || values.ttl !== undefined) throw new UsageError("Cannot read arguments: --app and --ttl are for the device side");
  const target = parseTarget(positionals[0]!);
  const code = normalizePairingCode(positionals[1]!);
  if (code === null) throw new UsageError(`Cannot pair: "${positionals[1]}" is not a pairing code (XXXX-XXXX-XXXX-XXXX)`);
  const key = await loadOrCreateClientKey(stateDir);
  const book = new IdentityBook(30_000, 4096, { pinFile: path.join(stateDir, CLIENT_PIN_FILE) });
  // A server id this host pinned to another key is refused before this host proves its key to it; nothing is pinned yet.
  const checkServer = (id: string, k: Buffer, where: string): void => void book.check(id, k, where);
  const session = await ClientSession.connect({ ...target, clientKey: key, checkServer, timeoutMs: intOption(values.timeout, "timeout", 10_000) });
  try {
    const proof = pairingProof(code, session.transcript, "host", key.fingerprint).toString("base64");
    const reply = (await session.openChannelNow(PAIR_APP, target.host, target.port).request(JSON.stringify({ proof }))).toString("utf8");
    const r = JSON.parse(reply) as { ok?: boolean; why?: string; apps?: string[] | null; proof?: string };
    if (r.ok !== true) throw new PairingError(`Cannot pair with ${positionals[0]}: ${r.why ?? "the device refused"}`);
    const device = keyFingerprint(session.publicKey);
    // The device proves the code back: a host that reached an impostor learns it here and trusts nothing.
    if (typeof r.proof !== "string" || !proofMatches(Buffer.from(r.proof, "base64"), pairingProof(code, session.transcript, "device", device))) {
      throw new PairingError(`Cannot pair with ${positionals[0]}: it did not prove it knows the code, so it is not the device that printed it`);
    }
    const apps = r.apps ?? null;
    // The device proved the code: its key is the one this host pins for it, as perilink call would.
    book.pin(session.serverId, session.publicKey, positionals[0]!);
    await book.flush();
    if (values.json) process.stdout.write(jsonLine({ serverId: session.serverId, serverKey: device, clientKey: key.fingerprint, apps }));
    else process.stdout.write(printableLine(`paired with server ${session.serverId} (${device}): it trusts this host's key ${key.fingerprint} for ${apps ? apps.join(", ") : "every app"}`) + "\n");
    return 0;
  } finally {
    session.destroy();
  }
}

async function offer(stateDir: string, values: Record<string, unknown>): Promise<number> {
  const apps = (values.app as string[] | undefined) ?? null;
  for (const a of apps ?? []) if (!isTrustableApp(a)) throw new UsageError(`Cannot pair: "${a}" is not an app name (no spaces or commas)`);
  const ttlMs = intOption(values.ttl, "ttl", PAIRING_DEFAULT_TTL_MS / 1000) * 1000;
  if (ttlMs > 3600_000) throw new UsageError("Cannot pair: --ttl is at most 3600 seconds");
  const identity = await loadOrCreateIdentity(stateDir);
  const code = newPairingCode();
  await offerPairing(stateDir, { version: 1, code, apps, expiresAt: Date.now() + ttlMs });
  const device = keyFingerprint(identity.publicKey);
  if (values.json) {
    process.stdout.write(jsonLine({ code, expiresInSeconds: ttlMs / 1000, attempts: PAIRING_MAX_ATTEMPTS, apps, serverId: identity.serverId, serverKey: device }));
  } else {
    process.stdout.write(
      `pairing code: ${code}\nvalid ${ttlMs / 1000} s, ${PAIRING_MAX_ATTEMPTS} attempts, once; for ${apps ? apps.join(", ") : "every app"}\non the host: perilink pair HOST:PORT ${code}\nthis device: server ${identity.serverId}, key ${device}\n`,
    );
  }
  return 0;
}
