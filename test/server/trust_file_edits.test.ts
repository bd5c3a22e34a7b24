// Review findings (access "keys"): the trusted-keys file and its edits. Failing today.
import assert from "node:assert/strict";
import { lstatSync, mkdtempSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { silentLogger } from "../../src/logger.ts";
import { addTrust, listTrust, parseTrustedKeys, removeTrust, TRUSTED_KEYS_FILE, TrustedKeys } from "../../src/server/trusted_keys.ts";
import { tempDir } from "../helpers/fixtures.ts";

const A = "SHA256:" + "A".repeat(43);
const B = "SHA256:" + "B".repeat(43);
const C = "SHA256:" + "C".repeat(43);

test("a misspelt apps word (APPS=, app=, apps =, apps:, a zero-width space before apps=) never trusts a key for every app", () => {
  for (const typo of ["APPS=printer", "Apps=printer", "app=printer", "apps = printer", "apps:printer", "\u200Bapps=printer", "apps\uFF1Dprinter"]) {
    const { entries } = parseTrustedKeys(`${A} ${typo} office PC\n`);
    assert.ok(entries.every((e) => e.apps !== null), `"${typo}" widened to every app: ${JSON.stringify(entries)}`);
  }
});

test("trust remove while another edit (trust add, a pairing) adds a key: neither change is lost", async () => {
  for (let i = 0; i < 10; i++) {
    const dir = tempDir();
    await addTrust(dir, { fingerprint: A, apps: null, comment: "stolen laptop" });
    await Promise.all([removeTrust(dir, A), addTrust(dir, { fingerprint: B, apps: null, comment: "paired" }), addTrust(dir, { fingerprint: C, apps: null, comment: "" })]);
    const fps = (await listTrust(dir)).entries.map((e) => e.fingerprint).sort();
    assert.deepEqual(fps, [B, C], `round ${i}: the revocation or an addition was lost`);
  }
});

test("an edit of a trusted-keys file that is a symlink (a managed file) edits that file or is refused, never detaches a copy", async () => {
  const dir = tempDir();
  const shared = path.join(mkdtempSync(path.join(tempDir(), "etc-")), "trusted-keys");
  writeFileSync(shared, `${A} office\n`);
  symlinkSync(shared, path.join(dir, TRUSTED_KEYS_FILE));
  const keys = new TrustedKeys(dir, silentLogger);
  const refused = await addTrust(dir, { fingerprint: B, apps: null, comment: "paired" }).then(() => false, () => true);
  writeFileSync(shared, ""); // the administrator revokes every key in the managed file
  assert.ok(refused || lstatSync(path.join(dir, TRUSTED_KEYS_FILE)).isSymbolicLink(), "the symlink was replaced by a regular file");
  assert.equal(keys.allows(A, "x"), false, "A is still trusted after its revocation in the managed file");
});
