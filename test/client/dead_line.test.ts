/**
 * Dead-line detection without root: a relay on 127.0.0.2 carries the
 * session (TCP and the UDP probes) to a server on 127.0.0.1 and can go
 * silent — swallow every byte both ways without closing anything, as a
 * pulled cable does. The namespace test (dead_line_netns.test.ts) does the
 * same with real links.
 */
import assert from "node:assert/strict";
import dgram from "node:dgram";
import net from "node:net";
import { after, test } from "node:test";
import { createClient } from "../../src/client/client.ts";
import { portOf, sleep, testServer } from "../helpers/fixtures.ts";
import { describeFailures, pacedRequests } from "../helpers/paced_requests.ts";

/** Relays 127.0.0.2:port (TCP and UDP) to 127.0.0.1:target until `silent` is set; then drops everything. */
async function relay(target: number): Promise<{ port: number; silent: { on: boolean } }> {
  const silent = { on: false };
  const sockets = new Set<net.Socket>();
  const tcp = net.createServer((down) => {
    const up = net.connect({ host: "127.0.0.1", port: target });
    for (const s of [up, down]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => sockets.delete(s));
    }
    down.on("data", (b: Buffer) => void (silent.on || up.write(b)));
    up.on("data", (b: Buffer) => void (silent.on || down.write(b)));
    down.on("close", () => up.destroy());
    up.on("close", () => down.destroy());
  });
  await new Promise<void>((r) => tcp.listen(0, "127.0.0.2", () => r()));
  const port = (tcp.address() as net.AddressInfo).port;
  const udp = dgram.createSocket("udp4");
  await new Promise<void>((r) => udp.bind(port, "127.0.0.2", () => r()));
  const upstream = new Map<string, dgram.Socket>();
  udp.on("message", (msg, rinfo) => {
    if (silent.on) return;
    const key = `${rinfo.address}:${rinfo.port}`;
    let u = upstream.get(key);
    if (!u) {
      const s = dgram.createSocket("udp4");
      s.on("message", (reply) => void (silent.on || udp.send(reply, rinfo.port, rinfo.address)));
      s.on("error", () => {});
      upstream.set(key, s);
      u = s;
    }
    u.send(msg, target, "127.0.0.1");
  });
  after(() => {
    for (const s of sockets) s.destroy();
    for (const s of upstream.values()) s.close();
    tcp.close();
    udp.close();
  });
  return { port, silent };
}

test("a session whose line goes silent (nothing closed, nothing arrives) moves its links to the server's other address within 3 s, no idempotent request failing", async (t) => {
  const server = await testServer();
  const r = await relay(portOf(server));
  const client = createClient({ lingerMs: 0 });
  after(() => client.close());
  const a = await client.connect({ host: "127.0.0.2", port: r.port, app: "a" });
  await client.connect({ host: "127.0.0.1", port: portOf(server), app: "b" });
  assert.equal(client.sessions()[0]!.communicationAddress, "127.0.0.2");
  const run = pacedRequests(a, { everyMs: 20, maxMs: 5000 });
  await sleep(300);
  const failedAt = Date.now();
  r.silent.on = true;
  await sleep(3500);
  const records = await run.stop(3000);
  const late = records.filter((x) => x.startedAt >= failedAt);
  const worst = Math.max(...late.map((x) => (x.endedAt ?? Infinity) - x.startedAt));
  t.diagnostic(`${records.length} requests; slowest started after the line went silent: ${worst} ms; session on ${client.sessions()[0]!.communicationAddress}`);
  assert.deepEqual(describeFailures(records), []);
  assert.ok(worst <= 3000, `requests flow again within 3 s (slowest ${worst} ms)`);
  assert.equal(client.sessions()[0]!.communicationAddress, "127.0.0.1");
});

test("with pingTimeoutMs 0 a silent line is not detected (the switch is off): requests wait for their own deadline", async () => {
  const server = await testServer();
  const r = await relay(portOf(server));
  // Weighed by bandwidth alone, the two loopback lines are alike whatever their round trips on a loaded machine: the session stays.
  const client = createClient({ lingerMs: 0, pingTimeoutMs: 0, lineRefreshMs: 0, linePreference: { bandwidth: 1 } });
  after(() => client.close());
  const a = await client.connect({ host: "127.0.0.2", port: r.port, app: "a" });
  await client.connect({ host: "127.0.0.1", port: portOf(server), app: "b" });
  await client.refreshLines(); // measured while the relay still carries
  assert.equal(client.sessions()[0]!.communicationAddress, "127.0.0.2");
  r.silent.on = true;
  await assert.rejects(a.request("x", { timeoutMs: 1500, idempotent: true }), (e: Error & { code?: string }) => e.code === "PERILINK_REQUEST_TIMEOUT");
  assert.equal(client.sessions()[0]!.communicationAddress, "127.0.0.2");
});

/** A loopback proxy that passes client → server bytes at `bytesPerSec` (server → client at once). */
async function slowUplink(target: number, bytesPerSec: number): Promise<{ port: number; close(): void }> {
  const sockets = new Set<net.Socket>();
  const timers = new Set<ReturnType<typeof setInterval>>();
  const srv = net.createServer((down) => {
    const up = net.connect(target, "127.0.0.1");
    for (const s of [up, down]) {
      sockets.add(s);
      s.on("error", () => {});
    }
    up.pipe(down);
    const queue: Buffer[] = [];
    down.on("data", (d: Buffer) => queue.push(d));
    const perTick = Math.floor(bytesPerSec / 50);
    const t = setInterval(() => {
      for (let budget = perTick; budget > 0 && queue.length > 0; ) {
        const head = queue[0]!;
        const n = Math.min(budget, head.length);
        up.write(head.subarray(0, n));
        budget -= n;
        if (n === head.length) queue.shift();
        else queue[0] = head.subarray(n);
      }
    }, 20);
    timers.add(t);
    const stop = (): void => {
      clearInterval(t);
      down.destroy();
      up.destroy();
    };
    down.on("close", stop);
    up.on("close", stop);
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: () => {
      srv.close();
      for (const t of timers) clearInterval(t);
      for (const s of sockets) s.destroy();
    },
  };
}

test("regression: a 1 MB request over a 400 KB/s uplink is answered: a PING queued behind our own upload is given the time it takes", async () => {
  const { ClientSession } = await import("../../src/client/client_session.ts");
  const server = await testServer();
  const proxy = await slowUplink(portOf(server), 400_000);
  after(() => proxy.close());
  const session = await ClientSession.connect({ host: "127.0.0.1", port: proxy.port, timeoutMs: 5000 });
  after(() => session.destroy());
  const answer = await (await session.openChannel("echo")).request(Buffer.alloc(1_000_000, 1), { timeoutMs: 15_000 });
  assert.equal(answer.length, 1_000_000, "answered, not taken for a dead line after 1.5 s");
});
