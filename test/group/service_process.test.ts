import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import net from "node:net";
import { after, test } from "node:test";
import { ClientSession } from "../../src/client/client_session.ts";
import { silentLogger } from "../../src/logger.ts";
import { startServer } from "../../src/server/start_server.ts";
import type { WorkerToManager } from "../../src/group/group_protocol.ts";
import { serveForManager, type ManagerChannel } from "../../src/group/service_process.ts";
import { tempDir, waitFor } from "../helpers/fixtures.ts";

/** The manager's end of the IPC channel, faked: records what the service process sends. */
class FakeManager extends EventEmitter {
  connected = true;
  sent: WorkerToManager[] = [];
  send = (msg: unknown, _handle?: unknown, _opts?: unknown, cb?: () => void): boolean => {
    this.sent.push(msg as WorkerToManager);
    cb?.();
    return true;
  };
}

test("a service process serves the connections its manager passes, reports their closes and its counters, and drains when told", async () => {
  const server = await startServer({
    access: "open",
    stateDir: tempDir(),
    listeners: false,
    control: false,
    logger: silentLogger,
    appObject: { request: (p: Uint8Array) => p },
  });
  assert.deepEqual(server.endpoints(), [], "a service process opens no listener of its own");
  const manager = new FakeManager();
  const done = serveForManager(server, silentLogger, manager as unknown as ManagerChannel);
  assert.deepEqual(manager.sent[0], { t: "ready" });

  // The "manager" accepts on a listener of its own and passes each socket on (as IPC delivers it: not paused).
  const front = net.createServer((socket) => manager.emit("message", { t: "conn" }, socket));
  await new Promise<void>((r) => front.listen(0, "127.0.0.1", () => r()));
  after(() => front.close());
  const port = (front.address() as net.AddressInfo).port;
  const session = await ClientSession.connect({ host: "127.0.0.1", port, timeoutMs: 3000 });
  const ch = await session.openChannel("echo");
  for (let i = 0; i < 5; i++) assert.equal((await ch.request(`r${i}`)).toString(), `r${i}`);

  await waitFor(() => manager.sent.some((m) => m.t === "stats" && m.sessions === 1 && m.requests === 5), "a stats report with the session and its requests", 3000);
  assert.ok(!manager.sent.some((m) => m.t === "closed"));
  session.destroy();
  await waitFor(() => manager.sent.some((m) => m.t === "closed" && m.n === 1), "the close to be reported", 3000);

  manager.emit("message", { t: "drain" });
  await done;
  assert.equal(server.accepting, false);
});

test("a service process whose manager disappears drains and ends", async () => {
  const server = await startServer({ access: "open", stateDir: tempDir(), listeners: false, control: false, logger: silentLogger, appObject: { request: (p: Uint8Array) => p } });
  const manager = new FakeManager();
  const done = serveForManager(server, silentLogger, manager as unknown as ManagerChannel);
  manager.connected = false;
  manager.emit("disconnect");
  await done;
});
