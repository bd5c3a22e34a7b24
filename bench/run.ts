/**
 * Runs one benchmark by name: `npm run bench -- <name> [options]`.
 * With no name, lists them. Each writes bench/results/<name>.json.
 */

const BENCHES: Record<string, string> = {
  throughput: "./throughput.ts",
  sessions: "./sessions.ts",
  handoff: "./handoff.ts",
  torture: "./torture.ts",
  names: "./names.ts",
  workers: "./workers.ts",
  lines: "./lines.ts",
  device: "./device.ts",
};

interface Bench {
  main(args: string[]): Promise<void>;
}

const [name, ...args] = process.argv.slice(2);
const file = name === undefined ? undefined : BENCHES[name];
if (file === undefined) {
  if (name !== undefined) console.error(`unknown benchmark "${name}"`);
  console.log(`usage: npm run bench -- <name> [options]\nbenchmarks:\n${Object.keys(BENCHES).map((n) => `  ${n}`).join("\n")}`);
  process.exitCode = name === undefined ? 0 : 2;
} else {
  const bench = (await import(new URL(file, import.meta.url).href)) as Bench;
  await bench.main(args);
}
