import { clientKeyOf, newPrivateKey, type ClientKey } from "../protocol/keys.ts";

export { clientKeyOf, type ClientKey } from "../protocol/keys.ts";
export { loadOrCreateClientKey, CLIENT_KEY_FILE } from "../runtime/client_key_file.ts";

let processKey: ClientKey | null = null;

/**
 * The key of a client made with `stateDir: false`: made on first use and
 * kept for this process only, so a server sees a new key each time the
 * program runs (and trusts it only with `access: "open"`).
 */
export function processClientKey(): ClientKey {
  return (processKey ??= clientKeyOf(newPrivateKey("Ed25519")));
}
