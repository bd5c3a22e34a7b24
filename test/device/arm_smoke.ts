/**
 * Smoke suite of a bundle on an emulated ARM Node.js (R6): serve, identify
 * over UDP (the bundle's own `id`) and TCP (the host build's) from a native
 * client, a `call` from the host build on the emulated node (a device build
 * has no client), `status` (with the target's heap budget applied), and one
 * `upgrade` under a little load with no failed request. Prints one line per step; exits 1 on
 * the first failure. Bounded: every step has a deadline, the load stops by itself.
 *
 *   tsx test/device/arm_smoke.ts --arch arm64 --node PATH --ld-prefix DIR [--bundle FILE]
 *
 * The emulated node runs through binfmt_misc (qemu-user-static); QEMU_LD_PREFIX
 * names the ARM C library. See .ci/arm_setup.sh.
 */
import { execFile, spawn } from "node:child_process";
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs, promisify } from "node:util";
import { perilinkLoad } from "../helpers/load.ts";
import { pidAlive } from "../helpers/pid_alive.ts";
import { bundleFor } from "./bundles.ts";

const exec = promisify(execFile);
const { values } = parseArgs({ options: { arch: { type: "string" }, node: { type: "string" }, "ld-prefix": { type: "string" }, bundle: { type: "string" } } });
const arch = values.arch ?? "arm";
const armNode = values.node;
if (!armNode || !values["ld-prefix"]) {
  console.error("usage: arm_smoke.ts --arch NAME --node PATH --ld-prefix DIR [--bundle FILE]");
  process.exit(2);
}
const env: NodeJS.ProcessEnv = { ...process.env, QEMU_LD_PREFIX: values["ld-prefix"] };
delete env.NODE_OPTIONS;
const started = Date.now();
const step = (what: string): void => console.log(`${arch}: ${what} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
function check(ok: unknown, what: string): asserts ok {
  if (!ok) throw new Error(what);
}

async function armRun(args: string[], timeout = 60_000): Promise<string> {
  const { stdout } = await exec(armNode!, args, { env, timeout });
  return stdout;
}

const bundle = values.bundle ? path.resolve(values.bundle) : await bundleFor("pi-zero-2w");
const hostBundle = await bundleFor("node20");
const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), `perilink-arm-${arch}-`));
const pids = new Set<number>();
let exitCode = 1;
const serve = spawn(armNode, [bundle, "serve", "--access", "open", "--state-dir", stateDir, "--listen", "127.0.0.1:0", "--listen", "[::1]:0"], { env, stdio: ["ignore", "ignore", "pipe"] });
let log = "";
serve.stderr!.setEncoding("utf8").on("data", (s: string) => (log += s));
try {
  // One start of the emulated node tells its arch and the limit V8 sets there for the target's budget.
  const [archName, version, limit] = (await armRun(["--max-old-space-size=96", "--max-semi-space-size=1", "-p", "[process.arch, process.version, require('v8').getHeapStatistics().heap_size_limit].join(' ')"])).trim().split(" ");
  const expectedLimit = Number(limit);
  step(`emulated node: ${archName} ${version}`);
  const deadline = Date.now() + 90_000;
  while (!log.includes('"server_started"') && serve.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  check(log.includes('"server_started"'), `serve did not start: ${log}`);
  const status1 = JSON.parse(await armRun([bundle, "status", "--state-dir", stateDir, "--json"]));
  pids.add(status1.pid);
  const v4 = status1.listeners.find((l: { address: string; transport: string }) => l.address === "127.0.0.1" && l.transport === "tcp");
  const v6 = status1.listeners.find((l: { address: string; transport: string }) => l.address === "::1" && l.transport === "tcp");
  check(v4 && v6, `listeners: ${JSON.stringify(status1.listeners)}`);
  check(status1.memory?.heapLimitBytes === expectedLimit, `heap limit ${status1.memory?.heapLimitBytes}, expected ${expectedLimit} (the pi-zero-2w budget on this node)`);
  step(`serve accepting, status: pid ${status1.pid}, heap limit ${(status1.memory.heapLimitBytes / 1048576).toFixed(0)} MiB`);

  const udp = JSON.parse((await exec(process.execPath, [bundle, "id", `127.0.0.1:${v4.port}`, "--json"])).stdout);
  const tcp = JSON.parse((await exec(process.execPath, [hostBundle, "id", `[::1]:${v6.port}`, "--tcp", "--json"])).stdout);
  check(udp.serverId === status1.serverId && tcp.serverId === status1.serverId, `ids ${udp.serverId} / ${tcp.serverId} vs ${status1.serverId}`);
  check(udp.transport === "udp" && tcp.transport === "tcp", `transports ${udp.transport} / ${tcp.transport}`);
  step(`native id over UDP and TCP: ${udp.serverId}`);

  const call = JSON.parse(await armRun([hostBundle, "call", `127.0.0.1:${v4.port}`, "--data", "hello", "--json"]));
  check(call.responses?.length === 1 && JSON.stringify(call.responses).includes("hello"), `call: ${JSON.stringify(call)}`);
  step("emulated call (host build) answered");

  const load = perilinkLoad("127.0.0.1", v4.port, 3, { maxMs: 60_000 });
  await new Promise((r) => setTimeout(r, 1000));
  const up = await armRun([bundle, "upgrade", "--state-dir", stateDir, "--json", "--timeout", "60000"], 90_000);
  await new Promise((r) => setTimeout(r, 500));
  const report = await load.stop();
  const status2 = JSON.parse(await armRun([bundle, "status", "--state-dir", stateDir, "--json"]));
  pids.add(status2.pid);
  check(status2.generation === 2 && status2.pid !== status1.pid, `after upgrade: ${JSON.stringify(up)} / generation ${status2.generation}`);
  check(status2.memory?.heapLimitBytes === expectedLimit, `heap limit after the upgrade ${status2.memory?.heapLimitBytes}`);
  check(report.errors.length === 0, `failed requests during the upgrade: ${report.errors.slice(0, 5).join("; ")}`);
  check(report.answered.size > 0, "no request answered");
  step(`upgrade under load: generation 2 (pid ${status2.pid}, same heap limit), ${report.answered.size} requests, ${report.resent} sent again after GOAWAY, 0 failed`);
  exitCode = 0;
} catch (err) {
  console.error(`${arch}: FAILED: ${(err as Error).message}`);
  console.error(log.split("\n").slice(-15).join("\n"));
} finally {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // gone
    }
  }
  serve.kill("SIGTERM");
  const gone = Date.now() + 30_000;
  while (Date.now() < gone && [...pids].some((p) => pidAlive(p))) await new Promise((r) => setTimeout(r, 200));
  for (const pid of pids) if (pidAlive(pid)) process.kill(pid, "SIGKILL");
  if (serve.exitCode === null) serve.kill("SIGKILL");
  await fs.rm(stateDir, { recursive: true, force: true });
}
step(exitCode === 0 ? "smoke passed" : "smoke failed");
process.exit(exitCode);
