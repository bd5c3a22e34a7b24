import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import { test } from "node:test";
import { createClient } from "../../src/client/client.ts";
import { ClientSession } from "../../src/client/client_session.ts";
import { loadOrCreateClientKey } from "../../src/client/client_key.ts";
import { AccessDeniedError } from "../../src/errors.ts";
import { normalizePairingCode, PAIR_APP, pairingProof } from "../../src/protocol/pairing_code.ts";
import { PAIRING_FILE, PAIRING_MAX_ATTEMPTS } from "../../src/server/pairing.ts";
import { runCli } from "../helpers/cli.ts";
import { portOf, tempDir, testServer } from "../helpers/fixtures.ts";

const echo = { request: (p: Buffer) => p };

async function device(...offerArgs: string[]) {
  const stateDir = tempDir();
  const server = await testServer({ access: "keys", appObject: echo, stateDir });
  const r = await runCli(["pair", "--json", "--state-dir", stateDir, ...offerArgs]);
  assert.equal(r.code, 0, r.stderr);
  const offer = JSON.parse(r.stdout) as { code: string; serverKey: string; apps: string[] | null };
  assert.match(offer.code, /^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$/);
  return { stateDir, server, port: portOf(server), offer };
}

async function host() {
  const stateDir = tempDir();
  return { stateDir, key: await loadOrCreateClientKey(stateDir) };
}

const pair = (port: number, code: string, stateDir: string) => runCli(["pair", `127.0.0.1:${port}`, code, "--json", "--state-dir", stateDir]);

async function ask(port: number, stateDir: string, app = "printer"): Promise<string> {
  const client = createClient({ stateDir, lingerMs: 0 });
  try {
    return (await (await client.connect({ host: "127.0.0.1", port, app })).request("hi")).toString();
  } finally {
    await client.close();
  }
}

test("the right code pairs: the device trusts the host's key, and the host learns the device proved the code", async () => {
  const d = await device();
  const h = await host();
  await assert.rejects(ask(d.port, h.stateDir), AccessDeniedError);
  const r = await pair(d.port, d.offer.code.toLowerCase(), h.stateDir); // typed in lower case: still the code
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { serverKey: string; clientKey: string };
  assert.equal(out.serverKey, d.offer.serverKey);
  assert.equal(out.clientKey, h.key.fingerprint);
  assert.equal(await ask(d.port, h.stateDir), "hi");
  const again = await pair(d.port, d.offer.code, (await host()).stateDir);
  assert.equal(again.code, 1, "a code pairs once");
  assert.match(again.stderr, /PERILINK_PAIRING/);
  assert.match(again.stderr, /no pairing code is waiting/);
});

test("pairing for named apps trusts the host for those apps only", async () => {
  const d = await device("--app", "scanner");
  const h = await host();
  assert.equal((await pair(d.port, d.offer.code, h.stateDir)).code, 0);
  assert.equal(await ask(d.port, h.stateDir, "scanner"), "hi");
  await assert.rejects(ask(d.port, h.stateDir, "printer"), AccessDeniedError);
});

test("a wrong code is refused and trusts nothing; after the attempts are used up the right code is refused too", async () => {
  const d = await device();
  const h = await host();
  const wrong = d.offer.code.replace(/^./, (c) => (c === "0" ? "1" : "0"));
  for (let i = 1; i <= PAIRING_MAX_ATTEMPTS; i++) {
    const r = await pair(d.port, wrong, h.stateDir);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`wrong pairing code \\(${PAIRING_MAX_ATTEMPTS - i} attempts? left\\)`));
  }
  const right = await pair(d.port, d.offer.code, h.stateDir);
  assert.equal(right.code, 1);
  assert.match(right.stderr, /attempts are used up|no pairing code is waiting/);
  await assert.rejects(ask(d.port, h.stateDir), AccessDeniedError);
});

test("an expired code is refused", async () => {
  const d = await device("--ttl", "1");
  await new Promise((r) => setTimeout(r, 1200));
  const r = await pair(d.port, d.offer.code, (await host()).stateDir);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /expired/);
  await assert.rejects(fs.stat(path.join(d.stateDir, PAIRING_FILE)), { code: "ENOENT" });
});

test("a proof replayed by a relay on its own session is refused: it is bound to the transcript and the key of the session it was made for", async () => {
  const d = await device();
  const h = await host();
  const code = normalizePairingCode(d.offer.code)!;
  // The host's proof, made for the host's own session…
  const hostSession = await ClientSession.connect({ host: "127.0.0.1", port: d.port, clientKey: h.key, timeoutMs: 3000 });
  const proof = pairingProof(code, hostSession.transcript, "host", h.key.fingerprint).toString("base64");
  hostSession.destroy();
  // …sent by someone else on another session (another transcript, another key).
  const relay = await ClientSession.connect({ host: "127.0.0.1", port: d.port, timeoutMs: 3000 });
  const reply = JSON.parse((await relay.openChannelNow(PAIR_APP, "127.0.0.1", d.port).request(JSON.stringify({ proof }))).toString()) as { ok: boolean; why: string };
  relay.destroy();
  assert.equal(reply.ok, false);
  assert.match(reply.why, /wrong pairing code/);
  // The same proof on the host's key but a new session (a replay of the recorded session's bytes cannot make the same transcript: the server's ephemeral key is new).
  const later = await ClientSession.connect({ host: "127.0.0.1", port: d.port, clientKey: h.key, timeoutMs: 3000 });
  const r2 = JSON.parse((await later.openChannelNow(PAIR_APP, "127.0.0.1", d.port).request(JSON.stringify({ proof }))).toString()) as { ok: boolean };
  later.destroy();
  assert.equal(r2.ok, false);
});

test("a man in the middle during pairing does not get trusted, and the host is told it did not reach the device", async () => {
  const d = await device();
  const h = await host();
  // The impostor: a server of its own (another identity), in front of the host, relaying nothing it cannot read.
  const impostor = await testServer({ access: "keys", appObject: echo });
  // An eavesdropper sees only sealed records; a relay that forwards bytes verbatim is just the device (the
  // transcript is the device's): what the impostor can do is answer as itself.
  const r = await pair(portOf(impostor), d.offer.code, h.stateDir);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /no pairing code is waiting|did not prove it knows the code/);
  // The impostor held the host's proof for its own transcript: worth nothing at the device.
  await assert.rejects(ask(d.port, h.stateDir), AccessDeniedError);
  assert.equal((await pair(d.port, d.offer.code, h.stateDir)).code, 0, "the real device still pairs");
  // A verbatim relay in between: the pairing still works (the session is the device's), and the relay read nothing.
  const seen: Buffer[] = [];
  const relay = net.createServer((c) => {
    const up = net.connect(d.port, "127.0.0.1");
    c.on("data", (b: Buffer) => void seen.push(b));
    up.on("data", (b: Buffer) => void seen.push(b));
    c.pipe(up).pipe(c);
    c.on("error", () => up.destroy());
    up.on("error", () => c.destroy());
  });
  await new Promise<void>((r2) => relay.listen(0, "127.0.0.1", r2));
  try {
    const d2 = await runCli(["pair", "--json", "--state-dir", d.stateDir]);
    const code2 = (JSON.parse(d2.stdout) as { code: string }).code;
    const h2 = await host();
    const viaRelay = await pair((relay.address() as net.AddressInfo).port, code2, h2.stateDir);
    assert.equal(viaRelay.code, 0, viaRelay.stderr);
    const all = Buffer.concat(seen).toString("latin1");
    assert.ok(!all.includes(code2.replace(/-/g, "")) && !all.includes(h2.key.fingerprint) && !all.includes("proof"), "the relay saw no code, key fingerprint or proof");
  } finally {
    relay.close();
  }
});

test("pairing pins the device's key for the host, and refuses a device whose id this host pinned to another key", async () => {
  const d = await device();
  const h = await host();
  assert.equal((await pair(d.port, d.offer.code, h.stateDir)).code, 0);
  const pins = JSON.parse(await fs.readFile(path.join(h.stateDir, "client-pins.json"), "utf8")) as { pins: { serverId: string; publicKey: string }[] };
  assert.ok(pins.pins.some((p) => p.serverId === d.server.identity.serverId && p.publicKey === d.server.identity.publicKey.toString("hex")), "the device's key is pinned");
  // Another device claiming that id: refused before a proof is sent.
  const other = await device();
  pins.pins = pins.pins.map((p) => ({ ...p, serverId: other.server.identity.serverId }));
  await fs.writeFile(path.join(h.stateDir, "client-pins.json"), JSON.stringify(pins));
  const r = await pair(other.port, other.offer.code, h.stateDir);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /PERILINK_KEY_MISMATCH/);
  await assert.rejects(fs.stat(path.join(other.stateDir, "pairing.attempts")), { code: "ENOENT" }, "no attempt reached the device");
});

test("a stranger's one-way messages on a pairing channel never reach the app, and options of the other side are refused", async () => {
  const got: string[] = [];
  const stateDir = tempDir();
  const server = await testServer({ access: "keys", stateDir, appObject: { request: (p: Buffer) => p, message: (p: Uint8Array) => void got.push(Buffer.from(p).toString()) } });
  const s = await ClientSession.connect({ host: "127.0.0.1", port: portOf(server), timeoutMs: 3000 });
  const ch = s.openChannelNow(PAIR_APP, "127.0.0.1", portOf(server));
  ch.send("hello from a stranger");
  const reply = JSON.parse((await ch.request(JSON.stringify({ proof: "AAAA" }))).toString()) as { ok: boolean };
  s.destroy();
  assert.equal(reply.ok, false);
  assert.deepEqual(got, []);
  const r = await runCli(["pair", `127.0.0.1:${portOf(server)}`, "0000-0000-0000-0000", "--app", "x"]);
  assert.equal(r.code, 2, "a usage error");
  assert.match(r.stderr, /--app and --ttl are for the device side/);
});

test("a right code whose trust cannot be written (the trusted-keys file locked) is not used up: once the lock is gone the same code pairs", async () => {
  const d = await device();
  const h = await host();
  const lock = path.join(d.stateDir, "trusted-keys.lock");
  await fs.writeFile(lock, "");
  const blocked = await pair(d.port, d.offer.code, h.stateDir);
  assert.equal(blocked.code, 1);
  assert.match(blocked.stderr, /could not record this host's key \(its log says why\); try the same code again/);
  await assert.rejects(ask(d.port, h.stateDir), AccessDeniedError);
  await fs.rm(lock);
  const r = await pair(d.port, d.offer.code, h.stateDir);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await ask(d.port, h.stateDir), "hi");
});
