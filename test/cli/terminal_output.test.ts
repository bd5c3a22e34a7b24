import assert from "node:assert/strict";
import net from "node:net";
import { after, test } from "node:test";
import { controlSocketPath } from "../../src/server/control_server.ts";
import { jsonLine, printable, printableLine } from "../../src/cli/terminal_text.ts";
import type { SessionApp } from "../../src/server/app.ts";
import { runCli } from "../helpers/cli.ts";
import { portOf, tempDir, testServer } from "../helpers/fixtures.ts";

// What a hostile server sends to whoever reads `perilink call`: a clipboard write (OSC 52),
// a window title, a cursor move to overwrite earlier lines, a C1 CSI and a right-to-left override.
const HOSTILE = "ok\x1b]52;c;cm0gLXJmIH4K\x07\x1b]0;owned\x1b\\\x1b[2A\u009b31m\u202etxt.exe";
const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/;

test("printable escapes controls, C1, bidi overrides and the backslash, and leaves text, tabs and newlines alone", () => {
  assert.equal(printable("plain text, ünïcødé ✓\tand\nlines"), "plain text, ünïcødé ✓\tand\nlines");
  assert.equal(printable("\x1b]0;t\x07"), "\\x1b]0;t\\x07");
  assert.equal(printable("a\\x1b"), "a\\\\x1b", "a literal backslash cannot pass for an escape");
  assert.equal(printable("\u009b\u202e\x7f\r"), "\\x9b\\u202e\\x7f\\x0d");
  assert.doesNotMatch(printable(HOSTILE), CONTROLS);
  assert.equal(printableLine("a\nfake row\tx"), "a\\x0afake row\\x09x", "a one-line field cannot add lines");
  assert.equal(JSON.parse(jsonLine({ s: HOSTILE })).s, HOSTILE, "JSON escaping leaves the data as it was");
  assert.doesNotMatch(jsonLine({ s: HOSTILE }), CONTROLS);
});

test("perilink call escapes a response's control characters; --raw writes its bytes as they came; --json stays JSON", async () => {
  const app: SessionApp = { request: () => Buffer.from(HOSTILE) };
  const server = await testServer({ appObject: app });
  after(() => server.drain(1000));
  const target = `127.0.0.1:${portOf(server)}`;
  const stateDir = tempDir();
  const human = await runCli(["call", target, "--state-dir", stateDir]);
  assert.equal(human.code, 0, human.stderr);
  assert.doesNotMatch(human.stdout, CONTROLS, "no control character reaches the terminal");
  assert.ok(human.stdout.includes("ok\\x1b]52;c;cm0gLXJmIH4K\\x07"), human.stdout);
  const raw = await runCli(["call", target, "--state-dir", stateDir, "--raw"]);
  assert.equal(raw.code, 0, raw.stderr);
  assert.equal(raw.stdout, HOSTILE);
  const json = await runCli(["call", target, "--state-dir", stateDir, "--json"]);
  assert.equal(JSON.parse(json.stdout).responses[0].response, HOSTILE);
  assert.doesNotMatch(json.stdout, CONTROLS, "--json escapes DEL, C1 and bidi controls as well");
});

test("perilink call escapes a handler's error text on stderr", async () => {
  const app: SessionApp = {
    request() {
      throw Object.assign(new Error(`refused\x1b]0;owned\x07`), { expose: true });
    },
  };
  const server = await testServer({ appObject: app });
  after(() => server.drain(1000));
  const r = await runCli(["call", `127.0.0.1:${portOf(server)}`, "--state-dir", tempDir()]);
  assert.equal(r.code, 1);
  assert.doesNotMatch(r.stderr, CONTROLS);
});

test("perilink status escapes what the control socket answers", async () => {
  const stateDir = tempDir();
  const fake = net.createServer((s) =>
    s.once("data", () =>
      s.end(
        JSON.stringify({
          ok: true,
          result: {
            serverId: "x\x1b]0;owned\x07",
            keyFingerprint: "SHA256:x",
            pid: 1,
            generation: 99,
            runtime: "node",
            target: "node20",
            app: "demo\x1b[2J",
            mode: "session",
            accepting: true,
            sessions: 0,
            inflight: 0,
            counters: {},
            listeners: [],
            draining: [],
          },
        }) + "\n",
      ),
    ),
  );
  await new Promise<void>((r) => fake.listen(controlSocketPath(stateDir), r));
  after(() => fake.close());
  const r = await runCli(["status", "--state-dir", stateDir]);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stdout, CONTROLS);
  assert.match(r.stdout, /demo\\x1b\[2J/);
});
