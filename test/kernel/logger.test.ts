import assert from "node:assert/strict";
import { openSync, closeSync, fstatSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { createLogger } from "../../src/logger.ts";
import { stderrIsJournal } from "../../src/systemd/journal_stream.ts";
import { runCli, spawnCli, stopChild } from "../helpers/cli.ts";
import { tempDir, waitFor } from "../helpers/fixtures.ts";

function lines(format: "json" | "text", priorityPrefix = false): { log: ReturnType<typeof createLogger>; out: string[] } {
  const out: string[] = [];
  return { log: createLogger("debug", (l) => out.push(l), { pid: 42, generation: 3 }, { format, priorityPrefix }), out };
}

test("text log lines read as TIME LEVEL event key=value, with pid and generation; a peer's bytes come out as printable ASCII", () => {
  const { log, out } = lines("text");
  log.warn("session_refused", { peer: "192.0.2.7", why: "maxSessions", note: "two words\u001b]52;c;x\u0007\u202e", error: new Error("boom") });
  assert.match(out[0]!, /^\d{4}-\d\d-\d\dT\S+Z WARN  session_refused peer=192\.0\.2\.7 why=maxSessions note="two words\\u001b\]52;c;x\\u0007\\u202e" error=\{"message":"boom"\} pid=42 generation=3\n$/);
  assert.ok(/^[\x20-\x7e]*\n$/.test(out[0]!), "only printable ASCII");
});

test("JSON log lines keep their shape; with a priority prefix each line starts with its syslog level (<3> error … <7> debug)", () => {
  const { log, out } = lines("json", true);
  log.error("a");
  log.warn("b");
  log.info("c");
  log.debug("d");
  assert.deepEqual(out.map((l) => l.slice(0, 3)), ["<3>", "<4>", "<6>", "<7>"]);
  const rec = JSON.parse(out[0]!.slice(3)) as Record<string, unknown>;
  assert.deepEqual([rec.level, rec.event, rec.pid, rec.generation], ["error", "a", 42, 3]);
});

test("stderrIsJournal: only when JOURNAL_STREAM names this very stream (device:inode)", () => {
  const file = path.join(tempDir(), "journal");
  const fd = openSync(file, "w");
  try {
    const st = fstatSync(fd);
    assert.equal(stderrIsJournal({ JOURNAL_STREAM: `${st.dev}:${st.ino}` }, fd), true);
    assert.equal(stderrIsJournal({ JOURNAL_STREAM: `${st.dev}:${st.ino + 1}` }, fd), false, "another stream: a redirected child");
    assert.equal(stderrIsJournal({}, fd), false);
    assert.equal(stderrIsJournal({ JOURNAL_STREAM: "garbage" }, fd), false);
  } finally {
    closeSync(fd);
  }
});

test("serve --log-format text writes text lines with pid and generation; under journald's stream each line carries its priority", async () => {
  const dir = tempDir();
  const file = path.join(dir, "stderr");
  const fd = openSync(file, "w");
  const st = fstatSync(fd);
  const child = spawnCli(["serve", "--access", "open", "--state-dir", tempDir(), "--listen", "127.0.0.1:0", "--log-format", "text"], {
    env: { ...process.env, JOURNAL_STREAM: `${st.dev}:${st.ino}` },
    stdio: ["ignore", "ignore", fd],
  });
  closeSync(fd);
  try {
    const { readFileSync } = await import("node:fs");
    await waitFor(() => readFileSync(file, "utf8").includes("server_started"), "the server to start", 20_000);
    const first = readFileSync(file, "utf8").split("\n").find((l) => l.includes("server_started"))!;
    assert.match(first, /^<6>\S+Z INFO  server_started /);
    assert.match(first, new RegExp(` pid=${child.pid}( |$)`));
    assert.match(first, / generation=1( |$)/);
  } finally {
    await stopChild(child);
  }
  const bad = await runCli(["serve", "--log-format", "xml"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--log-format is text or json/);
});
