import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { createClient } from "../../src/client/client.ts";
import { ClientSession } from "../../src/client/client_session.ts";
import { loadOrCreateClientKey } from "../../src/client/client_key.ts";
import { AccessDeniedError } from "../../src/errors.ts";
import { DENIALS_BURST_PER_PEER } from "../../src/server/admission.ts";
import { resolveConfig } from "../../src/server/config.ts";
import { TRUSTED_KEYS_FILE, parseTrustedKeys } from "../../src/server/trusted_keys.ts";
import { runCli } from "../helpers/cli.ts";
import { portOf, tempDir, testServer } from "../helpers/fixtures.ts";

const echo = { request: (p: Buffer) => p };

/** A client of its own state directory (so of its own key), to the server's first endpoint. */
async function hostOf(name: string) {
  const stateDir = tempDir(`perilink-host-${name}-`);
  const key = await loadOrCreateClientKey(stateDir);
  return { stateDir, key, client: () => createClient({ stateDir, lingerMs: 0 }) };
}

async function ask(server: { endpoints(): { port: number }[] }, stateDir: string, app = "printer"): Promise<string> {
  const client = createClient({ stateDir, lingerMs: 0 });
  try {
    const link = await client.connect({ host: "127.0.0.1", port: portOf(server as never), app });
    return (await link.request("hi")).toString();
  } finally {
    await client.close();
  }
}

test("access defaults to trusted keys only", () => {
  assert.equal(resolveConfig({}).access, "keys");
  assert.throws(() => resolveConfig({ access: "anyone" as never }), /"access" must be "keys".*or "open"/);
});

test("refuses a client whose key is not trusted, naming its fingerprint and the command that trusts it", async () => {
  const server = await testServer({ access: "keys", appObject: echo });
  const host = await hostOf("stranger");
  const err = await ask(server, host.stateDir).then(() => null, (e: unknown) => e);
  assert.ok(err instanceof AccessDeniedError, `got ${String(err)}`);
  assert.equal(err.code, "PERILINK_ACCESS_DENIED");
  assert.match(err.message, new RegExp(`perilink trust add ${host.key.fingerprint.replace(/[+/]/g, "\\$&")}`));
  assert.equal(server.stats.accessDenied, 1);
});

test("trusts the server's own state-directory client key, as perilink call on the device uses it", async () => {
  const stateDir = tempDir();
  const server = await testServer({ access: "keys", appObject: echo, stateDir });
  assert.equal(await ask(server, stateDir), "hi");
});

test("trust add lets a key in without a restart, and trust remove refuses its next session", async () => {
  const stateDir = tempDir();
  const server = await testServer({ access: "keys", appObject: echo, stateDir });
  const host = await hostOf("office");
  await assert.rejects(ask(server, host.stateDir), AccessDeniedError);
  const add = await runCli(["trust", "add", host.key.fingerprint, "--comment", "office PC", "--state-dir", stateDir]);
  assert.equal(add.code, 0, add.stderr);
  assert.equal(await ask(server, host.stateDir), "hi");
  const list = await runCli(["trust", "list", "--json", "--state-dir", stateDir]);
  const keys = (JSON.parse(list.stdout) as { keys: { fingerprint: string; comment: string }[] }).keys;
  assert.ok(keys.some((k) => k.fingerprint === host.key.fingerprint && k.comment === "office PC"), list.stdout);
  const rm = await runCli(["trust", "remove", host.key.fingerprint, "--state-dir", stateDir]);
  assert.equal(rm.code, 0, rm.stderr);
  await assert.rejects(ask(server, host.stateDir), AccessDeniedError);
  const again = await runCli(["trust", "remove", host.key.fingerprint, "--state-dir", stateDir]);
  assert.equal(again.code, 2, "a usage error: that key is not there to remove");
  assert.match(again.stderr, /is not in/);
});

test("trust per app: a key trusted for one app is refused another, on the same session", async () => {
  const stateDir = tempDir();
  const server = await testServer({ access: "keys", appObject: echo, stateDir });
  const host = await hostOf("scanner-only");
  const add = await runCli(["trust", "add", host.key.fingerprint, "--app", "scanner", "--state-dir", stateDir]);
  assert.equal(add.code, 0, add.stderr);
  const client = host.client();
  try {
    const scan = await client.connect({ host: "127.0.0.1", port: portOf(server), app: "scanner" });
    assert.equal((await scan.request("page")).toString(), "page");
    const print = await client.connect({ host: "127.0.0.1", port: portOf(server), app: "printer" });
    const err = await print.request("job").then(() => null, (e: unknown) => e);
    assert.ok(err instanceof AccessDeniedError, `got ${String(err)}`);
    assert.match(err.message, /for app "printer"/);
    assert.equal((await scan.request("again")).toString(), "again", "the trusted app's link carries on");
    assert.equal(client.socketsInUse, 1);
  } finally {
    await client.close();
  }
});

test("a line of the trusted-keys file that cannot be read trusts nothing", async () => {
  const host = await hostOf("typo");
  const fp = host.key.fingerprint;
  const { entries, errors } = parseTrustedKeys(`# devices\n${fp.slice(0, -1)}\n${fp} apps=a,,b\nSHA256:x\n\n`);
  assert.equal(entries.length, 0);
  assert.deepEqual(errors.map((e) => e.line), [2, 3, 4]);
  const stateDir = tempDir();
  const server = await testServer({ access: "keys", appObject: echo, stateDir });
  await fs.writeFile(path.join(stateDir, TRUSTED_KEYS_FILE), `${fp.slice(0, -1)}\n${fp} apps=a,,b\n`);
  await assert.rejects(ask(server, host.stateDir), AccessDeniedError);
  await fs.writeFile(path.join(stateDir, TRUSTED_KEYS_FILE), `${fp}   apps=printer   added by hand\n`);
  assert.equal(await ask(server, host.stateDir), "hi");
});

test("a stranger's refusals count against its peer: past the allowance the session ends and new ones are refused before any key exchange", async () => {
  const server = await testServer({ access: "keys", appObject: echo });
  const port = portOf(server);
  const s = await ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 3000 });
  const closed = new Promise<Error | undefined>((r) => s.once("close", r));
  const answers: unknown[] = [];
  for (let i = 0; i < DENIALS_BURST_PER_PEER + 2; i++) {
    const ch = s.openChannelNow(`app${i}`, "127.0.0.1", port);
    answers.push(await ch.request("x").then(() => "ok", (e: unknown) => e));
    if (s.closed) break;
  }
  const why = await closed;
  // The stranger's proof of its key took one of the allowance, each refused channel one more.
  assert.ok(answers.slice(0, DENIALS_BURST_PER_PEER - 1).every((e) => e instanceof AccessDeniedError), String(answers));
  assert.equal(server.stats.accessDenied, DENIALS_BURST_PER_PEER);
  assert.match(String((why as { cause?: unknown })?.cause ?? why), /refused access too often/);
  const refusedBefore = server.stats.sessionsRefused;
  await assert.rejects(ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 3000 }), { code: "PERILINK_SERVER_BUSY" });
  assert.equal(server.stats.sessionsRefused, refusedBefore + 1);
});

test("access open lets any client in, still sealed", async () => {
  const server = await testServer({ access: "open", appObject: { request: (_p: Buffer, ctx: { clientKey: string }) => ctx.clientKey } });
  const host = await hostOf("anyone");
  assert.equal(await ask(server, host.stateDir), host.key.fingerprint);
});

test("perilink key prints the state directory's fingerprint, the same each time", async () => {
  const dir = tempDir();
  const a = await runCli(["key", "--json", "--state-dir", dir]);
  assert.equal(a.code, 0, a.stderr);
  const { fingerprint } = JSON.parse(a.stdout) as { fingerprint: string };
  assert.match(fingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/);
  const b = await runCli(["key", "--state-dir", dir]);
  assert.equal(b.stdout.trim(), fingerprint);
  assert.equal((await loadOrCreateClientKey(dir)).fingerprint, fingerprint);
  assert.equal((await fs.stat(path.join(dir, "client-key.json"))).mode & 0o777, 0o600);
});

test("perilink call prints PERILINK_ACCESS_DENIED on stderr and exits 1", async () => {
  const server = await testServer({ access: "keys", appObject: echo });
  const r = await runCli(["call", `127.0.0.1:${portOf(server)}`, "--state-dir", tempDir(), "--timeout", "5000"]);
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, /PERILINK_ACCESS_DENIED/);
  assert.match(r.stderr, /perilink trust add SHA256:/);
});

test("trust add for one more app keeps the apps a key had", async () => {
  const stateDir = tempDir();
  const server = await testServer({ access: "keys", appObject: echo, stateDir });
  const host = await hostOf("two-apps");
  assert.equal((await runCli(["trust", "add", host.key.fingerprint, "--app", "scanner", "--comment", "desk", "--state-dir", stateDir])).code, 0);
  const second = await runCli(["trust", "add", host.key.fingerprint, "--app", "printer", "--state-dir", stateDir]);
  assert.match(second.stdout, /for apps scanner, printer/);
  assert.equal(await ask(server, host.stateDir, "scanner"), "hi");
  assert.equal(await ask(server, host.stateDir, "printer"), "hi");
  const text = await fs.readFile(path.join(stateDir, TRUSTED_KEYS_FILE), "utf8");
  assert.equal(text, `${host.key.fingerprint} apps=scanner,printer # desk\n`);
  // A comment whose first word looks like an apps list stays a comment.
  assert.equal((await runCli(["trust", "add", host.key.fingerprint, "--app", "scanner", "--comment", "app: server=1", "--state-dir", stateDir])).code, 0);
  assert.deepEqual(parseTrustedKeys(await fs.readFile(path.join(stateDir, TRUSTED_KEYS_FILE), "utf8")).entries, [{ fingerprint: host.key.fingerprint, apps: ["scanner", "printer"], comment: "app: server=1" }]);
});
