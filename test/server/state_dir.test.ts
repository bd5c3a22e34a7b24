/**
 * The state directory holds the identity key, the control socket and the
 * accept semaphore: whoever can write into it can take the server's identity
 * or plant files it will follow. A directory owned by another user, or
 * writable by group or others, is refused; files are written under
 * unpredictable temporary names, never through a symlink.
 */
import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { StateDirError } from "../../src/errors.ts";
import { IDENTITY_FILE, loadOrCreateIdentity } from "../../src/server/identity.ts";
import { ensurePrivateDir } from "../../src/runtime/state_dir.ts";
import { tempDir } from "../helpers/fixtures.ts";

const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

test("a state directory owned by another user is refused with PERILINK_STATE_DIR_UNSAFE", async (t) => {
  if (!isRoot) {
    t.skip("needs root to chown a directory to another user");
    return;
  }
  const dir = path.join(tempDir(), "state");
  await fs.mkdir(dir, { mode: 0o700 });
  await fs.chown(dir, 65534, 65534);
  await assert.rejects(loadOrCreateIdentity(dir), (err: unknown) => {
    assert.ok(err instanceof StateDirError, `a StateDirError, got ${String(err)}`);
    assert.equal(err.code, "PERILINK_STATE_DIR_UNSAFE");
    assert.match(err.message, /^Cannot use state directory .*: it is owned by uid 65534, not by this user \(uid 0\); /);
    return true;
  });
  await assert.rejects(fs.stat(path.join(dir, IDENTITY_FILE)), { code: "ENOENT" }, "nothing was written into it");
});

test("a group-writable or world-writable state directory is refused, not silently repaired", async () => {
  for (const mode of [0o770, 0o702, 0o1777]) {
    const dir = path.join(tempDir(), "state");
    await fs.mkdir(dir);
    await fs.chmod(dir, mode);
    await assert.rejects(ensurePrivateDir(dir), (err: unknown) => {
      assert.ok(err instanceof StateDirError, `mode ${mode.toString(8)}: a StateDirError, got ${String(err)}`);
      assert.equal(err.code, "PERILINK_STATE_DIR_UNSAFE");
      assert.match(err.message, /writable by (group|others)/);
      return true;
    });
    assert.equal((await fs.stat(dir)).mode & 0o7777, mode, "left as it was for its owner to look at");
  }
});

test("a state directory under a parent anyone may write (not sticky) or another user owns is refused; a sticky parent like /tmp is fine", async (t) => {
  const open = path.join(tempDir(), "shared");
  await fs.mkdir(open);
  await fs.chmod(open, 0o777);
  await assert.rejects(ensurePrivateDir(path.join(open, "state")), (err: unknown) => {
    assert.ok(err instanceof StateDirError);
    assert.match(err.message, /shared above it is writable by everyone and not sticky/);
    return true;
  });
  // A link that anyone may replace, on the way to a private directory: the path as given is checked too.
  const privateDir = path.join(tempDir(), "private");
  await fs.mkdir(privateDir, { mode: 0o700 });
  await fs.symlink(privateDir, path.join(open, "link"));
  await assert.rejects(ensurePrivateDir(path.join(open, "link", "state")), /shared above it is writable by everyone and not sticky/);
  await fs.chmod(open, 0o1777); // sticky: only an entry's owner may rename it
  await ensurePrivateDir(path.join(open, "state2"));
  if (!isRoot) {
    t.diagnostic("the other-owner case needs root to chown a directory to another user");
    return;
  }
  const theirs = path.join(tempDir(), "theirs");
  await fs.mkdir(theirs, { mode: 0o755 });
  const mine = path.join(theirs, "state");
  await fs.mkdir(mine, { mode: 0o700 });
  await fs.chown(theirs, 65534, 65534);
  await assert.rejects(ensurePrivateDir(mine), /theirs above it is owned by uid 65534/);
});

test("a state directory only readable by others is tightened to 0700", async () => {
  const dir = path.join(tempDir(), "state");
  await fs.mkdir(dir);
  await fs.chmod(dir, 0o755);
  await ensurePrivateDir(dir);
  assert.equal((await fs.stat(dir)).mode & 0o777, 0o700);
});

test("a symlink planted at the old predictable temporary name is not followed when the identity is written", async () => {
  const dir = path.join(tempDir(), "state");
  await fs.mkdir(dir, { mode: 0o700 });
  const victim = path.join(tempDir(), "victim");
  await fs.writeFile(victim, "untouched\n");
  const planted = path.join(dir, `${IDENTITY_FILE}.${process.pid}.tmp`);
  await fs.symlink(victim, planted);
  const id = await loadOrCreateIdentity(dir);
  assert.equal(await fs.readFile(victim, "utf8"), "untouched\n", "the symlink's target was not written");
  const st = await fs.lstat(path.join(dir, IDENTITY_FILE));
  assert.ok(st.isFile(), "identity.json is a regular file, not a symlink");
  assert.equal(st.mode & 0o777, 0o600);
  assert.match(await fs.readFile(path.join(dir, IDENTITY_FILE), "utf8"), new RegExp(id.serverId));
  const leftovers = (await fs.readdir(dir)).filter((f) => f.endsWith(".tmp") && path.join(dir, f) !== planted);
  assert.deepEqual(leftovers, [], "no temporary file left behind");
});
