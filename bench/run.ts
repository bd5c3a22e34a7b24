/**
 * Runs one benchmark by name: `npm run bench -- <name> [options]`.
 * With no name, lists them. Each writes bench/results/<name>.json
 * (bench/lib/result_file.ts); `npm run bench:report` (bench/report.ts)
 * renders them all into docs/benchmarks.md, in the order of BENCHES.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** Every benchmark: `name` is bench/<name>.ts, whose main(args) writes bench/results/<name>.json. */
export const BENCHES: readonly { name: string; title: string }[] = [
  { name: "throughput", title: "Throughput" },
  { name: "sessions", title: "Client session table" },
  { name: "agent", title: "Host agent: one session table for every process" },
  { name: "handoff", title: "Handoff: replacing the server under load" },
  { name: "spread", title: "Spreading the reconnects after an upgrade" },
  { name: "torture", title: "Torture: the server under attack" },
  { name: "names", title: "Names" },
  { name: "workers", title: "Service processes" },
  { name: "lines", title: "Lines: the better line and dead-line detection" },
  { name: "device", title: "On the device" },
  { name: "streams", title: "Streams: bodies of any size" },
  { name: "http", title: "HTTP: fetch() through the session table" },
];

interface Bench {
  main(args: string[]): Promise<void>;
}

async function run(name: string | undefined, args: string[]): Promise<void> {
  const known = BENCHES.find((b) => b.name === name);
  if (known === undefined) {
    if (name !== undefined) console.error(`unknown benchmark "${name}"`);
    console.log(`usage: npm run bench -- <name> [options]\nbenchmarks:\n${BENCHES.map((b) => `  ${b.name.padEnd(11)} ${b.title}`).join("\n")}`);
    process.exitCode = name === undefined ? 0 : 2;
    return;
  }
  // Clients made without a stateDir keep their key and pins in the default state directory: for a
  // benchmark (and the processes it starts), one of its own, never the user's or the device's.
  if (!process.env.PERILINK_STATE_DIR) {
    const dir = mkdtempSync(path.join(os.tmpdir(), "perilink-bench-home-"));
    process.env.PERILINK_STATE_DIR = dir;
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  }
  const bench = (await import(new URL(`./${known.name}.ts`, import.meta.url).href)) as Bench;
  await bench.main(args);
}

// Run only as the program (bench/report.ts imports BENCHES from here).
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [name, ...args] = process.argv.slice(2);
  await run(name, args);
}
