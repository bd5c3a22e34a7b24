import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import net from "node:net";
import { after, test } from "node:test";
import { ClientSession } from "../../src/client/client_session.ts";
import { silentLogger } from "../../src/logger.ts";
import { startServer } from "../../src/server/start_server.ts";
import { WORKER_STATE_ENV, type WorkerToManager } from "../../src/group/group_protocol.ts";
import { serveForManager, serviceProcessHandoff, type ManagerChannel } from "../../src/group/service_process.ts";
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

test("a service process asks its manager for its slot's state only when its environment says there is one; the answer is its app's state(); its own state and a handover reach the manager's drain", async () => {
  // Not told: nothing is asked (a fresh start, or a manager that would not answer).
  const quiet = new FakeManager();
  const none = serviceProcessHandoff(silentLogger, quiet as unknown as ManagerChannel, {});
  await none.receive();
  assert.equal(none.state(), undefined);
  assert.deepEqual(quiet.sent, []);
  assert.throws(() => none.put("x", 5), (err: Error & { code?: string }) => err.code === "PERILINK_HANDOFF" && /a service process \(--workers\) cannot pass descriptors/.test(err.message));

  // Told: it asks once, and the variable is gone for the processes the app starts.
  const manager = new FakeManager();
  const env: NodeJS.ProcessEnv = { [WORKER_STATE_ENV]: "1" };
  const h = serviceProcessHandoff(silentLogger, manager as unknown as ManagerChannel, env);
  assert.equal(env[WORKER_STATE_ENV], undefined);
  const receiving = h.receive();
  await waitFor(() => manager.sent.length === 1, "the request");
  assert.deepEqual(manager.sent[0], { t: "state-request" });
  manager.emit("message", { t: "conn" }); // not its answer
  manager.emit("message", { t: "state", text: '{"count":7}' });
  await receiving;
  assert.deepEqual(h.state(), { count: 7 });
  assert.equal(manager.listenerCount("message"), 0, "its listener is gone");

  // The manager's going away is no answer.
  const gone = new FakeManager();
  const g = serviceProcessHandoff(silentLogger, gone as unknown as ManagerChannel, { [WORKER_STATE_ENV]: "1" });
  const r = g.receive();
  await waitFor(() => gone.sent.length === 1, "the request");
  gone.emit("disconnect");
  await r;
  assert.equal(g.state(), undefined);

  // serveForManager answers the manager's ask with what the app put, and passes on that a new generation took over.
  const server = await startServer({ access: "open", stateDir: tempDir(), listeners: false, control: false, logger: silentLogger, appObject: { request: (p: Uint8Array) => p } });
  const m = new FakeManager();
  h.putState({ count: 8 });
  const done = serveForManager(server, silentLogger, m as unknown as ManagerChannel, h);
  m.emit("message", { t: "state-request" });
  assert.deepEqual(m.sent.find((x) => x.t === "state"), { t: "state", text: '{"count":8}' });
  assert.equal(h.handedOver, false);
  m.emit("message", { t: "drain", handedOver: true });
  await done;
  assert.equal(h.handedOver, true, "the app's drain() sees handedOver");
});
