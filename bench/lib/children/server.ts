/**
 * Child process: runs one contender's echo server on 127.0.0.1 and answers
 * the parent over IPC.
 *
 *   argv: <contender> [serve options as JSON]
 *   → ready {port}
 *   ← window-start        (starts counting GCs, CPU time and requests)
 *   ← window-end          → window {gc, cpuUs, requests}
 *   ← info                → info {memory, info}
 *   ← stop                → closes the server and exits
 */
import { loadContender } from "../contenders/index.ts";
import { GcCounter } from "../gc.ts";
import { tell, type Message } from "../proc.ts";

const [name = "", optionsJson = "{}"] = process.argv.slice(2);
const server = await (await loadContender(name)).serve(JSON.parse(optionsJson));
const gc = new GcCounter();
let handledAtStart = 0;
let cpuAtStart = process.cpuUsage();

// Never outlive the parent.
process.on("disconnect", () => process.exit(0));
process.on("message", (raw) => {
  const m = raw as Message;
  switch (m.type) {
    case "window-start":
      handledAtStart = server.handled();
      cpuAtStart = process.cpuUsage();
      gc.start();
      return;
    case "window-end": {
      const counts = gc.stop();
      const cpu = process.cpuUsage(cpuAtStart);
      void tell({ type: "window", gc: counts, cpuUs: cpu.user + cpu.system, requests: server.handled() - handledAtStart });
      return;
    }
    case "info":
      void tell({ type: "info", memory: process.memoryUsage(), info: server.info() });
      return;
    case "stop":
      void server.close().finally(() => process.exit(0));
      return;
  }
});
void tell({ type: "ready", port: server.port });
