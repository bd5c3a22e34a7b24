// Review finding: the client proves its key before it checks the pinned key (TCP identify fallback). Failing today.
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import net from "node:net";
import { test } from "node:test";
import { createClient } from "../../src/client/client.ts";
import { loadOrCreateClientKey } from "../../src/client/client_key.ts";
import { keyFingerprint } from "../../src/protocol/keys.ts";
import { LARGE_RECORD_PLAINTEXT, RecordOpener } from "../../src/protocol/record_layer.ts";
import { CLIENT_AUTH_SIZE, CLIENT_HELLO_V2_SIZE, verifyClientAuth } from "../../src/protocol/sealed_handshake.ts";
import { Identity } from "../../src/server/identity.ts";
import { answerClientHello } from "../../src/server/session_handshake.ts";
import { portOf, sleep, tempDir, testServer } from "../helpers/fixtures.ts";

test("an impostor with a known server's id and another key, reached over TCP only, does not learn the client's key", async () => {
  const real = await testServer({ appObject: { request: (p: Buffer) => p } });
  const hostDir = tempDir();
  const key = await loadOrCreateClientKey(hostDir);
  const client = createClient({ stateDir: hostDir, lingerMs: 0, probeTimeoutMs: 200 });
  await (await client.connect({ host: "127.0.0.1", port: portOf(real), app: "a" })).request("hi"); // pins the real key
  const fake = new Identity(real.identity.serverId, generateKeyPairSync("ed25519").privateKey);
  let learned: string | null = null;
  const impostor = net.createServer((s) => {
    s.on("error", () => {});
    let buf = Buffer.alloc(0);
    let opener: RecordOpener | null = null;
    let transcript: Buffer = Buffer.alloc(0);
    s.on("data", (c: Buffer) => {
      if (!opener) {
        buf = Buffer.concat([buf, c]);
        if (buf.length < CLIENT_HELLO_V2_SIZE) return;
        const a = answerClientHello(buf.subarray(0, CLIENT_HELLO_V2_SIZE), { identity: fake, generation: 1, limits: real.limits });
        if (!a.ok) return void s.destroy();
        s.write(a.reply);
        opener = new RecordOpener(a.sealed.cipher, a.sealed.keys.clientToServer, { maxPlaintext: LARGE_RECORD_PLAINTEXT });
        transcript = a.sealed.transcript;
        c = buf.subarray(CLIENT_HELLO_V2_SIZE);
      }
      const out: Buffer[] = [];
      opener.push(c, out);
      const plain = Buffer.concat(out);
      if (plain.length >= CLIENT_AUTH_SIZE) learned ??= keyFingerprint(verifyClientAuth(plain.subarray(0, CLIENT_AUTH_SIZE), transcript));
    });
  });
  await new Promise<void>((r) => impostor.listen(0, "127.0.0.2", r)); // no UDP responder there: the client falls back to TCP
  try {
    await assert.rejects(client.connect({ host: "127.0.0.2", port: (impostor.address() as net.AddressInfo).port, app: "a" }), { code: "PERILINK_KEY_MISMATCH" });
    await sleep(100);
    assert.equal(learned, null, `the impostor learned ${learned} (the host's key is ${key.fingerprint})`);
  } finally {
    await client.close();
    impostor.close();
  }
});
