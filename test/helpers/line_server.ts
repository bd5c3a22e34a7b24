/**
 * A perilink server (the CLI, from source) in the topology's server
 * namespace, listening on both lines' IPv4 and IPv6 addresses at one port; stopped
 * by `stop()`. Ready once it answers an identify probe on each line.
 */
import type { ChildProcess } from "node:child_process";
import { randomInt } from "node:crypto";
import { identifyUdp } from "../../src/client/identify.ts";
import { cliCommand, stopChild } from "./cli.ts";
import { tempDir, sleep } from "./fixtures.ts";
import type { Topology } from "./netns_topology.ts";

export interface LineServer {
  port: number;
  serverId: string;
  log(): string;
  stop(): Promise<void>;
}

const START_WAIT_MS = 30_000; // the first start may compile (tsx, deno)

export async function startLineServer(topo: Topology): Promise<LineServer> {
  const port = randomInt(20_000, 60_000);
  const { cmd, args } = cliCommand([
    "serve",
    "--access",
    "open",
    "--listen", `${topo.direct.server.v4}:${port}`,
    "--listen", `${topo.routed.server.v4}:${port}`,
    "--listen", `[${topo.direct.server.v6}]:${port}`,
    "--listen", `[${topo.routed.server.v6}]:${port}`,
    "--state-dir", tempDir("perilink-lines-"),
    "--log-level", "warn",
  ]);
  const child: ChildProcess = topo.spawnInServer(cmd, args);
  let log = "";
  child.stdout!.setEncoding("utf8").on("data", (s: string) => (log += s));
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (log += s));
  const end = Date.now() + START_WAIT_MS;
  let serverId = "";
  for (const host of [topo.direct.server.v4, topo.routed.server.v4, topo.direct.server.v6, topo.routed.server.v6]) {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}: ${log}`);
      try {
        serverId = (await identifyUdp(host, port, { timeoutMs: 500 })).serverId;
        break;
      } catch (err) {
        if (Date.now() > end) throw new Error(`server not answering on ${host}:${port}: ${(err as Error).message}\n${log}`);
        await sleep(100);
      }
    }
  }
  return { port, serverId, log: () => log, stop: () => stopChild(child, 3000) };
}
