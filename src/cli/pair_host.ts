import path from "node:path";
import { CLIENT_PIN_FILE } from "../client/client_options.ts";
import { ClientSession } from "../client/client_session.ts";
import { IdentityBook } from "../client/identity_book.ts";
import { PairingError } from "../errors.ts";
import { keyFingerprint } from "../protocol/keys.ts";
import { PAIR_APP, pairingProof, proofMatches } from "../protocol/pairing_code.ts";
import { loadOrCreateClientKey } from "../runtime/client_key_file.ts";
import { intOption, parseTarget } from "./args.ts";
import { jsonLine, printableLine } from "./terminal_text.ts";

/**
 * The host's half of `perilink pair HOST:PORT CODE`: proves the device's
 * one-time code in a sealed session, checks the device's proof back, and
 * pins the device's key; the device then trusts this host's client key.
 * A host command: the device build has none (host_commands_off.ts).
 */
export async function pairWithDevice(where: string, code: string, stateDir: string, options: { json: boolean; timeout: string | undefined }): Promise<number> {
  const target = parseTarget(where);
  const key = await loadOrCreateClientKey(stateDir);
  const book = new IdentityBook(30_000, 4096, { pinFile: path.join(stateDir, CLIENT_PIN_FILE) });
  // A server id this host pinned to another key is refused before this host proves its key to it; nothing is pinned yet.
  const checkServer = (id: string, k: Buffer, at: string): void => void book.check(id, k, at);
  const session = await ClientSession.connect({ ...target, clientKey: key, checkServer, timeoutMs: intOption(options.timeout, "timeout", 10_000) });
  try {
    const proof = pairingProof(code, session.transcript, "host", key.fingerprint).toString("base64");
    const reply = (await session.openChannelNow(PAIR_APP, target.host, target.port).request(JSON.stringify({ proof }))).toString("utf8");
    const r = JSON.parse(reply) as { ok?: boolean; why?: string; apps?: string[] | null; proof?: string };
    if (r.ok !== true) throw new PairingError(`Cannot pair with ${where}: ${r.why ?? "the device refused"}`);
    const device = keyFingerprint(session.publicKey);
    // The device proves the code back: a host that reached an impostor learns it here and trusts nothing.
    if (typeof r.proof !== "string" || !proofMatches(Buffer.from(r.proof, "base64"), pairingProof(code, session.transcript, "device", device))) {
      throw new PairingError(`Cannot pair with ${where}: it did not prove it knows the code, so it is not the device that printed it`);
    }
    const apps = r.apps ?? null;
    // The device proved the code: its key is the one this host pins for it, as perilink call would.
    book.pin(session.serverId, session.publicKey, where);
    await book.flush();
    if (options.json) process.stdout.write(jsonLine({ serverId: session.serverId, serverKey: device, clientKey: key.fingerprint, apps }));
    else process.stdout.write(printableLine(`paired with server ${session.serverId} (${device}): it trusts this host's key ${key.fingerprint} for ${apps ? apps.join(", ") : "every app"}`) + "\n");
    return 0;
  } finally {
    session.destroy();
  }
}
