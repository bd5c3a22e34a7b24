/**
 * Child process: opens many idle perilink sessions to one server and holds them.
 *
 *   ← open {port, count, parallel}
 *   → opened {count, rssBeforeKiB, rssAfterKiB}
 *   ← close               → exits
 */
import { ClientSession } from "../../../src/index.ts";
import { tell, type Message } from "../proc.ts";

const sessions: ClientSession[] = [];

process.on("disconnect", () => process.exit(0));
process.on("message", async (raw) => {
  const m = raw as Message & { port: number; count: number; parallel: number };
  if (m.type === "close") {
    for (const s of sessions) s.destroy();
    process.exit(0);
  }
  if (m.type !== "open") return;
  const rssBefore = process.memoryUsage.rss();
  for (let i = 0; i < m.count; i += m.parallel) {
    const batch = Math.min(m.parallel, m.count - i);
    const opened = await Promise.all(
      Array.from({ length: batch }, () => ClientSession.connect({ host: "127.0.0.1", port: m.port, timeoutMs: 10_000 })),
    );
    sessions.push(...opened);
  }
  void tell({ type: "opened", count: sessions.length, rssBeforeKiB: rssBefore / 1024, rssAfterKiB: process.memoryUsage.rss() / 1024 });
});
// Bounded: never hold the sessions for more than a minute.
setTimeout(() => process.exit(1), 60_000).unref();
