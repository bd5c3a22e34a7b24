import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

/** The parts of targets/<name>.json the torture benchmark sizes its attacks and budgets from. */
export interface Profile {
  name: string;
  bundle: string;
  server: { maxSessions: number; maxSessionsPerPeer: number; maxFrameBytes: number; handshakeTimeoutMs: number; maxBufferedBytes: number; writeTimeoutMs: number };
  probe: Record<string, number>;
}

/** The build target `name` (targets/<name>.json), with its bundle built when missing or older than src/. */
export function loadProfile(name: string): Profile {
  const file = path.join(ROOT, "targets", `${name}.json`);
  if (!existsSync(file)) throw new Error(`no build target "${name}" (targets/${name}.json)`);
  const t = JSON.parse(readFileSync(file, "utf8")) as Omit<Profile, "name" | "bundle"> & { runtime: string };
  if (t.runtime !== "node") throw new Error(`build target "${name}" is for ${t.runtime}; the torture benchmark runs Node.js bundles`);
  const bundle = path.join(ROOT, "dist", name, "perilink.mjs");
  const newest = (dir: string): number => {
    let m = 0;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      m = Math.max(m, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
    }
    return m;
  };
  const stale = (): boolean => !existsSync(bundle) || statSync(bundle).mtimeMs < Math.max(newest(path.join(ROOT, "src")), statSync(file).mtimeMs);
  if (stale()) {
    const r = spawnSync("npm", ["run", "build", "--silent", "--", "--target", name, "--quiet"], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
    if (r.status !== 0 || stale()) throw new Error(`npm run build -- --target ${name} failed; ${bundle} is missing or stale`);
  }
  return { name, bundle, server: t.server, probe: t.probe };
}
