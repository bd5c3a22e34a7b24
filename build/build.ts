/**
 * Bundles the command line into one file per target: dist/<target>/perilink.mjs.
 * The target's JSON (targets/<name>.json) replaces the default profile, so its
 * limits become the runtime's defaults. Fails when a bundle exceeds its budget.
 *
 *   tsx build/build.ts [--target NAME]... [--outdir DIR] [--quiet] [--json]
 *
 * `--outdir` puts the bundles in DIR/<target>/ instead of dist/ (tests build
 * their own copy there).
 */
import { build } from "esbuild";
import { promises as fs } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: { target: { type: "string", multiple: true }, outdir: { type: "string" }, quiet: { type: "boolean" }, json: { type: "boolean" } },
});

interface TargetFile {
  name: string;
  runtime: string;
  esbuildTarget: string;
  bundleBudgetBytes: number;
}

const all = (await fs.readdir(path.join(root, "targets"))).filter((f) => f.endsWith(".json")).map((f) => f.slice(0, -5)).sort();
const chosen = (values.target as string[] | undefined) ?? all;
const results: { target: string; bytes: number; gzipBytes: number; budget: number; file: string }[] = [];
let failed = false;

for (const name of chosen) {
  if (!all.includes(name)) {
    console.error(`build: unknown target "${name}"; known: ${all.join(", ")}`);
    process.exit(2);
  }
  const targetPath = path.join(root, "targets", `${name}.json`);
  const target = JSON.parse(await fs.readFile(targetPath, "utf8")) as TargetFile;
  const outfile = path.join(values.outdir ? path.resolve(values.outdir) : path.join(root, "dist"), name, "perilink.mjs");
  await build({
    entryPoints: [path.join(root, "src/cli/main.ts")],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: target.esbuildTarget,
    minify: true,
    legalComments: "none",
    banner: {
      js: "#!/usr/bin/env node\nimport{createRequire as __cr}from'node:module';const require=__cr(import.meta.url);",
    },
    logLevel: "warning",
    plugins: [
      {
        name: "perilink-target",
        setup(b) {
          // Every import of the default profile resolves to the chosen target's file.
          b.onResolve({ filter: /targets[\\/]node20\.json$/ }, () => ({ path: targetPath }));
        },
      },
    ],
  });
  await fs.chmod(outfile, 0o755);
  const bytes = (await fs.stat(outfile)).size;
  const gzipBytes = gzipSync(await fs.readFile(outfile)).length;
  results.push({ target: name, bytes, gzipBytes, budget: target.bundleBudgetBytes, file: path.relative(root, outfile) });
  if (bytes > target.bundleBudgetBytes) failed = true;
}

if (values.json) {
  console.log(JSON.stringify(results));
} else if (!values.quiet || failed) {
  for (const r of results) {
    const flag = r.bytes > r.budget ? "  OVER BUDGET" : "";
    console.log(`${r.file.padEnd(28)} ${(r.bytes / 1024).toFixed(1).padStart(7)} KiB (gzip ${(r.gzipBytes / 1024).toFixed(1)} KiB), budget ${(r.budget / 1024).toFixed(0)} KiB${flag}`);
  }
}
if (failed) {
  console.error("build: a bundle is over its size budget (targets/<name>.json bundleBudgetBytes)");
  process.exit(1);
}
