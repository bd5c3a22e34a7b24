import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { createPublicKey, diffieHellman, generateKeyPairSync } from "node:crypto";
import { newPrivateKey, rawPublicKey } from "../../src/protocol/keys.ts";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { REPO_ROOT } from "../helpers/cli.ts";

test("newPrivateKey makes a fresh Ed25519 or X25519 key each time, whose public key is the one the runtime derives", () => {
  const a = newPrivateKey("X25519");
  const b = newPrivateKey("X25519");
  assert.equal(a.asymmetricKeyType, "x25519");
  assert.notDeepEqual(rawPublicKey(createPublicKey(a)), rawPublicKey(createPublicKey(b)));
  // Both ends agree: the keys work for X25519 as generated ones do.
  const other = generateKeyPairSync("x25519");
  assert.deepEqual(diffieHellman({ privateKey: a, publicKey: other.publicKey }), diffieHellman({ privateKey: other.privateKey, publicKey: createPublicKey(a) }));
  const e = newPrivateKey("Ed25519");
  assert.equal(e.asymmetricKeyType, "ed25519");
  assert.equal(rawPublicKey(createPublicKey(e)).length, 32);
});

test("regression: 40,000 handshake key pairs under a 1 MiB young generation finish (a generated key exported as a JWK could hang the process in the GC)", async () => {
  const script = path.join(REPO_ROOT, "test/fixtures/key_churn.ts");
  const argv = detectRuntime().name === "deno" ? ["run", "-A", "--v8-flags=--max-semi-space-size=1", script, "40000"] : ["--max-semi-space-size=1", "--import", "tsx", script, "40000"];
  const child = spawn(process.execPath, argv, { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (s: string) => (out += s));
  child.stderr!.resume();
  const code = await new Promise<number | string>((resolve) => {
    const t = setTimeout(() => {
      child.kill("SIGKILL");
      resolve("hung: killed after 60 s");
    }, 60_000);
    child.once("exit", (c, sig) => {
      clearTimeout(t);
      resolve(c ?? String(sig));
    });
  });
  assert.equal(code, 0, `the key churn ${code === 0 ? "" : code}`);
  assert.equal(out.trim(), "done 40000");
});

test("nothing in src makes keys with generateKeyPairSync or generateKeyPair (see newPrivateKey)", () => {
  const files = readdirSync(path.join(REPO_ROOT, "src"), { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts"));
  const offenders = files.filter((f) => /\bgenerateKeyPair(Sync)?\s*\(/.test(readFileSync(path.join(REPO_ROOT, "src", f), "utf8").replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, "")));
  assert.deepEqual(offenders, []);
});
