import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { before, test } from "node:test";
import { promisify } from "node:util";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { REPO_ROOT, stopChild } from "../helpers/cli.ts";
import { waitFor } from "../helpers/fixtures.ts";
import { freePort } from "../helpers/free_port.ts";

/**
 * The package as users get it: `npm pack` (which builds), installed offline
 * into a scratch project, then imported by name from plain JavaScript on Node
 * and on Deno, against a real server on loopback.
 */

const exec = promisify(execFile);
const node = detectRuntime().name === "node" ? process.execPath : "node";
const deno = detectRuntime().name === "deno" ? process.execPath : path.join(REPO_ROOT, "node_modules", ".bin", "deno");
/** Deno comes with CI (`npm install --no-save deno`), not with `npm ci`: without it the Deno test says so and skips. */
const noDeno = existsSync(deno) ? false : `needs Deno (${path.relative(REPO_ROOT, deno)}): run "npm install --no-save deno@2.9.6" first; CI does`;
let scratch = "";

/** A ```js block of README.md, the first after `heading`. */
async function readmeExample(heading: string): Promise<string> {
  const readme = await fs.readFile(path.join(REPO_ROOT, "README.md"), "utf8");
  const at = readme.indexOf(`\n${heading}\n`);
  assert.ok(at >= 0, `README has "${heading}"`);
  const m = /```js\n([\s\S]*?)```/.exec(readme.slice(at));
  assert.ok(m, `a js example under "${heading}"`);
  return m[1]!;
}

before(async () => {
  scratch = await fs.mkdtemp(path.join(os.tmpdir(), "perilink-packed-"));
  const { stdout } = await exec("npm", ["pack", "--silent", "--pack-destination", scratch], { cwd: REPO_ROOT, maxBuffer: 1 << 24 });
  const tgz = stdout.trim().split("\n").pop()!;
  await fs.writeFile(path.join(scratch, "package.json"), JSON.stringify({ name: "scratch", private: true, type: "module" }));
  await fs.writeFile(path.join(scratch, "deno.json"), JSON.stringify({ nodeModulesDir: "manual" }));
  // The package's one dependency comes from npm's cache when a clone's `npm ci` put it there, else
  // from the registry: a fresh machine's cache has the tarballs but not the registry's metadata.
  await exec("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", `./${tgz}`], { cwd: scratch });
});

/** The packed bin serving the demo app on 127.0.0.1:PORT and [::1]:PORT. */
async function servePacked(t: { after(fn: () => unknown): void }): Promise<number> {
  const port = await freePort();
  const bin = path.join(scratch, "node_modules", "perilink", "dist", "node20", "perilink.mjs");
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), "perilink-packed-state-"));
  const child = spawn(node, [bin, "serve", "--access", "open", "--state-dir", stateDir, "--listen", `127.0.0.1:${port}`, "--listen", `[::1]:${port}`], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (err += s));
  t.after(() => stopChild(child));
  await waitFor(() => err.includes('"server_started"') || child.exitCode !== null, "the packed server to start", 20000);
  assert.equal(child.exitCode, null, err);
  return port;
}

async function runIn(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await exec(cmd, args, { cwd: scratch, timeout: 60000, env: { ...process.env, NO_COLOR: "1" } });
    return stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    assert.fail(`${cmd} ${args.join(" ")} failed: ${e.message}\n${e.stdout ?? ""}\n${e.stderr ?? ""}`);
  }
}

async function writeExample(name: string, heading: string, port?: number, specifier = "perilink"): Promise<string> {
  let code = await readmeExample(heading);
  if (port !== undefined) {
    assert.match(code, /^const port = 1025;/m);
    code = code.replace(/^const port = 1025;/m, `const port = ${port};`);
  }
  if (specifier !== "perilink") code = code.replaceAll('from "perilink"', `from "${specifier}"`);
  await fs.writeFile(path.join(scratch, name), code);
  return name;
}

function checkClientOutput(out: string): void {
  assert.match(out, /^reply status$/m, "the demo app echoes the request");
  // console.table: one row per link; both links ride one session (same session number, two references).
  // Node quotes strings in console.table with ', Deno with ".
  const cells = (l: string): string[] => l.split("│").map((c) => c.trim().replace(/^['"](.*)['"]$/, "$1"));
  const header = cells(out.split("\n").find((l) => l.includes("sessionNumber")) ?? "");
  const rows = out.split("\n").filter((l) => /["']spooler["']|["']monitor["']/.test(l)).map(cells);
  assert.equal(rows.length, 2, out);
  const col = (name: string): string[] => rows.map((r) => r[header.indexOf(name)] ?? "");
  assert.deepEqual(col("sessionNumber"), ["1", "1"], out);
  assert.deepEqual(col("refCount"), ["2", "2"], out);
  assert.equal(new Set(col("serverId")).size, 1, out);
}

test("npm pack makes a package that plain JavaScript on Node imports by name: the README's client and embedding examples run as written", async (t) => {
  assert.match(await runIn(node, [await writeExample("embed.mjs", "### Embedding")]), /^my-app got ping$/m);
  const port = await servePacked(t);
  checkClientOutput(await runIn(node, [await writeExample("client.mjs", "### Client: the session table", port)]));
  const pkg = JSON.parse(await fs.readFile(path.join(scratch, "node_modules", "perilink", "package.json"), "utf8"));
  assert.equal((await runIn(node, [path.join(scratch, "node_modules", ".bin", "perilink"), "version"])).trim(), pkg.version);
});

test("the packed package imports on Deno as npm:perilink from node_modules and runs the README's examples", { skip: noDeno }, async (t) => {
  const port = await servePacked(t);
  checkClientOutput(await runIn(deno, ["run", "-A", await writeExample("client_deno.mjs", "### Client: the session table", port, "npm:perilink")]));
  assert.match(await runIn(deno, ["run", "-A", await writeExample("embed_deno.mjs", "### Embedding")]), /^my-app got ping$/m);
});

test("the packed package's TypeScript declarations type-check a consumer and reject a wrong option", async () => {
  await fs.writeFile(
    path.join(scratch, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext", target: "ES2022", strict: true, noEmit: true, skipLibCheck: false, typeRoots: [path.join(REPO_ROOT, "node_modules", "@types")], types: ["node"] },
      files: ["consumer.ts"],
    }),
  );
  await fs.writeFile(
    path.join(scratch, "consumer.ts"),
    [
      'import { createClient, startServer, PerilinkError, type Link, type SessionRow } from "perilink";',
      "const client = createClient({ maxSessions: 2 });",
      'const link: Promise<Link> = client.connect({ host: "127.0.0.1", port: 1025, app: "a" });',
      "const rows: SessionRow[] = client.sessions();",
      'const started: Promise<{ drain(ms?: number): Promise<void> }> = startServer({ listen: ["127.0.0.1:0"] });',
      "const code: string = new PerilinkError(\"X\", \"m\").code;",
      "// @ts-expect-error maxSessions is a number",
      'createClient({ maxSessions: "2" });',
      "export { link, rows, started, code };",
      "",
    ].join("\n"),
  );
  const tsc = path.join(REPO_ROOT, "node_modules", "typescript", "bin", "tsc");
  await runIn(node, [tsc, "-p", scratch]);
});

test("perilink/http from the packed package: fetch() through the dispatcher, two names of one HTTP device on one connection", async () => {
  // undici is a peer dependency the application brings; npm's cache has it from the clone's `npm ci`.
  await exec("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "undici@7"], { cwd: scratch });
  await fs.writeFile(
    path.join(scratch, "http.mjs"),
    [
      'import http from "node:http";',
      'import { fetch } from "undici";',
      'import { createDispatcher } from "perilink/http";',
      "let connections = 0;",
      "const device = http.createServer((req, res) => res.end(req.headers.host)).on(\"connection\", () => connections++);",
      'await new Promise((r) => device.listen(0, "127.0.0.1", r));',
      "const port = device.address().port;",
      "const dispatcher = createDispatcher({ stateDir: false, probeTimeoutMs: 100 });",
      "for (const host of [\"127.0.0.1\", \"localhost\"]) console.log(await (await fetch(`http://${host}:${port}/`, { dispatcher })).text());",
      "console.log(`connections ${connections}`);",
      "await dispatcher.close();",
      "device.close();",
      "",
    ].join("\n"),
  );
  const out = await runIn(node, ["http.mjs"]);
  assert.match(out, /^127\.0\.0\.1:\d+\nlocalhost:\d+\nconnections 1$/m, out);
});
