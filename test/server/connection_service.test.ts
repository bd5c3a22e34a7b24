import assert from "node:assert/strict";
import type net from "node:net";
import { test } from "node:test";
import { silentLogger } from "../../src/logger.ts";
import { resolveConfig } from "../../src/server/config.ts";
import type { LatencyHistogram } from "../../src/open_metrics.ts";
import type { ConnectionService, WorkerStatus } from "../../src/server/connection_service.ts";
import { openServer } from "../../src/server/start_server.ts";
import { SystemdNotifier } from "../../src/systemd/systemd_notifier.ts";
import { tempDir } from "../helpers/fixtures.ts";

/** A manager's group as the server sees it: two service processes with sessions and requests of their own. */
class FakeGroup implements ConnectionService {
  readonly pauseOnConnect = true;
  readonly dispatch = "manager" as const;
  accepted: net.Socket[] = [];
  drainedWith: number | null = null;
  connections = 3;
  inflight = 2;
  accept(socket: net.Socket): void {
    this.accepted.push(socket);
    socket.destroy();
  }
  bufferedBytes(): number {
    return 0;
  }
  counters(own: Record<string, number>): Record<string, number> {
    return { ...own, requests: 41, connectionsPassed: 5, semaphoreTurns: 0 };
  }
  latency(own: LatencyHistogram): LatencyHistogram {
    return own;
  }
  refusedBy(own: Record<string, number>): Record<string, number> {
    return own;
  }
  state: WorkerStatus["state"] = "ready";
  workers(): WorkerStatus[] {
    return [
      { slot: 1, pid: 101, state: this.state, sessions: 2, inflight: 1, requests: 20, connections: 2, restarts: 0 },
      { slot: 2, pid: 102, state: this.state, sessions: 1, inflight: 1, requests: 21, connections: 1, restarts: 0 },
    ];
  }
  addressRemoved(): void {}
  async listening(): Promise<void> {}
  async stopAccepting(): Promise<void> {}
  async drain(timeoutMs: number): Promise<void> {
    this.drainedWith = timeoutMs;
    this.connections = 0;
    this.inflight = 0;
  }
}

test("a manager's status and its stop status count its service processes' sessions and requests (was 0 requests on 0 connections)", async () => {
  const config = resolveConfig({ listen: ["127.0.0.1:0"], stateDir: tempDir() });
  const group = new FakeGroup();
  const sent: string[][] = [];
  let server!: Awaited<ReturnType<typeof openServer>>;
  const notifier = new SystemdNotifier({ socket: "/x", watchdogUsec: null }, () => server, silentLogger, { send: async (l: string[]) => void sent.push(l) });
  server = await openServer(config, { log: silentLogger, generation: 1, control: false, group: async () => group, parts: { events: notifier } });
  const status = server.status();
  assert.equal(status.sessions, 3);
  assert.equal(status.inflight, 2);
  assert.equal(status.dispatch, "manager");
  assert.deepEqual(status.workers.map((w) => w.pid), [101, 102]);
  assert.equal(status.counters.requests, 41, "the requests the service processes served");
  assert.equal(status.counters.connectionsPassed, 5);
  assert.equal(server.healthy(), true);
  group.state = "failed";
  assert.equal(server.healthy(), false, "/healthz: 503 while no service process is ready (a crash loop)");
  group.state = "ready";
  await server.drain(1234);
  await notifier.flush();
  notifier.close();
  assert.equal(group.drainedWith, 1234, "the group drains with the server's deadline");
  const stopping = sent.find((l) => l[0] === "STOPPING=1");
  assert.ok(stopping, JSON.stringify(sent));
  assert.match(stopping[1]!, /finishing 2 request\(s\) on 3 connection\(s\)/);
});
