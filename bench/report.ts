/**
 * `npm run bench:report [-- --check]`: renders every bench/results/*.json
 * into docs/benchmarks.md, one section per benchmark in the order of
 * BENCHES in bench/run.ts (then any other results file by name): its date, its
 * command, the machine and its load average, and the tables and lines the
 * benchmark printed (bench/lib/result_file.ts records them). The output
 * depends only on the results files, so rerunning it changes nothing.
 * With --check, writes nothing and exits 1 when docs/benchmarks.md is not
 * what the results files give.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { BENCHES } from "./run.ts";
import { RESULTS_DIR, type ReportBlock, type RunInfo } from "./lib/result_file.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const OUT = path.join(ROOT, "docs", "benchmarks.md");

type Results = Partial<RunInfo> & { report?: ReportBlock[]; environment?: Record<string, unknown> } & Record<string, unknown>;

/** Keeps text from being read as HTML or as table syntax. */
const escape = (s: string): string => s.replace(/<(?=[A-Za-z/!?])/g, "&lt;");
const cell = (s: string): string => escape(s.trim()).replace(/\|/g, "\\|");
const code = (s: string): string => (s.includes("`") ? `\`\` ${s} \`\`` : `\`${s}\``);

function table(header: string[], rows: string[][]): string[] {
  const line = (cells: string[]): string => `| ${header.map((_, i) => cell(cells[i] ?? "")).join(" | ")} |`;
  return [line(header), `|${header.map((_, i) => (i === 0 ? "---" : "---:")).join("|")}|`, ...rows.map(line)];
}

/** Text lines as a list: an indented line is an item under the one before it; a blank line ends the list. */
function text(lines: string[]): string[] {
  const out: string[] = [];
  for (const l of lines) {
    if (l.trim() === "") {
      if (out.length > 0 && out[out.length - 1] !== "") out.push("");
      continue;
    }
    const nested = /^\s/.test(l) && out.length > 0 && out[out.length - 1] !== "";
    out.push(`${nested ? "  " : ""}- ${escape(l.trim())}`);
  }
  while (out[out.length - 1] === "") out.pop();
  return out;
}

function blocks(report: ReportBlock[]): string[] {
  const parts = report.map((b) => (b.kind === "table" ? table(b.header, b.rows) : text(b.lines))).filter((p) => p.length > 0);
  return parts.flatMap((p, i) => (i === 0 ? p : ["", ...p]));
}

const fixed = (xs: number[] | undefined): string => (xs ? xs.map((x) => x.toFixed(2)).join(" ") : "not recorded");

/** "2026-12-01 08:43 UTC" */
function when(iso: string | undefined): string {
  if (!iso) return "date not recorded";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : `${d.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

/** The start date; results files from before bench/lib/result_file.ts kept it in `environment`. */
const dateOf = (r: Results): string | undefined => r.date ?? (r.environment?.date as string | undefined);

function section(name: string, title: string, r: Results): string[] {
  const out = [`## ${title} (\`${name}\`)`, ""];
  const m = r.machine;
  const date = dateOf(r);
  const took = r.durationS === undefined ? "" : `, took ${r.durationS.toLocaleString("en-US")} s`;
  const commit = r.git?.commit ? `; commit \`${r.git.commit.slice(0, 7)}\`${r.git.dirty ? " with uncommitted changes in the working tree" : ""}` : "";
  out.push(`- **Run:** ${when(date)}${took}${commit}`);
  out.push(`- **Command:** ${r.command ? code(r.command) : `not recorded (\`npm run bench -- ${name}\` with unknown options)`}`);
  if (r.description) out.push(`- **What ran:** ${escape(r.description)}`);
  if (m) {
    const deno = m.deno ? `, deno ${m.deno}` : "";
    out.push(`- **Machine:** ${m.cpus} × ${escape(m.cpuModel)}, ${(m.totalMemMiB / 1024).toFixed(1)} GiB RAM, ${escape(m.os)}, node ${m.node}${deno}`);
  } else {
    // Results files from before bench/lib/result_file.ts: environment() at the top level or under `environment`.
    const e = (r.environment ?? r) as { cpus?: number; cpuModel?: string; totalMemMiB?: number; platform?: string; node?: string };
    out.push(
      e.cpuModel === undefined
        ? "- **Machine:** not recorded"
        : `- **Machine:** ${e.cpus} × ${escape(e.cpuModel)}, ${((e.totalMemMiB ?? NaN) / 1024).toFixed(1)} GiB RAM, ${escape(e.platform ?? "?")}, node ${e.node ?? "?"}`,
    );
  }
  out.push(`- **Load average (1 / 5 / 15 min):** before ${fixed(r.loadAverage?.before)}, after ${fixed(r.loadAverage?.after)}`);
  out.push("");
  if (r.report && r.report.length > 0) out.push(...blocks(r.report));
  else out.push(`_This results file has no report tables (written before bench/lib/result_file.ts recorded them): rerun \`npm run bench -- ${name}\`._`);
  out.push("");
  return out;
}

function render(files: Map<string, Results>): string {
  const known = BENCHES.filter((b) => files.has(b.name));
  const others = [...files.keys()].filter((n) => !BENCHES.some((b) => b.name === n)).sort();
  const order = [...known, ...others.map((name) => ({ name, title: name }))];
  const missing = BENCHES.filter((b) => !files.has(b.name)).map((b) => `\`${b.name}\``);
  const out = [
    "# Benchmarks",
    "",
    "<!-- Generated by `npm run bench:report` (bench/report.ts) from bench/results/*.json. Do not edit by hand. -->",
    "",
    "**This file is generated by `npm run bench:report` from `bench/results/*.json` and must not be edited by hand:** " +
      "rerun a benchmark (`npm run bench -- <name>`), then `npm run bench:report`, and commit the results file with this one.",
    "",
    "What each benchmark measures, compares and aims for, and its options: [bench/README.md](../bench/README.md). " +
      "Figures recorded by hand before this report existed: [benchmark-history.md](benchmark-history.md). " +
      "The tables are the ones each benchmark prints (medians and ratios as it computes them); one run each, so read them with the load average beside them.",
    "",
  ];
  if (order.length > 0) {
    out.push("| benchmark | run | command |", "|---|---|---|");
    for (const { name, title } of order) {
      const r = files.get(name)!;
      out.push(`| [${name}](#${anchor(title, name)}) | ${when(dateOf(r))} | ${r.command ? code(r.command).replace(/\|/g, "\\|") : "not recorded"} |`);
    }
    out.push("");
  }
  if (missing.length > 0) out.push(`No results yet for ${missing.join(", ")}.`, "");
  for (const { name, title } of order) out.push(...section(name, title, files.get(name)!));
  return out.join("\n").replace(/\n+$/, "\n");
}

/** GitHub's anchor for the heading "Title (`name`)". */
function anchor(title: string, name: string): string {
  return `${title} (${name})`
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, "")
    .replace(/ /g, "-");
}

function readResults(): Map<string, Results> {
  const files = new Map<string, Results>();
  if (!existsSync(RESULTS_DIR)) return files;
  for (const f of readdirSync(RESULTS_DIR).filter((f) => f.endsWith(".json")).sort()) {
    const file = path.join(RESULTS_DIR, f);
    try {
      files.set(f.slice(0, -".json".length), JSON.parse(readFileSync(file, "utf8")) as Results);
    } catch (err) {
      throw new Error(`${path.relative(ROOT, file)}: ${(err as Error).message}`);
    }
  }
  return files;
}

const check = process.argv.includes("--check");
const files = readResults();
const md = render(files);
const rel = path.relative(ROOT, OUT);
if (check) {
  const current = existsSync(OUT) ? readFileSync(OUT, "utf8") : null;
  if (current !== md) {
    console.error(`${rel} is not what bench/results/*.json give: run npm run bench:report`);
    process.exitCode = 1;
  } else {
    console.log(`${rel} is up to date (${files.size} results files)`);
  }
} else {
  writeFileSync(OUT, md);
  console.log(`wrote ${rel} from ${files.size} results file(s) in ${path.relative(ROOT, RESULTS_DIR)}/`);
}
