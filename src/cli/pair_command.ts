import { UsageError } from "../errors.ts";
import { keyFingerprint } from "../protocol/keys.ts";
import { newPairingCode, normalizePairingCode } from "../protocol/pairing_code.ts";
import { defaultStateDir } from "../runtime/state_dir.ts";
import { loadOrCreateIdentity } from "../server/identity.ts";
import { offerPairing, PAIRING_DEFAULT_TTL_MS, PAIRING_MAX_ATTEMPTS } from "../server/pairing.ts";
import { isTrustableApp } from "../server/trusted_keys.ts";
import { intOption, parse } from "./args.ts";
import { pairWithDevice } from "./pair_host.ts";
import { jsonLine } from "./terminal_text.ts";

/**
 * `perilink pair [--app NAME]… [--ttl SECONDS]` on the device: a one-time
 * code for the server of this state directory. `perilink pair HOST:PORT CODE`
 * on the host: proves the code in a sealed session, and the device trusts
 * this host's client key (for the apps the device side named; pair_host.ts).
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
  const code = normalizePairingCode(positionals[1]!);
  if (code === null) throw new UsageError(`Cannot pair: "${positionals[1]}" is not a pairing code (XXXX-XXXX-XXXX-XXXX)`);
  return pairWithDevice(positionals[0]!, code, stateDir, { json: values.json === true, timeout: values.timeout as string | undefined });
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
