/**
 * Builds the Debian package a Raspberry Pi (or any Debian with Node.js ≥ 20)
 * installs: dist/perilink_<version>_all.deb.
 *
 *   tsx build/deb.ts [--target NAME] [--outdir DIR] [--version V]      (npm run package)
 *
 * Contents: the target's bundle as /usr/bin/perilink (default target
 * pi-zero-2w; its first lines apply the target's heap budget, see
 * build/build.ts), a default configuration /etc/perilink/config.json
 * (a conffile), perilink(1) and a bash completion made from `perilink help`
 * (build/man_page.ts), the maintainer scripts of packaging/debian/ (a `perilink`
 * system user and its 0700 state directory /var/lib/perilink), and the
 * systemd units in targets/systemd/ when there are any (and, for a host
 * target, the agent's user units of targets/systemd/user/). Architecture `all`:
 * the bundle is JavaScript; it depends on nodejs (>= 20). The maintainer is
 * DEBFULLNAME <DEBEMAIL> from the environment, else package.json's author.
 */
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { bashCompletion, manPage } from "./man_page.ts";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({ options: { target: { type: "string" }, outdir: { type: "string" }, version: { type: "string" } } });
const target = values.target ?? "pi-zero-2w";
const outdir = values.outdir ? path.resolve(values.outdir) : path.join(root, "dist");
const pkg = JSON.parse(await fs.readFile(path.join(root, "package.json"), "utf8")) as { version: string; description: string; license: string; author?: string };
// --version: another version for the package and the program (a test builds N and N+1).
const version = values.version ?? pkg.version;
// Who signs the package: Debian's DEBFULLNAME and DEBEMAIL, else package.json's author.
const maintainer =
  process.env.DEBEMAIL && process.env.DEBFULLNAME ? `${process.env.DEBFULLNAME} <${process.env.DEBEMAIL}>` : (pkg.author ?? "perilink maintainers <perilink@localhost>");
if (maintainer.includes("@localhost>")) {
  console.error("package: no maintainer set (DEBFULLNAME and DEBEMAIL, or package.json author): using a placeholder address that lintian rejects");
}

try {
  await run("dpkg-deb", ["--version"]);
} catch {
  console.error("package: dpkg-deb is missing; install dpkg (Debian, Ubuntu) to build the package");
  process.exit(1);
}

const work = await fs.mkdtemp(path.join(os.tmpdir(), "perilink-deb-"));
const stage = path.join(work, "perilink");
const put = async (rel: string, content: string | Buffer, mode: number): Promise<void> => {
  const p = path.join(stage, rel);
  await fs.mkdir(path.dirname(p), { recursive: true, mode: 0o755 });
  await fs.writeFile(p, content);
  await fs.chmod(p, mode);
};

try {
  await run(process.execPath, [path.join(root, "node_modules", "tsx", "dist", "cli.mjs"), path.join(root, "build", "build.ts"), "--quiet", "--target", target, "--outdir", work, ...(values.version ? ["--version", values.version] : [])], { cwd: root });
  await put("usr/bin/perilink", await fs.readFile(path.join(work, target, "perilink.mjs")), 0o755);
  await put("etc/perilink/config.json", await fs.readFile(path.join(root, "packaging", "debian", "config.json")), 0o644);
  await put("usr/share/doc/perilink/README.md.gz", gzipSync(await fs.readFile(path.join(root, "README.md")), { level: 9 }), 0o644);
  await put("usr/share/doc/perilink/copyright", copyright(pkg.license), 0o644);
  await put("usr/share/doc/perilink/changelog.gz", gzipSync(changelog(version), { level: 9 }), 0o644);
  // perilink(1) and the bash completion, from the text `perilink help` prints (build/man_page.ts).
  const help = (await run(process.execPath, [path.join(work, target, "perilink.mjs"), "help"])).stdout;
  const date = new Date((Number(process.env.SOURCE_DATE_EPOCH) || Date.now() / 1000) * 1000).toISOString().slice(0, 10);
  await put("usr/share/man/man1/perilink.1.gz", gzipSync(manPage(help, version, date), { level: 9 }), 0o644);
  await put("usr/share/bash-completion/completions/perilink", bashCompletion(help), 0o644);

  const units = await fs.readdir(path.join(root, "targets", "systemd")).catch(() => [] as string[]);
  const unitFiles = units.filter((f) => /\.(service|socket)$/.test(f));
  for (const f of unitFiles) await put(`lib/systemd/system/${f}`, await fs.readFile(path.join(root, "targets", "systemd", f)), 0o644);
  // The host agent's user units, for a build that has the agent (a host package; the device build has none).
  const hostBuild = (JSON.parse(await fs.readFile(path.join(root, "targets", `${target}.json`), "utf8")) as { role?: string }).role !== "device";
  const userUnits = hostBuild ? (await fs.readdir(path.join(root, "targets", "systemd", "user")).catch(() => [] as string[])).filter((f) => /\.(service|socket)$/.test(f)) : [];
  for (const f of userUnits) await put(`usr/lib/systemd/user/${f}`, await fs.readFile(path.join(root, "targets", "systemd", "user", f)), 0o644);

  const installedKiB = Math.ceil((await du(stage)) / 1024);
  await put(
    "DEBIAN/control",
    [
      "Package: perilink",
      `Version: ${version}`,
      "Architecture: all",
      `Maintainer: ${maintainer}`,
      `Installed-Size: ${installedKiB}`,
      "Depends: nodejs (>= 20), passwd, init-system-helpers (>= 1.52)",
      "Section: net",
      "Priority: optional",
      "Description: runtime for network peripherals and the hosts that talk to them",
      ...wrap(pkg.description).map((l) => ` ${l}`),
      ` This package runs the ${target} bundle on the system's Node.js.`,
      "",
    ].join("\n"),
    0o644,
  );
  await put("DEBIAN/conffiles", "/etc/perilink/config.json\n", 0o644);
  for (const s of ["postinst", "prerm", "postrm"]) await put(`DEBIAN/${s}`, await fs.readFile(path.join(root, "packaging", "debian", s)), 0o755);

  await fs.mkdir(outdir, { recursive: true });
  const deb = path.join(outdir, `perilink_${version}_all.deb`);
  await run("dpkg-deb", ["--root-owner-group", "-Zxz", "--build", stage, deb]);
  const bytes = (await fs.stat(deb)).size;
  console.log(`${path.relative(process.cwd(), deb) || deb}  ${(bytes / 1024).toFixed(1)} KiB, target ${target}, ${unitFiles.length ? `systemd units: ${unitFiles.join(", ")}` : "no systemd units (none in targets/systemd/)"}`);
} finally {
  await fs.rm(work, { recursive: true, force: true });
}

async function du(dir: string): Promise<number> {
  let total = 0;
  for (const e of await fs.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += (await fs.stat(path.join(e.parentPath, e.name))).size;
  }
  return total;
}

function wrap(text: string): string[] {
  const lines: string[] = [];
  let line = "";
  for (const w of text.split(" ")) {
    if (line && line.length + 1 + w.length > 72) {
      lines.push(line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) lines.push(line);
  return lines;
}

function copyright(license: string): string {
  return [
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
    "Upstream-Name: perilink",
    "",
    "Files: *",
    "Copyright: perilink contributors",
    "Comment: Copyright (c) perilink contributors.",
    `License: ${license}`,
    " Permission is hereby granted, free of charge, to any person obtaining a copy",
    " of this software and associated documentation files (the \"Software\"), to deal",
    " in the Software without restriction, including without limitation the rights",
    " to use, copy, modify, merge, publish, distribute, sublicense, and/or sell",
    " copies of the Software, and to permit persons to whom the Software is",
    " furnished to do so, subject to the following conditions:",
    " .",
    " The above copyright notice and this permission notice shall be included in",
    " all copies or substantial portions of the Software.",
    " .",
    " THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR",
    " IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,",
    " FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE",
    " AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER",
    " LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,",
    " OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE",
    " SOFTWARE.",
    "",
  ].join("\n");
}

function changelog(v: string): string {
  const date = new Date(Number(process.env.SOURCE_DATE_EPOCH ?? Date.now() / 1000) * 1000).toUTCString().replace("GMT", "+0000");
  return `perilink (${v}) unstable; urgency=medium\n\n  * Release ${v}.\n\n -- ${maintainer}  ${date}\n`;
}
