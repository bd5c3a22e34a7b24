import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Child, readRssKiB, sleep, spawnQuiet, stopProcess } from "./proc.ts";

/** Memory figures: idle RSS of `perilink serve` against bare Node, and RSS per idle session. */

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BUNDLE = path.join(ROOT, "dist/node20/perilink.mjs");
const SERVER_CHILD = fileURLToPath(new URL("./children/server.ts", import.meta.url));
const SESSION_HOLDER = fileURLToPath(new URL("./children/session_holder.ts", import.meta.url));
const SETTLE_MS = 1500;

/** Builds the node20 bundle if it is missing. */
export function ensureBundle(): string {
  if (!existsSync(BUNDLE)) {
    const r = spawnSync("npm", ["run", "build"], { cwd: ROOT, stdio: "inherit" });
    if (r.status !== 0 || !existsSync(BUNDLE)) throw new Error(`npm run build failed; ${BUNDLE} is missing`);
  }
  return BUNDLE;
}

/** VmRSS of `command args` after it has run idle for 1.5 s. */
async function idleRssKiB(command: string, args: string[]): Promise<number> {
  const child = spawnQuiet(command, args);
  try {
    await sleep(SETTLE_MS);
    if (child.exitCode !== null) throw new Error(`${command} ${args.join(" ")} exited early (${child.exitCode})`);
    return readRssKiB(child.pid!);
  } finally {
    await stopProcess(child);
  }
}

export interface IdleRss {
  perilinkServeKiB: number;
  nodeIdleKiB: number;
}

/** One measurement of each: the built `perilink serve` on 127.0.0.1:0, and an idle `node -e`. */
export async function measureIdleRss(): Promise<IdleRss> {
  const bundle = ensureBundle();
  const stateDir = mkdtempSync(path.join(os.tmpdir(), "perilink-bench-idle-"));
  try {
    const perilinkServeKiB = await idleRssKiB(process.execPath, [bundle, "serve", "--access", "open", "--listen", "127.0.0.1:0", "--state-dir", stateDir]);
    const nodeIdleKiB = await idleRssKiB(process.execPath, ["-e", "setInterval(()=>{},1000)"]);
    return { perilinkServeKiB, nodeIdleKiB };
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
  }
}

export interface SessionRss {
  sessions: number;
  serverRssBeforeKiB: number;
  serverRssAfterKiB: number;
  serverKiBPerSession: number;
  serverHeapKiBPerSession: number;
  clientKiBPerSession: number;
}

interface ServerInfo {
  memory: NodeJS.MemoryUsage;
  info: { sessions?: number };
}

/**
 * Opens `count` idle perilink sessions from one client process to one server
 * process (session limits raised to allow them) and reports the server's RSS
 * growth per session.
 */
export async function measureSessionRss(count = 1000): Promise<SessionRss> {
  const limits = { maxSessions: 2000, maxSessionsPerPeer: 2000, sessionRatePerPeer: 0, sessionRateGlobal: 0 };
  const server = new Child(SERVER_CHILD, ["perilink", JSON.stringify({ limits })]);
  let holder: Child | null = null;
  try {
    const { port } = await server.next<{ type: string; port: number }>("ready", 20_000);
    await sleep(SETTLE_MS);
    const serverRssBeforeKiB = readRssKiB(server.pid);
    server.send({ type: "info" });
    const infoBefore = (await server.next("info", 5000)) as unknown as ServerInfo;

    holder = new Child(SESSION_HOLDER);
    holder.send({ type: "open", port, count, parallel: 50 });
    const opened = await holder.next<{ type: string; count: number; rssBeforeKiB: number; rssAfterKiB: number }>("opened", 60_000);
    await sleep(SETTLE_MS);
    const serverRssAfterKiB = readRssKiB(server.pid);
    server.send({ type: "info" });
    const infoAfter = (await server.next("info", 5000)) as unknown as ServerInfo;
    if (infoAfter.info.sessions !== count) throw new Error(`server holds ${infoAfter.info.sessions} sessions, expected ${count}`);

    return {
      sessions: opened.count,
      serverRssBeforeKiB,
      serverRssAfterKiB,
      serverKiBPerSession: (serverRssAfterKiB - serverRssBeforeKiB) / count,
      serverHeapKiBPerSession: (infoAfter.memory.heapUsed - infoBefore.memory.heapUsed) / 1024 / count,
      clientKiBPerSession: (opened.rssAfterKiB - opened.rssBeforeKiB) / count,
    };
  } finally {
    if (holder) {
      holder.send({ type: "close" });
      await holder.stop();
    }
    server.send({ type: "stop" });
    await server.stop();
  }
}
