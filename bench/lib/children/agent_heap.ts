/**
 * Child process for bench/agent.ts (memory): a host agent in a process of
 * its own, started with --expose-gc, so that its JS heap can be read after a
 * full collection — what RSS, which rises and falls with collections, cannot
 * resolve per link.
 *
 *   argv: <socket path> <state dir>   → ready {}
 *   ← heap  → heap {bytes}  (heapUsed after three full collections)
 *   ← stop  → closes and exits
 */
import { HostAgent } from "../../../src/agent/host_agent.ts";
import { silentLogger } from "../../../src/logger.ts";
import { tell } from "../proc.ts";

const [socketPath, stateDir] = process.argv.slice(2) as [string, string];
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("agent_heap.ts needs node --expose-gc");
const agent = await HostAgent.start({ socketPath, client: { stateDir }, log: silentLogger });
process.on("message", (m: { type: string }) => {
  if (m.type === "heap") {
    for (let i = 0; i < 3; i++) gc();
    void tell({ type: "heap", bytes: process.memoryUsage().heapUsed });
  } else if (m.type === "stop") void agent.close().then(() => process.exit(0));
});
await tell({ type: "ready" });
