/**
 * The `discovery` configuration key, what each mode starts, and the avahi
 * service file (its content and escaping; what a real avahi-daemon does with
 * it is test/server/avahi_daemon.test.ts).
 */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { ConfigError } from "../../src/errors.ts";
import type { Logger } from "../../src/logger.ts";
import { encodeTxt } from "../../src/protocol/dnssd.ts";
import { keyFingerprint } from "../../src/protocol/keys.ts";
import { avahiServiceXml, writeAvahiService, xmlText } from "../../src/server/avahi_service.ts";
import { resolveConfig } from "../../src/server/config.ts";
import { serviceRecords, startDiscovery, type DiscoveryContext } from "../../src/server/discovery.ts";
import { VERSION } from "../../src/version.ts";
import { tempDir } from "../helpers/fixtures.ts";

const ENV = { PERILINK_STATE_DIR: "/tmp/x" };

test("discovery is off unless configured, and takes off, builtin, avahi and auto", () => {
  assert.deepEqual(resolveConfig({}, ENV).discovery, { advertise: "off" });
  assert.deepEqual(resolveConfig({ discovery: {} }, ENV).discovery, { advertise: "off" });
  for (const advertise of ["off", "builtin", "avahi", "auto"] as const) assert.deepEqual(resolveConfig({ discovery: { advertise } }, ENV).discovery, { advertise });
});

test("a bad discovery value is a ConfigError naming the key and the modes", () => {
  const bad = (v: unknown, re: RegExp): void => assert.throws(() => resolveConfig({ discovery: v } as never, ENV), (e: unknown) => e instanceof ConfigError && re.test(e.message), JSON.stringify(v));
  bad({ advertise: "on" }, /"discovery.advertise" must be "off", "builtin", "avahi", "auto", not "on"/);
  bad({ advertise: true }, /"discovery.advertise" must be/);
  bad({ advertize: "auto" }, /unknown key "discovery.advertize"/);
  bad("auto", /"discovery" must be an object/);
  bad(null, /"discovery" must be an object/);
});

function context(endpoints = [{ address: "127.0.0.1", port: 1025 }, { address: "127.0.0.1", port: 1026 }], avahiDir?: string): { ctx: DiscoveryContext; warnings: string[] } {
  const warnings: string[] = [];
  const log = { debug() {}, info() {}, error() {}, warn: (_event: string, fields?: Record<string, unknown>) => warnings.push(String(fields?.reason)) } as unknown as Logger;
  const ctx: DiscoveryContext = {
    serverId: "11111111-2222-4333-8444-555555555555",
    identity: { publicKey: new Uint8Array(32).fill(7) },
    endpoints: () => endpoints,
    log,
    hostname: "kitchen-pi.lan",
    mdnsPort: 40_000 + Math.floor(Math.random() * 10_000),
    ...(avahiDir ? { avahiDir } : {}),
  };
  return { ctx, warnings };
}

test("the advertised records: host name as instance, the first port in SRV, id, key, version and every port in TXT", () => {
  const { ctx } = context();
  assert.deepEqual(serviceRecords(ctx), {
    instanceName: "kitchen-pi._perilink._tcp.local",
    host: "kitchen-pi.local",
    port: 1025,
    txt: ["id=11111111-2222-4333-8444-555555555555", `fp=${keyFingerprint(new Uint8Array(32).fill(7))}`, `ver=${VERSION}`, "ports=1025,1026"],
  });
  assert.equal(serviceRecords(context([]).ctx), null, "a process with no listener (a service process) advertises nothing");
});

test("the avahi service file names the type and port and carries the TXT, XML-escaped", () => {
  assert.equal(
    avahiServiceXml(1025, encodeTxt({ id: "a", fp: "SHA256:b", ver: "1<2&\"3'>", ports: [1025, 1026] })),
    [
      `<?xml version="1.0" standalone="no"?>`,
      `<!DOCTYPE service-group SYSTEM "avahi-service.dtd">`,
      `<!-- Written by perilink serve ("discovery" in its configuration); rewritten at each start. -->`,
      `<service-group>`,
      `  <name replace-wildcards="yes">%h</name>`,
      `  <service>`,
      `    <type>_perilink._tcp</type>`,
      `    <port>1025</port>`,
      `    <txt-record>id=a</txt-record>`,
      `    <txt-record>fp=SHA256:b</txt-record>`,
      `    <txt-record>ver=1&lt;2&amp;&quot;3&apos;&gt;</txt-record>`,
      `    <txt-record>ports=1025,1026</txt-record>`,
      `  </service>`,
      `</service-group>`,
      ``,
    ].join("\n"),
  );
  assert.equal(xmlText("a\x00b\x1bc\td"), "abc\td", "controls XML 1.0 cannot hold are left out");
});

test("auto and avahi write the service file when avahi's directory is there", async () => {
  for (const advertise of ["auto", "avahi"] as const) {
    const dir = tempDir();
    const { ctx } = context(undefined, dir);
    const a = await startDiscovery({ advertise }, ctx);
    assert.equal(a?.kind, "avahi");
    const xml = readFileSync(path.join(dir, "perilink.service"), "utf8");
    assert.match(xml, /<txt-record>id=11111111-2222-4333-8444-555555555555<\/txt-record>/);
    assert.match(xml, /<port>1025<\/port>/);
    await a!.close(false);
    assert.equal(readFileSync(path.join(dir, "perilink.service"), "utf8"), xml, "after a handover the file is the new process's: left as it is");
    await a!.close(true);
    const stopped = readFileSync(path.join(dir, "perilink.service"), "utf8");
    assert.equal(stopped, avahiServiceXml(null), "a stop leaves a group with no service");
    assert.doesNotMatch(stopped, /<service>|<txt-record>/);
    assert.match(stopped, /<name replace-wildcards="yes">%h<\/name>/);
  }
});

test("a stop while the avahi file is first written withdraws it at once; a handover meanwhile leaves it", async () => {
  for (const [stopped, withdrawn] of [
    [true, true],
    [false, false],
  ] as const) {
    const dir = tempDir();
    const a = await startDiscovery({ advertise: "avahi" }, context(undefined, dir).ctx, () => stopped);
    assert.equal(a, null, "nothing to close later: it was closed as it started");
    const xml = readFileSync(path.join(dir, "perilink.service"), "utf8");
    assert.equal(xml === avahiServiceXml(null), withdrawn, stopped ? "a stop: withdrawn" : "a handover: the new process's file is left");
  }
});

test("a rescan's rewrite under way when the server stops does not land after the withdrawal", async () => {
  const dir = tempDir();
  const endpoints = [{ address: "127.0.0.1", port: 1025 }];
  const a = await startDiscovery({ advertise: "avahi" }, context(endpoints, dir).ctx);
  assert.equal(a?.kind, "avahi");
  endpoints.push({ address: "127.0.0.1", port: 1026 }); // a listener appeared: the TXT's ports change
  a!.changed();
  await a!.close(true);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(readFileSync(path.join(dir, "perilink.service"), "utf8"), avahiServiceXml(null), "withdrawn, not re-advertised by the rescan's write");
  a!.changed();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(readFileSync(path.join(dir, "perilink.service"), "utf8"), avahiServiceXml(null), "nothing is written after close()");
});

test("a rewrite within the second of the last write moves the mtime's second on (avahi-daemon compares whole seconds)", async () => {
  const dir = tempDir();
  const file = await writeAvahiService(dir, avahiServiceXml(1025, ["id=a"]));
  const seconds = (): number => Math.floor(statSync(file).mtimeMs / 1000);
  for (let i = 0; i < 3; i++) {
    const before = seconds();
    await writeAvahiService(dir, avahiServiceXml(i % 2 ? 1025 : null));
    assert.notEqual(seconds(), before, `rewrite ${i}`);
  }
  const before = statSync(file).mtimeMs;
  await writeAvahiService(dir, avahiServiceXml(null));
  assert.equal(statSync(file).mtimeMs, before, "the same content is not written again");
});

test("auto without avahi starts the built-in responder; avahi without avahi, or with a file it cannot write, warns and advertises nothing", async () => {
  const missing = path.join(tempDir(), "no-avahi");
  const auto = await startDiscovery({ advertise: "auto" }, context(undefined, missing).ctx);
  assert.equal(auto?.kind, "builtin");
  await auto!.close(false);
  const none = context(undefined, missing);
  assert.equal(await startDiscovery({ advertise: "avahi" }, none.ctx), null);
  assert.match(none.warnings[0]!, /install avahi-daemon, or set "discovery": \{"advertise": "builtin"\}/);
  const dir = tempDir();
  mkdirSync(path.join(dir, "perilink.service")); // a directory where the file should be: the write fails
  const blocked = context(undefined, dir);
  assert.equal(await startDiscovery({ advertise: "auto" }, blocked.ctx), null, "avahi is there: no second responder competes with it");
  assert.match(blocked.warnings[0]!, /cannot write the avahi service file/);
  assert.equal(await startDiscovery({ advertise: "off" }, context().ctx), null);
});
