import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { formatTable } from "./table.ts";

/**
 * bench/results/<name>.json: every benchmark's figures together with when,
 * how and on what it ran (date, command line, machine, load average before
 * and after), and the tables it printed, so that bench/report.ts can render
 * docs/benchmarks.md from the files alone.
 *
 *   const run = startRun("throughput", args);     // at the start of main()
 *   run.report.table(header, rows).line("perilink / raw = 1.04 (target >= 1.00: met)");
 *   console.log(run.report.toString());
 *   run.write({ settings, medians, runs });       // → bench/results/throughput.json
 */

export const RESULTS_DIR = fileURLToPath(new URL("../results/", import.meta.url));
const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The machine a benchmark ran on. */
export interface Machine {
  /** `os.type() os.release() os.arch()`, e.g. "Linux 6.8.0 x64". */
  os: string;
  /** os.cpus()[0].model. */
  cpuModel: string;
  /** os.cpus().length. */
  cpus: number;
  totalMemMiB: number;
  node: string;
  v8: string;
  /** Deno's version when the benchmark ran on Deno or started it; null otherwise. */
  deno: string | null;
}

/** os.loadavg(): 1, 5 and 15 minutes. */
export type LoadAverage = [number, number, number];

/** What every results file records besides the benchmark's own figures. */
export interface RunInfo {
  bench: string;
  /** When the benchmark started (ISO 8601, UTC). */
  date: string;
  /** When it wrote its results. */
  finished: string;
  durationS: number;
  /** The command line that ran it, as typed (npm run bench -- …). */
  command: string;
  /** process.argv exactly. */
  argv: string[];
  /** What the benchmark said it would do, with its settings (its first line of output). */
  description: string | null;
  /** HEAD when the benchmark started; dirty = the working tree had changes to tracked files. */
  git: { commit: string | null; dirty: boolean | null };
  machine: Machine;
  loadAverage: { before: LoadAverage; after: LoadAverage };
}

/** One piece of a benchmark's printed report, in the order printed. */
export type ReportBlock = { kind: "table"; header: string[]; rows: string[][] } | { kind: "text"; lines: string[] };

/**
 * A benchmark's report: tables and text lines. toString() is what the
 * benchmark prints; `blocks` go into the results file for bench/report.ts.
 */
export class Report {
  readonly blocks: ReportBlock[] = [];

  /** A table: first column left-aligned, the rest right-aligned (as formatTable). */
  table(header: string[], rows: string[][]): this {
    this.blocks.push({ kind: "table", header: [...header], rows: rows.map((r) => [...r]) });
    return this;
  }

  /** Text lines; "" is a blank line. A line may hold "\n"s. */
  line(...lines: string[]): this {
    const split = lines.flatMap((l) => l.split("\n"));
    const last = this.blocks[this.blocks.length - 1];
    if (last?.kind === "text") last.lines.push(...split);
    else this.blocks.push({ kind: "text", lines: split });
    return this;
  }

  /** Appends another report's blocks. */
  add(other: Report): this {
    for (const b of other.blocks) {
      if (b.kind === "table") this.table(b.header, b.rows);
      else this.line(...b.lines);
    }
    return this;
  }

  toString(): string {
    return this.blocks.map((b) => (b.kind === "table" ? formatTable(b.header, b.rows) : b.lines.join("\n"))).join("\n");
  }
}

const round2 = (x: number): number => Math.round(x * 100) / 100;

export function loadAverage(): LoadAverage {
  const [a, b, c] = os.loadavg();
  return [round2(a!), round2(b!), round2(c!)];
}

/** `deno --version`'s first line's version, or null when there is no such command. */
export function denoVersion(command = "deno"): string | null {
  const r = spawnSync(command, ["--version"], { encoding: "utf8", timeout: 10_000 });
  return r.status === 0 ? (/deno (\S+)/.exec(r.stdout)?.[1] ?? null) : null;
}

export function machine(options: { deno?: string | null } = {}): Machine {
  const cpus = os.cpus();
  return {
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    cpuModel: cpus[0]?.model.trim() ?? "unknown",
    cpus: cpus.length,
    totalMemMiB: Math.round(os.totalmem() / 2 ** 20),
    node: process.version,
    v8: process.versions.v8,
    deno: options.deno ?? (process.versions as Record<string, string | undefined>).deno ?? null,
  };
}

/** One line for the console: "node v20.20.2, 2 CPUs (model), 7,936 MiB, Linux 6.8.0 x64". */
export function machineLine(m: Machine): string {
  return `node ${m.node}${m.deno ? `, deno ${m.deno}` : ""}, ${m.cpus} CPUs (${m.cpuModel}), ${m.totalMemMiB.toLocaleString("en-US")} MiB, ${m.os}`;
}

const SAFE = /^[\w@%+=:,./-]+$/;
const shellQuote = (s: string): string => (SAFE.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/** The command line that started this process, as it would be typed again. */
function commandLine(name: string, args: string[]): string {
  const rest = [name, ...args].map(shellQuote).join(" ");
  if (process.env.npm_lifecycle_event === "bench") return `npm run bench -- ${rest}`;
  const script = process.argv[1] ? path.relative(process.cwd(), process.argv[1]) : "bench/run.ts";
  if (process.execArgv.some((a) => a.includes("tsx"))) return `tsx ${shellQuote(script)} ${rest}`;
  return [process.execPath, ...process.execArgv, ...process.argv.slice(1)].map(shellQuote).join(" ");
}

function git(args: string[]): string | null {
  const r = spawnSync("git", args, { cwd: ROOT, encoding: "utf8", timeout: 10_000 });
  return r.status === 0 ? r.stdout.trim() : null;
}

export class Run {
  readonly bench: string;
  readonly machine: Machine;
  readonly report = new Report();
  readonly #started = new Date();
  readonly #command: string;
  readonly #argv = [...process.argv];
  readonly #loadBefore = loadAverage();
  readonly #git: RunInfo["git"];
  #description: string | null = null;

  constructor(bench: string, args: string[], options: { deno?: string | null } = {}) {
    this.bench = bench;
    this.machine = machine(options);
    this.#command = commandLine(bench, args);
    const commit = git(["rev-parse", "HEAD"]);
    const status = commit === null ? null : git(["status", "--porcelain", "--untracked-files=no"]);
    this.#git = { commit, dirty: status === null ? null : status !== "" };
  }

  /** The 1/5/15-minute load average when the run started. */
  get loadBefore(): LoadAverage {
    return this.#loadBefore;
  }

  /** Records the line saying what the benchmark does with which settings; returns it, to print. */
  describe(text: string): string {
    this.#description = text;
    return text;
  }

  /** Records Deno's version once the benchmark has started Deno. */
  usedDeno(version: string | null): void {
    (this.machine as { deno: string | null }).deno = version;
  }

  /**
   * Writes bench/results/<bench>.json: this run's facts, then `figures`,
   * then the report's blocks. Returns the file's path.
   */
  write(figures: Record<string, unknown>): string {
    const finished = new Date();
    const info: RunInfo = {
      bench: this.bench,
      date: this.#started.toISOString(),
      finished: finished.toISOString(),
      durationS: Math.round((finished.getTime() - this.#started.getTime()) / 100) / 10,
      command: this.#command,
      argv: this.#argv,
      description: this.#description,
      git: this.#git,
      machine: this.machine,
      loadAverage: { before: this.#loadBefore, after: loadAverage() },
    };
    const clash = Object.keys(figures).filter((k) => k in info || k === "report");
    if (clash.length > 0) throw new Error(`results of ${this.bench}: ${clash.join(", ")} would hide the run's own fields`);
    mkdirSync(RESULTS_DIR, { recursive: true });
    const file = path.join(RESULTS_DIR, `${this.bench}.json`);
    writeFileSync(file, JSON.stringify({ ...info, ...figures, report: this.report.blocks }, null, 2) + "\n");
    return file;
  }
}

/** Call at the start of a benchmark's main(): the date and the load average before are taken now. */
export function startRun(bench: string, args: string[], options: { deno?: string | null } = {}): Run {
  return new Run(bench, args, options);
}
