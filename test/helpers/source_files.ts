import { readdirSync, statSync } from "node:fs";
import path from "node:path";
import { REPO_ROOT } from "./cli.ts";

/** Every .ts file under `dir` (default: the repository's src/). */
export function sourceFiles(dir = path.join(REPO_ROOT, "src")): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sourceFiles(p));
    else if (name.endsWith(".ts")) out.push(p);
  }
  return out;
}
