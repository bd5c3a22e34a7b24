import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { CALL_PIN_FILE } from "../../src/cli/call_command.ts";
import { createClient } from "../../src/client/client.ts";
import type { PerilinkServer } from "../../src/server/server.ts";
import { runCli } from "../helpers/cli.ts";
import { tempDir, testServer } from "../helpers/fixtures.ts";

/** A server on 127.0.0.2 with its own key that claims `real`'s identifier. */
async function impostorOf(real: PerilinkServer): Promise<PerilinkServer> {
  const { serverId } = JSON.parse(await fs.readFile(path.join(real.config.stateDir, "identity.json"), "utf8")) as { serverId: string };
  const dir = tempDir();
  await (await testServer({ stateDir: dir })).drain(200);
  const ident = JSON.parse(await fs.readFile(path.join(dir, "identity.json"), "utf8")) as { serverId: string };
  ident.serverId = serverId;
  await fs.writeFile(path.join(dir, "identity.json"), JSON.stringify(ident), { mode: 0o600 });
  const impostor = await testServer({ stateDir: dir, listen: ["127.0.0.2:0"] });
  assert.equal(impostor.serverId, real.serverId);
  return impostor;
}

const mismatch = (e: unknown): boolean => (e as { code?: string }).code === "PERILINK_KEY_MISMATCH";

test("a restarted client with the same pinFile still refuses a server that claims a known identifier with another key", async () => {
  const real = await testServer();
  const impostor = await impostorOf(real);
  const pinFile = path.join(tempDir(), "pins.json");
  const first = createClient({ lingerMs: 0, pinFile });
  await (await first.connect({ host: "127.0.0.1", port: real.endpoints()[0]!.port, app: "a" })).request("x");
  await first.close();
  const second = createClient({ lingerMs: 0, pinFile }); // a new process would start the same way
  try {
    await assert.rejects(second.connect({ host: "127.0.0.2", port: impostor.endpoints()[0]!.port, app: "victim" }), mismatch);
    assert.equal(impostor.status().counters.channelsOpen, 0, "no traffic went to the impostor");
  } finally {
    await second.close();
  }
});

test("a client with a corrupt pinFile fails at creation with PERILINK_PIN_FILE", async () => {
  const pinFile = path.join(tempDir(), "pins.json");
  await fs.writeFile(pinFile, "garbage");
  assert.throws(() => createClient({ pinFile }), (e: unknown) => (e as { code?: string }).code === "PERILINK_PIN_FILE");
});

test("perilink call keeps its pins in the state directory: a later call refuses the impostor", async () => {
  const real = await testServer();
  const impostor = await impostorOf(real);
  const stateDir = tempDir();
  const env = { ...process.env, PERILINK_STATE_DIR: stateDir };
  const ok = await runCli(["call", `127.0.0.1:${real.endpoints()[0]!.port}`], { env });
  assert.equal(ok.code, 0, ok.stderr);
  const pins = JSON.parse(await fs.readFile(path.join(stateDir, CALL_PIN_FILE), "utf8")) as { pins: { serverId: string }[] };
  assert.deepEqual(pins.pins.map((p) => p.serverId), [real.serverId]);
  assert.equal((await fs.stat(path.join(stateDir, CALL_PIN_FILE))).mode & 0o777, 0o600);
  const refused = await runCli(["call", `127.0.0.2:${impostor.endpoints()[0]!.port}`], { env });
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /PERILINK_KEY_MISMATCH/);
});

test("regression: two clients sharing a pin file that pin different servers at once both keep their pins", async () => {
  const { IdentityBook } = await import("../../src/client/identity_book.ts");
  const { randomBytes, randomUUID } = await import("node:crypto");
  const file = path.join(tempDir(), "pins.json");
  for (let round = 0; round < 20; round++) {
    const a = new IdentityBook(60_000, 64, { pinFile: file });
    const b = new IdentityBook(60_000, 64, { pinFile: file });
    const x = randomUUID();
    const y = randomUUID();
    a.pin(x, randomBytes(32), "127.0.0.1:1");
    b.pin(y, randomBytes(32), "127.0.0.2:1");
    await Promise.all([a.flush(), b.flush()]);
    const pins = (JSON.parse(await fs.readFile(file, "utf8")) as { pins: { serverId: string }[] }).pins.map((p) => p.serverId);
    assert.ok(pins.includes(x) && pins.includes(y), `round ${round}: the file holds both pins`);
  }
  await assert.rejects(fs.stat(`${file}.lock`), "no lock file is left behind");
});
