/**
 * Child process for bench/agent.ts: an application with links to one server,
 * through the host agent or in its own process.
 *
 *   argv: <agent socket or "none"> <mode> <options as JSON>
 *   load    {host, port, seconds, inflight, bytes}  → done {requests, ms}
 *   connect {host, port, count}                      → done {us, firstUs: number[]} (connect, then connect + first request, of a link closed after it; the server's session open)
 *   hold    {endpoints: [{host, port}], links}      → ready {} ; ← stop → closes and exits (links spread over the endpoints)
 */
import { HostClient } from "../../../src/agent/host_client.ts";
import { tell } from "../proc.ts";

const [socket, mode, json] = process.argv.slice(2) as [string, string, string];
const o = JSON.parse(json) as Record<string, unknown>;
const client = new HostClient(socket === "none" ? { agent: false, stateDir: false, lingerMs: 60_000 } : { agent: true, agentSocket: socket });

if (mode === "load") {
  const link = await client.connect({ host: o.host as string, port: o.port as number, app: "load" });
  const body = Buffer.alloc(o.bytes as number, 7);
  await link.request(body);
  let requests = 0;
  const until = performance.now() + (o.seconds as number) * 1000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: o.inflight as number }, async () => {
      while (performance.now() < until) {
        await link.request(body);
        requests++;
      }
    }),
  );
  await tell({ type: "done", requests, ms: performance.now() - t0 });
} else if (mode === "connect") {
  const anchor = await client.connect({ host: o.host as string, port: o.port as number, app: "anchor" });
  await anchor.request("x");
  const us: number[] = [];
  const firstUs: number[] = [];
  for (let i = 0; i < (o.count as number); i++) {
    const t = performance.now();
    const l = await client.connect({ host: o.host as string, port: o.port as number, app: `c${i % 8}` });
    us.push((performance.now() - t) * 1000);
    await l.request("x");
    firstUs.push((performance.now() - t) * 1000);
    l.close();
  }
  await tell({ type: "done", us, firstUs });
} else if (mode === "hold") {
  const eps = o.endpoints as { host: string; port: number }[];
  const links = await Promise.all(Array.from({ length: o.links as number }, (_, i) => client.connect({ host: eps[i % eps.length]!.host, port: eps[i % eps.length]!.port, app: `app${i}` })));
  await Promise.all(links.map((l) => l.request("x")));
  await tell({ type: "ready" });
  await new Promise<void>((r) => process.once("message", () => r()));
}
await client.close();
process.disconnect?.();
