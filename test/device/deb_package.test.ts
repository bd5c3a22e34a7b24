import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { REPO_ROOT, stopChild } from "../helpers/cli.ts";
import { waitFor } from "../helpers/fixtures.ts";
import { heapLimitWith, nodeBin } from "./bundles.ts";

/**
 * `npm run package` (build/deb.ts) and the package it makes, installed with
 * dpkg into a scratch root: files, owners and modes, the maintainer scripts'
 * user and state directory, and the installed program running `version` and
 * `serve` as that user. Needs root (dpkg, and switching to the service user).
 */

const run = promisify(execFile);
const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
const haveDpkg = await run("dpkg-deb", ["--version"]).then(
  () => true,
  () => false,
);
const skip = !isRoot ? "needs root (dpkg --root, and running as the service user)" : !haveDpkg ? "needs dpkg-deb" : false;

let deb = "";
let scratch = "";
let version = "";

before(async () => {
  if (skip) return;
  version = JSON.parse(await fs.readFile(path.join(REPO_ROOT, "package.json"), "utf8")).version;
  const out = await fs.mkdtemp(path.join(os.tmpdir(), "perilink-deb-out-"));
  // A maintainer as a release build sets one (Debian's variables); lintian rejects the placeholder.
  const env = { ...process.env, DEBFULLNAME: "Perilink Packaging Test", DEBEMAIL: "packaging-test@perilink.example.org" };
  await run(nodeBin(), ["--import", "tsx", path.join(REPO_ROOT, "build", "deb.ts"), "--outdir", out], { cwd: REPO_ROOT, env });
  deb = path.join(out, `perilink_${version}_all.deb`);
  scratch = await scratchRoot();
  await install(scratch, deb);
});

/** An empty root with what dpkg and useradd need: a dpkg database and the account files. */
async function scratchRoot(): Promise<string> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), "perilink-root-"));
  await fs.chmod(root, 0o755);
  // etc/avahi/services: avahi-daemon is installed there (postinst makes the DNS-SD service file).
  for (const d of ["etc/avahi/services", "var/lib/dpkg/info", "var/lib/dpkg/updates"]) await fs.mkdir(path.join(root, d), { recursive: true });
  for (const f of ["var/lib/dpkg/status", "var/lib/dpkg/available"]) await fs.writeFile(path.join(root, f), "");
  await fs.writeFile(path.join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
  await fs.writeFile(path.join(root, "etc/group"), "root:x:0:\n");
  await fs.writeFile(path.join(root, "etc/shadow"), "root:*:19000:0:99999:7:::\n", { mode: 0o640 });
  await fs.writeFile(path.join(root, "etc/gshadow"), "root:*::\n", { mode: 0o640 });
  return root;
}

/** dpkg -i into `root`; nodejs and init-system-helpers are not in its database (the host's run): those dependencies alone are forced. */
async function install(root: string, file: string, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  await run("dpkg", [`--root=${root}`, "--force-script-chrootless", "--force-depends", "-i", file], { env });
}

test("npm run package makes an architecture-all .deb: the bundle as /usr/bin/perilink, a conffile in /etc/perilink, root-owned, nodejs (>= 20) as dependency", { skip }, async () => {
  const info = (await run("dpkg-deb", ["-f", deb, "Package", "Version", "Architecture", "Depends"])).stdout;
  assert.match(info, /^Package: perilink$/m);
  assert.match(info, new RegExp(`^Version: ${version.replaceAll(".", "\\.")}$`, "m"));
  assert.match(info, /^Architecture: all$/m);
  assert.match(info, /^Depends: .*nodejs \(>= 20\)/m);
  const list = (await run("dpkg-deb", ["-c", deb])).stdout;
  assert.match(list, /^-rwxr-xr-x root\/root +\d+ .* \.\/usr\/bin\/perilink$/m);
  assert.match(list, /^-rw-r--r-- root\/root +\d+ .* \.\/etc\/perilink\/config\.json$/m);
  for (const line of list.trim().split("\n")) assert.match(line, / root\/root /, line);
  assert.equal((await run("dpkg-deb", ["-I", deb, "conffiles"])).stdout.trim(), "/etc/perilink/config.json");
  // targets/systemd/ has no units yet: the package has none, and says nothing about systemd it does not ship.
  const units = await fs.readdir(path.join(REPO_ROOT, "targets", "systemd")).catch(() => [] as string[]);
  if (units.length === 0) assert.doesNotMatch(list, /systemd/);
  // The device package has no host agent, so none of its user units.
  assert.doesNotMatch(list, /systemd\/user/);
});

test("a host package (--target node20) also carries the host agent's systemd user units", { skip }, async () => {
  const out = await fs.mkdtemp(path.join(os.tmpdir(), "perilink-deb-host-"));
  after(() => fs.rm(out, { recursive: true, force: true }));
  await run(nodeBin(), ["--import", "tsx", path.join(REPO_ROOT, "build", "deb.ts"), "--target", "node20", "--outdir", out], { cwd: REPO_ROOT });
  const list = (await run("dpkg-deb", ["-c", path.join(out, `perilink_${version}_all.deb`)])).stdout;
  for (const unit of ["perilink-agent.socket", "perilink-agent.service"]) assert.match(list, new RegExp(`^-rw-r--r-- root/root +\\d+ .* \\./usr/lib/systemd/user/${unit.replace(".", "\\.")}$`, "m"));
});

test("installed into a scratch root: a perilink system user owns the 0700 state directory; files have their modes", { skip }, async () => {
  const passwd = await fs.readFile(path.join(scratch, "etc/passwd"), "utf8");
  const m = /^perilink:x:(\d+):(\d+):[^:]*:\/var\/lib\/perilink:\/usr\/sbin\/nologin$/m.exec(passwd);
  assert.ok(m, passwd);
  const uid = Number(m[1]);
  assert.ok(uid > 0 && uid < 1000, `a system uid, not ${uid}`);
  const state = await fs.stat(path.join(scratch, "var/lib/perilink"));
  assert.equal(state.uid, uid);
  assert.equal(state.gid, Number(m[2]));
  assert.equal(state.mode & 0o777, 0o700);
  const bin = await fs.stat(path.join(scratch, "usr/bin/perilink"));
  assert.equal(bin.mode & 0o777, 0o755);
  assert.equal(bin.uid, 0);
  const conf = await fs.stat(path.join(scratch, "etc/perilink/config.json"));
  assert.equal(conf.mode & 0o777, 0o644);
  assert.deepEqual(JSON.parse(await fs.readFile(path.join(scratch, "etc/perilink/config.json"), "utf8")).stateDir, "/var/lib/perilink");
  const status = (await run("dpkg", [`--root=${scratch}`, "-s", "perilink"])).stdout;
  assert.match(status, /^Status: install ok installed$/m);
  // avahi is there: the service file the server may rewrite, owned by the service user, readable by avahi.
  const avahi = await fs.stat(path.join(scratch, "etc/avahi/services/perilink.service"));
  assert.equal(avahi.uid, uid);
  assert.equal(avahi.mode & 0o777, 0o644);
  // Nothing is advertised until a server with avahi discovery writes its port and TXT: no phantom service on a made-up port.
  assert.doesNotMatch(await fs.readFile(path.join(scratch, "etc/avahi/services/perilink.service"), "utf8"), /<service>/);
  assert.equal(JSON.parse(await fs.readFile(path.join(scratch, "etc/perilink/config.json"), "utf8")).discovery.advertise, "auto");
});

test("the installed perilink runs: version, and serve as the service user with the default config and the target's heap budget", { skip }, async (t) => {
  const bin = path.join(scratch, "usr/bin/perilink");
  assert.equal((await run(bin, ["version"])).stdout.trim(), version);
  const [, uid, gid] = /^perilink:x:(\d+):(\d+):/m.exec(await fs.readFile(path.join(scratch, "etc/passwd"), "utf8"))!.map(Number) as [number, number, number];
  const stateDir = path.join(scratch, "var/lib/perilink");
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: stateDir };
  delete env.NODE_OPTIONS;
  const child = spawn(bin, ["serve", "--config", path.join(scratch, "etc/perilink/config.json"), "--state-dir", stateDir, "--listen", "127.0.0.1:0"], { uid, gid, env, stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (err += s));
  t.after(() => stopChild(child));
  await waitFor(() => err.includes('"server_started"') || child.exitCode !== null, "the installed server to start", 20000);
  assert.equal(child.exitCode, null, err);
  const st = JSON.parse((await run(bin, ["status", "--state-dir", stateDir, "--json"], { uid, gid, env })).stdout);
  assert.equal(st.pid, child.pid, "one process: /usr/bin/perilink execs node with the budget");
  assert.equal(st.app, "demo");
  assert.equal(st.target, "pi-zero-2w");
  assert.equal(st.memory.heapLimitBytes, await heapLimitWith(["--max-old-space-size=96", "--max-semi-space-size=1"], env));
  for (const f of await fs.readdir(stateDir)) assert.equal((await fs.stat(path.join(stateDir, f))).uid, uid, `${f} belongs to the service user`);
  await stopChild(child);
  assert.match(err, /"drain_finished"/, "SIGTERM drains");
  // Deno's child_process reports the signal it sent even when the child handled it and exited 0.
  if (detectRuntime().name === "node") assert.equal(child.exitCode, 0, err);
});

test("purge removes the state directory and keeps the service user", { skip }, async () => {
  await run("dpkg", [`--root=${scratch}`, "--force-script-chrootless", "--purge", "perilink"]);
  await assert.rejects(fs.stat(path.join(scratch, "var/lib/perilink")));
  await assert.rejects(fs.stat(path.join(scratch, "usr/bin/perilink")));
  await assert.rejects(fs.stat(path.join(scratch, "etc/avahi/services/perilink.service")), "the avahi service file goes with the package");
  assert.match(await fs.readFile(path.join(scratch, "etc/passwd"), "utf8"), /^perilink:/m);
});

test("the package has perilink(1) and a bash completion, both made from perilink help: the man page renders without warnings, lists the device build's commands and says where the host commands are", { skip }, async () => {
  const list = (await run("dpkg-deb", ["-c", deb])).stdout;
  assert.match(list, /^-rw-r--r-- root\/root +\d+ .* \.\/usr\/share\/man\/man1\/perilink\.1\.gz$/m);
  assert.match(list, /^-rw-r--r-- root\/root +\d+ .* \.\/usr\/share\/bash-completion\/completions\/perilink$/m);
  // Taken from the package itself: a dpkg configured to leave out manuals (container images are) skips them on install.
  const unpacked = await fs.mkdtemp(path.join(os.tmpdir(), "perilink-deb-x-"));
  await run("dpkg-deb", ["-x", deb, unpacked]);
  const page = path.join(unpacked, "usr/share/man/man1/perilink.1.gz");
  const rendered = await run("man", ["--warnings", "-l", page], { env: { ...process.env, MANWIDTH: "100", LC_ALL: "C.UTF-8" } }).catch((e: { stderr?: string; stdout?: string }) => e);
  assert.equal((rendered as { stderr?: string }).stderr ?? "", "", "no warnings from man/groff");
  const text = (rendered as { stdout?: string }).stdout ?? "";
  for (const cmd of ["serve", "id", "trust", "pair", "status", "metrics", "upgrade"]) assert.match(text, new RegExp(`perilink ${cmd}\\b`), cmd);
  // The package installs the device build: the host commands are named once, in the note on where they are.
  assert.doesNotMatch(text, /perilink call\b/);
  assert.match(text.replace(/\s+/g, " "), /This build \(pi.zero.2w\) serves devices; the host commands \(call, /);
  assert.match(text, /EXIT STATUS/);
  const completionFile = path.join(unpacked, "usr/share/bash-completion/completions/perilink");
  const completion = await fs.readFile(completionFile, "utf8");
  const words = (await run("bash", ["-c", `source "$0"; COMP_WORDS=(perilink serve --disp); COMP_CWORD=2; _perilink; echo "\${COMPREPLY[@]}"`, completionFile])).stdout.trim();
  assert.equal(words, "--dispatch");
  assert.match(completion, /complete -F _perilink perilink/);
  await fs.rm(unpacked, { recursive: true, force: true });
});

test("installing version N+1 over a running server upgrades it in place (generation up, new version, 0 requests failed), and removing the package stops it", { skip }, async (t) => {
  // N+1: the same program reporting a later version, in a package of that version.
  const next = `${version}+test1`;
  const out = await fs.mkdtemp(path.join(os.tmpdir(), "perilink-deb-next-"));
  const pkgEnv = { ...process.env, DEBFULLNAME: "Perilink Packaging Test", DEBEMAIL: "packaging-test@perilink.example.org" };
  await run(nodeBin(), ["--import", "tsx", path.join(REPO_ROOT, "build", "deb.ts"), "--outdir", out, "--version", next], { cwd: REPO_ROOT, env: pkgEnv });
  // A root where systemd runs, with stand-ins that record what the maintainer scripts ask and do what the unit would:
  // ExecReload is `perilink upgrade`, stop is SIGTERM.
  const root = await scratchRoot();
  await fs.mkdir(path.join(root, "run/systemd/system"), { recursive: true });
  const standIns = path.join(root, "stand-ins");
  await fs.mkdir(standIns);
  const calls = path.join(root, "calls.log");
  await fs.writeFile(path.join(standIns, "systemctl"), '#!/bin/sh\necho "systemctl $*" >> "$CALLS"\n', { mode: 0o755 });
  await fs.writeFile(
    path.join(standIns, "deb-systemd-invoke"),
    [
      "#!/bin/sh",
      'echo "deb-systemd-invoke $*" >> "$CALLS"',
      'case "$1" in',
      '  try-reload-or-restart) exec "$PERILINK_BIN" upgrade --state-dir "$PERILINK_STATE" --timeout 60000 ;;',
      '  stop) pid=$("$PERILINK_BIN" status --state-dir "$PERILINK_STATE" --json | sed -n \'s/^{"version":"[^"]*","pid":\\([0-9]*\\).*/\\1/p\'); [ -n "$pid" ] && kill -TERM "$pid" ;;',
      "esac",
      "",
    ].join("\n"),
    { mode: 0o755 },
  );
  const state = await fs.mkdtemp(path.join(os.tmpdir(), "perilink-deb-state-"));
  const bin = path.join(root, "usr/bin/perilink");
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${standIns}:${process.env.PATH}`, CALLS: calls, PERILINK_BIN: bin, PERILINK_STATE: state };
  delete env.NODE_OPTIONS;
  await install(root, deb, env); // version N, a fresh install: no service to upgrade
  const child = spawn(bin, ["serve", "--access", "open", "--state-dir", state, "--listen", "127.0.0.1:0"], { env, stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (err += s));
  t.after(() => stopChild(child));
  await waitFor(() => err.includes('"server_started"') || child.exitCode !== null, "the installed server to start", 20000);
  const status = async (): Promise<{ pid: number; generation: number; version: string; listeners: { port: number }[] }> => JSON.parse((await run(bin, ["status", "--state-dir", state, "--json"], { env })).stdout);
  const before = await status();
  assert.equal(before.version, version);
  const { createClient } = await import("../../src/client/client.ts");
  const client = createClient({ stateDir: false, lingerMs: 0 });
  t.after(() => client.close());
  const link = await client.connect({ host: "127.0.0.1", port: before.listeners[0]!.port, app: "apt" });
  let sent = 0;
  let failed = 0;
  let stop = false;
  const load = (async () => {
    for (let i = 0; i < 100_000 && !stop; i++) {
      sent++;
      await link.request(`r${i}`).catch(() => failed++);
    }
  })();
  await install(root, path.join(out, `perilink_${next}_all.deb`), env); // N+1 over the running server
  await waitFor(async () => (await status()).generation === 2, "the running server to be upgraded", 30_000);
  await new Promise((r) => setTimeout(r, 300));
  stop = true;
  await load;
  const after = await status();
  assert.equal(after.version, next, "the running program is the new version");
  assert.notEqual(after.pid, before.pid);
  assert.ok(sent > 50, `requests during the upgrade: ${sent}`);
  assert.equal(failed, 0, `${failed} of ${sent} requests failed`);
  await client.close();
  const alive = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  t.after(() => {
    if (alive(after.pid)) process.kill(after.pid, "SIGKILL");
  });
  await run("dpkg", [`--root=${root}`, "--force-script-chrootless", "-r", "perilink"], { env });
  await waitFor(() => !alive(after.pid), "removing the package to stop the server", 20_000);
  const asked = (await fs.readFile(calls, "utf8")).trim().split("\n");
  assert.deepEqual(asked, [
    "systemctl --system daemon-reload", // N's postinst (a fresh install: nothing to upgrade)
    "systemctl --system daemon-reload", // N's postrm, upgrade
    "systemctl --system daemon-reload", // N+1's postinst, then the seamless upgrade of the running service
    "deb-systemd-invoke try-reload-or-restart perilink.service",
    "deb-systemd-invoke stop perilink.socket perilink.service", // prerm, remove
    "systemctl --system daemon-reload", // postrm, remove
  ]);
  await fs.rm(out, { recursive: true, force: true });
});

test("lintian finds no error in the package", { skip: skip || (await run("lintian", ["--version"]).then(() => false, () => "lintian is not installed")) }, async () => {
  const r = await run("lintian", ["--no-tag-display-limit", deb]).catch((e: { stdout?: string; code?: number }) => ({ stdout: e.stdout ?? "", code: e.code }));
  const errors = r.stdout.split("\n").filter((l) => l.startsWith("E: "));
  assert.deepEqual(errors, [], r.stdout);
});
