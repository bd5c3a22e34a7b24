import assert from "node:assert/strict";
import { test } from "node:test";
import { hasAesInstructions } from "../../src/runtime/cpu_features.ts";
import { portOf, testServer } from "../helpers/fixtures.ts";
import { sealedPeer } from "../helpers/raw_peer.ts";

test("the server picks the cipher its CPU does fastest among the client's: AES-256-GCM with AES instructions, ChaCha20-Poly1305 without; a client offering one gets that one", async () => {
  const server = await testServer();
  const port = portOf(server);
  const both = await sealedPeer(port, { ciphers: ["chacha20-poly1305", "aes-256-gcm"], read: false });
  assert.equal(both.cipher, hasAesInstructions() ? "aes-256-gcm" : "chacha20-poly1305");
  for (const only of ["chacha20-poly1305", "aes-256-gcm"] as const) {
    const p = await sealedPeer(port, { ciphers: [only], read: false });
    assert.equal(p.cipher, only);
    p.sock.destroy();
  }
  both.sock.destroy();
});
