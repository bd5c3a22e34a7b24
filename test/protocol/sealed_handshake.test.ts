import assert from "node:assert/strict";
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { test } from "node:test";
import { ProtocolError, SignatureError } from "../../src/errors.ts";
import { WireError } from "../../src/protocol/constants.ts";
import { newEphemeral } from "../../src/protocol/key_exchange.ts";
import { isSmallOrderKey, rawPublicKey } from "../../src/protocol/keys.ts";
import { RecordOpener, RecordSealer, type CipherName } from "../../src/protocol/record_layer.ts";
import {
  answerClientHelloV2,
  CLIENT_HELLO_V2_SIZE,
  clientAuth,
  ClientHandshakeV2,
  SERVER_HELLO_V2_SIZE,
  verifyClientAuth,
  type ServerOffer,
} from "../../src/protocol/sealed_handshake.ts";

function identity(): { publicKey: Buffer; sign(m: Uint8Array): Buffer } {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return { publicKey: rawPublicKey(publicKey), sign: (m) => sign(null, m, privateKey) };
}

const server = identity();
function offer(ciphers: CipherName[] = ["chacha20-poly1305", "aes-256-gcm"], who = server): ServerOffer {
  return { serverId: randomBytes(16), publicKey: who.publicKey, maxFrame: 65536, maxChannels: 64, maxInflight: 32, generation: 3, idleTimeoutMs: 120_000, ciphers, sign: who.sign };
}

test("both sides end the handshake with the same two keys and the cipher the server prefers; the client's proof names its key", () => {
  const client = new ClientHandshakeV2({ ciphers: ["chacha20-poly1305", "aes-256-gcm"], maxFrame: 1 << 20 });
  assert.equal(client.hello.length, CLIENT_HELLO_V2_SIZE);
  const o = offer();
  const answer = answerClientHelloV2(client.hello, o);
  assert.ok(answer.ok);
  assert.equal(answer.reply.length, SERVER_HELLO_V2_SIZE);
  assert.equal(answer.peerMaxFrame, 1 << 20);
  const { hello, sealed } = client.finish(answer.reply);
  assert.ok(sealed);
  assert.equal(sealed.cipher, "chacha20-poly1305");
  assert.deepEqual(sealed.keys, answer.sealed.keys);
  assert.deepEqual(sealed.transcript, answer.sealed.transcript);
  assert.notDeepEqual(sealed.keys.clientToServer, sealed.keys.serverToClient, "one key per direction");
  assert.deepEqual([hello.generation, hello.maxInflight, hello.maxChannels], [3, 32, 64]);
  assert.deepEqual(hello.serverId, Buffer.from(o.serverId));

  const me = identity();
  const proof = clientAuth(me.publicKey, me.sign, sealed.transcript);
  assert.deepEqual(verifyClientAuth(proof, answer.sealed.transcript), me.publicKey);
  // Records sealed with the client's key open with the server's, in each direction.
  const out: Buffer[] = [];
  new RecordOpener(answer.sealed.cipher, answer.sealed.keys.clientToServer).push(new RecordSealer(sealed.cipher, sealed.keys.clientToServer).seal([proof], proof.length)[0]!, out);
  assert.deepEqual(out, [proof]);
});

test("a fresh key pair every session: two handshakes with the same hellos' other fields share no key", () => {
  const keys = [0, 1].map(() => {
    const client = new ClientHandshakeV2({ ciphers: ["chacha20-poly1305"], maxFrame: 65536 });
    const a = answerClientHelloV2(client.hello, offer());
    assert.ok(a.ok);
    return a.sealed.keys.clientToServer.toString("hex");
  });
  assert.notEqual(keys[0], keys[1]);
});

test("every bit of either hello changed on the way makes the client refuse: no session keys come out", () => {
  const o = offer();
  for (const side of ["client", "server"] as const) {
    const size = side === "client" ? CLIENT_HELLO_V2_SIZE : SERVER_HELLO_V2_SIZE;
    for (let byte = 0; byte < size; byte++) {
      for (const bit of [0, 7]) {
        const client = new ClientHandshakeV2({ ciphers: ["chacha20-poly1305", "aes-256-gcm"], maxFrame: 65536 });
        let toServer = client.hello;
        if (side === "client") {
          toServer = Buffer.from(client.hello);
          toServer[byte]! ^= 1 << bit;
        }
        let answer;
        try {
          answer = answerClientHelloV2(toServer, o);
        } catch (err) {
          assert.ok(err instanceof ProtocolError, `${side} byte ${byte}: ${String(err)}`);
          continue; // the server refused a malformed hello
        }
        const reply = Buffer.from(answer.reply);
        if (side === "server") reply[byte]! ^= 1 << bit;
        let sealed = null;
        try {
          sealed = client.finish(reply).sealed;
        } catch (err) {
          assert.ok(err instanceof ProtocolError || err instanceof SignatureError, `${side} byte ${byte} bit ${bit}: ${String(err)}`);
        }
        assert.equal(sealed, null, `${side} hello byte ${byte} bit ${bit} changed, yet the client accepted the session`);
      }
    }
  }
});

test("a relay that strikes ChaCha20-Poly1305 from the offer (a downgrade to AES-GCM) is caught by the signature", () => {
  const client = new ClientHandshakeV2({ ciphers: ["chacha20-poly1305", "aes-256-gcm"], maxFrame: 65536 });
  const tampered = Buffer.from(client.hello);
  tampered[5] = 2; // aes-256-gcm only
  const answer = answerClientHelloV2(tampered, offer());
  assert.ok(answer.ok);
  assert.equal(answer.sealed.cipher, "aes-256-gcm", "the server did as the tampered offer asked");
  assert.throws(() => client.finish(answer.reply), (err: unknown) => err instanceof SignatureError && /signature over the handshake does not verify/.test(err.message));
});

test("a server that signs with another key than the one its hello names is refused", () => {
  const client = new ClientHandshakeV2({ ciphers: ["chacha20-poly1305"], maxFrame: 65536 });
  const impostor = identity();
  const answer = answerClientHelloV2(client.hello, { ...offer(), sign: impostor.sign });
  assert.ok(answer.ok);
  assert.throws(() => client.finish(answer.reply), SignatureError);
});

test("a client offering no cipher the server has, or speaking another version, is refused with VersionUnsupported", () => {
  const client = new ClientHandshakeV2({ ciphers: ["aes-256-gcm"], maxFrame: 65536 });
  const none = answerClientHelloV2(client.hello, offer(["chacha20-poly1305"]));
  assert.equal(none.ok, false);
  assert.equal(!none.ok && none.status, WireError.VersionUnsupported);
  assert.equal(client.finish(none.reply).sealed, null, "the client sees the refusal's status");
  const v1 = Buffer.from(client.hello);
  v1[4] = 1;
  const old = answerClientHelloV2(v1, offer());
  assert.equal(!old.ok && old.status, WireError.VersionUnsupported);
});

test("a low-order (all-zero) ephemeral key from either side ends the handshake", () => {
  const client = new ClientHandshakeV2({ ciphers: ["chacha20-poly1305"], maxFrame: 65536 });
  const zero = Buffer.from(client.hello);
  zero.fill(0, 16);
  assert.throws(() => answerClientHelloV2(zero, offer()), (err: unknown) => err instanceof ProtocolError && /low-order|not usable/.test(err.message));
});

test("the client's proof does not verify for another session's transcript, nor with a key swapped in", () => {
  const me = identity();
  const other = identity();
  const t1 = randomBytes(32);
  const proof = clientAuth(me.publicKey, me.sign, t1);
  assert.throws(() => verifyClientAuth(proof, randomBytes(32)), ProtocolError);
  const swapped = Buffer.from(proof);
  swapped.set(other.publicKey, 0);
  assert.throws(() => verifyClientAuth(swapped, t1), ProtocolError);
  assert.throws(() => verifyClientAuth(proof.subarray(0, 50), t1), ProtocolError);
});

test("an onlooker who saw both hellos, but holds neither ephemeral private key, derives other keys", () => {
  const client = new ClientHandshakeV2({ ciphers: ["chacha20-poly1305"], maxFrame: 65536 });
  const answer = answerClientHelloV2(client.hello, offer());
  assert.ok(answer.ok);
  // The onlooker replays the client hello with its own ephemeral private key in the client's place.
  const guess = new ClientHandshakeV2({ ciphers: ["chacha20-poly1305"], maxFrame: 65536 }, newEphemeral());
  Object.defineProperty(guess, "hello", { value: client.hello });
  const theirs = guess.finish(answer.reply).sealed;
  assert.ok(theirs);
  assert.notDeepEqual(theirs.keys, answer.sealed.keys);
});

test("a small-order Ed25519 key is never a key: a proof or server hello made with one does not verify, in any spelling", () => {
  const identityPoint = Buffer.from("0100000000000000000000000000000000000000000000000000000000000000", "hex");
  // R = the identity, S = 0: what a small-order key "signs" for any message under a cofactorless verifier.
  const forged = Buffer.concat([identityPoint, Buffer.alloc(32)]);
  assert.throws(() => verifyClientAuth(Buffer.concat([identityPoint, forged]), randomBytes(32)), ProtocolError);
  const spellings = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p, i.e. 0
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p + 1, i.e. 1
  ];
  for (const hex of spellings) assert.equal(isSmallOrderKey(Buffer.from(hex, "hex")), true, hex);
  assert.equal(isSmallOrderKey(identity().publicKey), false);
  // A server hello signed "by" the identity point is refused.
  const client = new ClientHandshakeV2({ ciphers: ["chacha20-poly1305"], maxFrame: 65536 });
  const answer = answerClientHelloV2(client.hello, { ...offer(), publicKey: identityPoint, sign: () => forged });
  assert.ok(answer.ok);
  assert.throws(() => client.finish(answer.reply), SignatureError);
});
