/**
 * Child process: one contender's client driving load at its server.
 *
 *   ← run {contender, port, payloadBytes, concurrency, warmupMs, durationMs, maxRequests}
 *   → measure-start       (the warm-up is over)
 *   → result {load, gc, cpuUs, info}, then exits
 */
import { loadContender } from "../contenders/index.ts";
import { GcCounter } from "../gc.ts";
import { runLoad } from "../load.ts";
import { tell } from "../proc.ts";

export interface RunRequest {
  type: "run";
  contender: string;
  port: number;
  payloadBytes: number;
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  maxRequests: number;
}

process.on("disconnect", () => process.exit(0));
process.once("message", async (raw) => {
  const r = raw as RunRequest;
  const payload = Buffer.alloc(r.payloadBytes, 0x61);
  const client = await (await loadContender(r.contender)).connect(r.port, payload);
  const gc = new GcCounter();
  let cpuAtStart = process.cpuUsage();
  let cpuUs = 0;
  let counts = gc.stop();
  const load = await runLoad(client.send, {
    concurrency: r.concurrency,
    warmupMs: r.warmupMs,
    durationMs: r.durationMs,
    maxRequests: r.maxRequests,
    onMeasureStart() {
      cpuAtStart = process.cpuUsage();
      gc.start();
      void tell({ type: "measure-start" });
    },
    onMeasureEnd() {
      counts = gc.stop();
      const cpu = process.cpuUsage(cpuAtStart);
      cpuUs = cpu.user + cpu.system;
    },
  });
  const info = client.info();
  await client.close();
  await tell({ type: "result", load, gc: counts, cpuUs, info });
  process.exit(0);
});
