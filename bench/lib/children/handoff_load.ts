/**
 * Child process: the load of the handoff benchmark. `clients` loops send one
 * request after another until told to stop, and every request is recorded:
 * start time (epoch ms, same clock as the parent: performance.timeOrigin +
 * performance.now()), latency, the pid that answered, and the outcome.
 *
 *   ← start {mode, port, clients, maxMs, maxRequests, thinkMs, file}
 *   → started             (every client has sent its first request)
 *   ← stop
 *   → result {count, file, errors}, then exits
 *
 * Modes:
 * - `http-close`: connection-per-request HTTP/1.1 GETs (`Connection: close`, agent: false);
 * - `http-keepalive`: one keep-alive connection per client (an Agent with maxSockets 1 each);
 * - `perilink`: one perilink client (`createClient`), one link per client loop, each
 *   request "info" to the demo app (its answer names the pid). Links move to a new
 *   session on GOAWAY and send again what the server refused unstarted.
 *
 * The records are written to `file` as four columns, one after the other:
 * start (f64 × count), latency ms (f64 × count), pid (i32 × count), outcome (u8 × count:
 * 0 answered with 2xx, 1 failed, 2 non-2xx). Bounded by `maxMs` and `maxRequests`.
 */
import { writeFileSync } from "node:fs";
import http from "node:http";
import { createClient, type Link } from "../../../src/index.ts";
import { tell } from "../proc.ts";

export type LoadMode = "http-close" | "http-keepalive" | "perilink";

export interface StartLoad {
  type: "start";
  mode: LoadMode;
  port: number;
  clients: number;
  maxMs: number;
  maxRequests: number;
  /** Pause of each client after each answer (0: none, a closed loop at full speed). */
  thinkMs: number;
  file: string;
  /** The perilink clients' state directory (their key and pins); default: a key of this process only. */
  stateDir?: string;
}

export type LoadDone = {
  type: "result";
  count: number;
  file: string;
  /** Failure messages with how often each occurred (at most 50 distinct). */
  errors: Record<string, number>;
  /** True when a bound (maxMs, maxRequests) ended the load before `stop`. */
  bounded: boolean;
};

export const OK = 0;
export const FAILED = 1;
export const NON_2XX = 2;

const REQUEST_TIMEOUT_MS = 10_000;
const now = (): number => performance.timeOrigin + performance.now();

interface Answer {
  status: number;
  pid: number;
}

function pidOf(body: string): number {
  // http_app.mjs answers "ok <pid> <url>"; the demo app's "info" answers JSON with pid.
  if (body.startsWith("ok ")) return Number(body.split(" ")[1]) || 0;
  try {
    return Number((JSON.parse(body) as { pid?: number }).pid) || 0;
  } catch {
    return 0;
  }
}

function httpSender(port: number, keepAlive: boolean, c: number): { send: (n: number) => Promise<Answer>; close: () => void } {
  const agent = keepAlive ? new http.Agent({ keepAlive: true, maxSockets: 1 }) : false;
  const send = (n: number): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const req = http.get(
        { host: "127.0.0.1", port, path: `/c${c}/${n}`, agent, headers: keepAlive ? {} : { connection: "close" } },
        (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (s: string) => (body += s));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, pid: pidOf(body) }));
          res.on("error", reject);
        },
      );
      req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
      req.on("error", reject);
    });
  return { send, close: () => (agent ? agent.destroy() : undefined) };
}

async function run(r: StartLoad): Promise<void> {
  const start = new Float64Array(r.maxRequests);
  const latency = new Float64Array(r.maxRequests);
  const pid = new Int32Array(r.maxRequests);
  const outcome = new Uint8Array(r.maxRequests);
  const errors = new Map<string, number>();
  let count = 0;
  let stopping = false;
  let bounded = false;
  const end = Date.now() + r.maxMs;
  const fail = (err: unknown): void => {
    const e = err as { code?: string; message?: string };
    const key = `${e.code ?? ""} ${e.message ?? String(err)}`.trim();
    if (errors.has(key) || errors.size < 50) errors.set(key, (errors.get(key) ?? 0) + 1);
  };

  let senders: { send: (n: number) => Promise<Answer>; close: () => void }[];
  let closeAll = async (): Promise<void> => {};
  if (r.mode === "perilink") {
    const client = createClient({ lingerMs: 0, stateDir: r.stateDir ?? false });
    const links: Link[] = [];
    for (let c = 0; c < r.clients; c++) links.push(await client.connect({ host: "127.0.0.1", port: r.port, app: `load${c}` }));
    senders = links.map((link) => ({
      send: async () => ({ status: 200, pid: pidOf((await link.request("info", { timeoutMs: REQUEST_TIMEOUT_MS })).toString()) }),
      close: () => link.close(),
    }));
    closeAll = () => client.close();
  } else {
    senders = Array.from({ length: r.clients }, (_, c) => httpSender(r.port, r.mode === "http-keepalive", c));
  }

  let first = 0;
  let started!: () => void;
  const allStarted = new Promise<void>((resolve) => (started = resolve));
  const loops = senders.map(async (s) => {
    for (let n = 0; !stopping; n++) {
      if (count >= r.maxRequests || Date.now() >= end) {
        bounded = true;
        break;
      }
      const i = count++;
      const t0 = now();
      start[i] = t0;
      if (n === 0 && ++first === senders.length) started();
      try {
        const a = await s.send(n);
        latency[i] = now() - t0;
        pid[i] = a.pid;
        outcome[i] = a.status >= 200 && a.status < 300 ? OK : NON_2XX;
      } catch (err) {
        latency[i] = now() - t0;
        outcome[i] = FAILED;
        fail(err);
      }
      if (r.thinkMs > 0) await new Promise((resolve) => setTimeout(resolve, r.thinkMs));
    }
    s.close();
  });
  await allStarted;
  await tell({ type: "started" });
  await new Promise<void>((resolve) => {
    process.once("message", () => resolve());
    // Bounded even without a stop message.
    setTimeout(resolve, Math.max(0, end - Date.now())).unref();
  });
  stopping = true;
  await Promise.all(loops);
  await closeAll();

  const bytes = (a: ArrayBufferView): Buffer => Buffer.from(a.buffer, a.byteOffset, count * (a as Float64Array).BYTES_PER_ELEMENT);
  writeFileSync(r.file, Buffer.concat([bytes(start), bytes(latency), bytes(pid), bytes(outcome)]));
  await tell({ type: "result", count, file: r.file, errors: Object.fromEntries(errors), bounded } satisfies LoadDone);
}

process.on("disconnect", () => process.exit(0));
process.once("message", (raw) => {
  run(raw as StartLoad).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`handoff_load: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
});
