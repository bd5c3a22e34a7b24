import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import net from "node:net";
import path from "node:path";
import { after, test } from "node:test";
import { controlSocketPath } from "../../src/server/control_server.ts";
import { ensurePrivateDir } from "../../src/runtime/state_dir.ts";
import { runCli } from "../helpers/cli.ts";
import { tempDir } from "../helpers/fixtures.ts";

const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

/** A stand-in control socket at `file` that records whether anything was sent to it. */
async function fakeServer(file: string): Promise<{ asked: () => boolean }> {
  let asked = false;
  const srv = net.createServer((s) =>
    s.once("data", () => {
      asked = true;
      s.end(JSON.stringify({ ok: true, result: { generation: 99, pid: 1, previousPid: 2, ms: 1 } }) + "\n");
    }),
  );
  await new Promise<void>((r) => srv.listen(file, r));
  after(() => srv.close());
  return { asked: () => asked };
}

test("status and upgrade refuse a control socket that is another user's, sending it nothing (PERILINK_STATE_DIR_UNSAFE)", { skip: !isRoot && "needs root (to give the socket to another user)" }, async () => {
  const stateDir = tempDir();
  const fake = await fakeServer(controlSocketPath(stateDir));
  await fs.chown(controlSocketPath(stateDir), 65534, 65534);
  for (const cmd of [["status"], ["upgrade"]]) {
    const r = await runCli([...cmd, "--state-dir", stateDir]);
    assert.equal(r.code, 78, r.stdout);
    assert.match(r.stderr, /Cannot trust the control socket .*owned by uid 65534.*\[PERILINK_STATE_DIR_UNSAFE\]/);
  }
  assert.equal(fake.asked(), false);
});

test("a command refuses a link in place of the control socket, and a state directory others may write", async () => {
  const real = tempDir();
  const fake = await fakeServer(path.join(real, "elsewhere.sock"));
  const stateDir = tempDir();
  await fs.symlink(path.join(real, "elsewhere.sock"), controlSocketPath(stateDir));
  const r = await runCli(["status", "--state-dir", stateDir]);
  assert.equal(r.code, 78, "EX_CONFIG: a state directory that cannot be used");
  assert.match(r.stderr, /Cannot trust the control socket .*it is not a socket.*\[PERILINK_STATE_DIR_UNSAFE\]/);
  const open = tempDir();
  await fakeServer(controlSocketPath(open));
  await fs.chmod(open, 0o777);
  const w = await runCli(["status", "--state-dir", open]);
  assert.match(w.stderr, /writable by others.*\[PERILINK_STATE_DIR_UNSAFE\]/);
  assert.equal(fake.asked(), false);
});

test("the server refuses a state directory that is a symbolic link (PERILINK_STATE_DIR_UNSAFE)", async () => {
  const real = tempDir();
  const link = path.join(tempDir(), "state");
  await fs.symlink(real, link);
  await assert.rejects(ensurePrivateDir(link), (e: Error & { code?: string }) => e.code === "PERILINK_STATE_DIR_UNSAFE" && /symbolic link/.test(e.message));
  const r = await runCli(["serve", "--access", "open", "--listen", "127.0.0.1:0", "--state-dir", link]);
  assert.equal(r.code, 78, "EX_CONFIG: systemd does not restart it");
  assert.match(r.stderr, /symbolic link.*\[PERILINK_STATE_DIR_UNSAFE\]/);
});

test("status run by a user who may not open the control socket says so (EACCES), not that no server runs", { skip: !isRoot && "needs root (to run the command as another user)" }, async () => {
  const stateDir = tempDir(); // 0700, root's: nobody may enter it
  await fakeServer(controlSocketPath(stateDir));
  const r = await runCli(["status", "--state-dir", stateDir], { prefix: ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"], env: { ...process.env, HOME: "/tmp" } });
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, /may not open its control socket; run the command as the server's user \(or root\)/);
});
