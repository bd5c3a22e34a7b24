/**
 * Bundles the command line into one file per target: dist/<target>/perilink.mjs.
 * The target's JSON (targets/<name>.json) replaces the default profile, so its
 * limits become the runtime's defaults. Fails when a bundle exceeds its budget.
 *
 *   tsx build/build.ts [--target NAME]... [--outdir DIR] [--quiet] [--json]
 *
 * `--outdir` puts the bundles in DIR/<target>/ instead of dist/ (tests build
 * their own copy there).
 *
 * Beside the bundles, the library that `import … from "perilink"` loads:
 * dist/lib/perilink.js (ESM, src/index.ts and what it imports, with the
 * node20 profile) and its declarations in dist/lib/types/ (emitted by tsc from
 * src/, the source of truth). Built when no --target is named, or with --lib.
 */
import { build } from "esbuild";
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { heapBudgetFlags, minorGcRuntimeFlag } from "../src/runtime/heap_budget.ts";
import { dnsRecordTypes } from "./dns_record_types.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: { target: { type: "string", multiple: true }, outdir: { type: "string" }, lib: { type: "boolean" }, quiet: { type: "boolean" }, json: { type: "boolean" }, sizes: { type: "boolean" }, version: { type: "string" } },
});

interface TargetFile {
  name: string;
  runtime: string;
  esbuildTarget: string;
  bundleBudgetBytes: number;
  /** "device": a build that serves, without the host commands (src/cli/host_commands_off.ts). Absent: a host build. */
  role?: "device";
  memory: { maxOldSpaceMiB: number; maxSemiSpaceMiB?: number; mallocMmapThresholdBytes?: number; minorGcTriggerPercent?: number };
}

/**
 * The bundle's first lines. With a heap budget, the file is also a shell
 * script: run as an executable (`./perilink.mjs`, `/usr/bin/perilink`), sh
 * adds the budget to NODE_OPTIONS (unless the user set an old-space limit
 * there; a semi-space size of theirs is kept too), sets the target's malloc
 * tuning (src/runtime/malloc_tuning.ts) unless set, and execs node on the same
 * file, so the process that serves starts once with its limits. Node skips
 * the `#!` line and reads the second as a string and a comment. Run as `node
 * perilink.mjs`, serve applies the budget itself (src/runtime/heap_reexec.ts).
 */
function launcher(memory: TargetFile["memory"]): string {
  if (!memory.maxOldSpaceMiB) return "#!/usr/bin/env node\n";
  const semi = memory.maxSemiSpaceMiB
    ? `case " $NODE_OPTIONS " in *[-_]semi[-_]space[-_]size*) ;; *) NODE_OPTIONS="$NODE_OPTIONS --max-semi-space-size=${memory.maxSemiSpaceMiB}";; esac; `
    : "";
  const malloc = memory.mallocMmapThresholdBytes
    ? `[ -n "\${MALLOC_MMAP_THRESHOLD_+set}" ] || { MALLOC_MMAP_THRESHOLD_=${memory.mallocMmapThresholdBytes}; export MALLOC_MMAP_THRESHOLD_; }; `
    : "";
  return (
    "#!/bin/sh\n" +
    `":" //; case " $NODE_OPTIONS " in *[-_]old[-_]space[-_]size*) ;; *) ${semi}NODE_OPTIONS="\${NODE_OPTIONS:+$NODE_OPTIONS }--max-old-space-size=${memory.maxOldSpaceMiB}"; export NODE_OPTIONS;; esac; ${malloc}exec node "$0" "$@"\n`
  );
}

const all = (await fs.readdir(path.join(root, "targets"))).filter((f) => f.endsWith(".json")).map((f) => f.slice(0, -5)).sort();
const chosen = (values.target as string[] | undefined) ?? all;
const outRoot = values.outdir ? path.resolve(values.outdir) : path.join(root, "dist");
const results: { target: string; bytes: number; gzipBytes: number; budget: number; file: string }[] = [];
let failed = false;

for (const name of chosen) {
  if (!all.includes(name)) {
    console.error(`build: unknown target "${name}"; known: ${all.join(", ")}`);
    process.exit(2);
  }
  const targetPath = path.join(root, "targets", `${name}.json`);
  const target = JSON.parse(await fs.readFile(targetPath, "utf8")) as TargetFile;
  try {
    // A bad memory budget fails the build, not every serve on the device.
    heapBudgetFlags(target.memory, [], undefined);
    minorGcRuntimeFlag(target.memory, []);
  } catch (err) {
    console.error(`build: targets/${name}.json: ${(err as Error).message}`);
    process.exit(2);
  }
  const outfile = path.join(outRoot, name, "perilink.mjs");
  const built = await build({
    entryPoints: [path.join(root, "src/cli/main.ts")],
    outfile,
    metafile: values.sizes === true,
    bundle: true,
    platform: "node",
    format: "esm",
    target: target.esbuildTarget,
    minify: true,
    legalComments: "none",
    // No createRequire shim: nothing bundled calls require() (test/device checks the bundle runs).
    banner: { js: launcher(target.memory) },
    logLevel: "warning",
    plugins: [
      {
        name: "perilink-target",
        setup(b) {
          // Every import of the default profile resolves to the chosen target's file.
          b.onResolve({ filter: /targets[\\/]node20\.json$/ }, () => ({ path: targetPath }));
          // A device build serves: the host commands and everything only they use stay out (host_commands_off.ts says why).
          if (target.role === "device") {
            b.onResolve({ filter: /[\\/](call_command|forget_command|pair_host|key_command|browse_command|agent_command|sessions_command|host_usage|id_tcp)\.ts$/ }, () => ({
              path: path.join(root, "src/cli/host_commands_off.ts"),
            }));
          }
          // --version: the program reports another version (a package test builds N and N+1).
          if (values.version !== undefined) {
            b.onLoad({ filter: /[\\/]src[\\/]version\.ts$/ }, () => ({ contents: `export const VERSION = ${JSON.stringify(values.version)};\n`, loader: "ts" }));
          }
          // Only what the program reads at run time: the build's own fields stay in the file.
          b.onLoad({ filter: /targets[\\/][^\\/]+\.json$/ }, async (args) => {
            const { description: _d, esbuildTarget: _e, arch: _a, bundleBudgetBytes: _b, ...runtime } = JSON.parse(await fs.readFile(args.path, "utf8")) as Record<string, unknown>;
            // A device build has no host agent and no client: of the client's limits only `perilink id`'s probe timeout is read.
            if (runtime.role === "device") {
              delete runtime.agent;
              runtime.client = { probeTimeoutMs: (runtime.client as { probeTimeoutMs: number }).probeTimeoutMs };
            }
            return { contents: JSON.stringify(runtime), loader: "json" };
          });
        },
      },
      dnsRecordTypes,
    ],
  });
  await fs.chmod(outfile, 0o755);
  // --sizes: what each source file adds to the bundle, largest first (to find what to trim).
  if (built.metafile) {
    const inputs = Object.values(built.metafile.outputs)[0]?.inputs ?? {};
    const rows = Object.entries(inputs).sort((a, b) => b[1].bytesInOutput - a[1].bytesInOutput);
    console.log(`${name}:`);
    for (const [file, v] of rows.slice(0, 40)) console.log(`${(v.bytesInOutput / 1024).toFixed(1).padStart(7)} KiB  ${file}`);
  }
  const bytes = (await fs.stat(outfile)).size;
  const gzipBytes = gzipSync(await fs.readFile(outfile)).length;
  results.push({ target: name, bytes, gzipBytes, budget: target.bundleBudgetBytes, file: path.relative(root, outfile) });
  if (bytes > target.bundleBudgetBytes) failed = true;
}

if (values.lib || !values.target) await buildLibrary(path.join(outRoot, "lib"));
// The npm package's `perilink`: a few lines that run the build made for this machine (build/choose_target.mjs).
if (!values.target) {
  for (const f of ["launcher.mjs", "choose_target.mjs"]) await fs.copyFile(path.join(root, "build", f), path.join(outRoot, f === "launcher.mjs" ? "perilink.mjs" : f));
  await fs.chmod(path.join(outRoot, "perilink.mjs"), 0o755);
}

/** The library: one ESM file for the runtime, declarations from tsc for the types. */
async function buildLibrary(dir: string): Promise<void> {
  await fs.rm(dir, { recursive: true, force: true });
  // Two entry points sharing one copy of what both import (so `instanceof PerilinkError` holds across them):
  // perilink.js, and http.js (`perilink/http`), which alone imports undici, a peer dependency.
  await build({
    entryPoints: { perilink: path.join(root, "src/index.ts"), http: path.join(root, "src/http.ts") },
    outdir: dir,
    splitting: true,
    chunkNames: "chunks/[name]-[hash]",
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    legalComments: "none",
    logLevel: "warning",
  });
  const tsc = path.join(root, "node_modules", "typescript", "bin", "tsc");
  const types = path.join(dir, "types");
  await promisify(execFile)(process.execPath, [tsc, "-p", path.join(root, "build", "tsconfig.lib.json"), "--outDir", types], { cwd: root });
  // Declarations import each other as `.js`, as a consumer's resolver expects beside compiled code.
  for (const f of await fs.readdir(types, { recursive: true })) {
    if (!f.endsWith(".d.ts")) continue;
    const p = path.join(types, f);
    const text = await fs.readFile(p, "utf8");
    await fs.writeFile(p, text.replace(/(from\s+["'](?:\.{1,2}\/)[^"']*?)\.ts(["'])/g, "$1.js$2").replace(/(import\(["'](?:\.{1,2}\/)[^"']*?)\.ts(["']\))/g, "$1.js$2"));
  }
  for (const f of ["perilink.js", "http.js"]) {
    const bytes = (await fs.stat(path.join(dir, f))).size;
    results.push({ target: "lib", bytes, gzipBytes: gzipSync(await fs.readFile(path.join(dir, f))).length, budget: Infinity, file: path.relative(root, path.join(dir, f)) });
  }
}

if (values.json) {
  console.log(JSON.stringify(results));
} else if (!values.quiet || failed) {
  for (const r of results) {
    const flag = r.bytes > r.budget ? "  OVER BUDGET" : "";
    console.log(`${r.file.padEnd(28)} ${(r.bytes / 1024).toFixed(1).padStart(7)} KiB (gzip ${(r.gzipBytes / 1024).toFixed(1)} KiB), ${Number.isFinite(r.budget) ? `budget ${(r.budget / 1024).toFixed(0)} KiB` : "library"}${flag}`);
  }
}
if (failed) {
  console.error("build: a bundle is over its size budget (targets/<name>.json bundleBudgetBytes)");
  process.exit(1);
}
