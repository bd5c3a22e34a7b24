import cluster from "node:cluster";
import { createServer } from "../handoff/http_app.mjs";

/**
 * The competitor of `npm run bench -- workers`: the same node:http app
 * (bench/lib/handoff/http_app.mjs) under node:cluster with round-robin scheduling (the
 * primary accepts and passes each connection to a worker, Node's default on
 * Linux). WORKERS workers on 127.0.0.1:PORT; prints "listening <pid> <port>"
 * once every worker listens. SIGTERM ends the primary and its workers.
 */
cluster.schedulingPolicy = cluster.SCHED_RR;
const port = Number(process.env.PORT);
const workers = Number(process.env.WORKERS ?? 1);

if (cluster.isPrimary) {
  let listening = 0;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on("listening", () => {
    if (++listening === workers) process.stdout.write(`listening ${process.pid} ${port}\n`);
  });
  process.on("SIGTERM", () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill("SIGKILL");
    process.exit(0);
  });
} else {
  createServer().listen(port, "127.0.0.1");
}
