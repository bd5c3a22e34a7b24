import assert from "node:assert/strict";
import dgram from "node:dgram";
import { fstatSync } from "node:fs";
import net from "node:net";
import { test } from "node:test";
import { ListenError } from "../../src/errors.ts";
import { createLogger, type Logger } from "../../src/logger.ts";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import type { InterfaceAddress } from "../../src/server/interface_addresses.ts";
import type { ListenSpec } from "../../src/server/listen_spec.ts";
import { ListenerSet, type Endpoint, type ListenerHandlers } from "../../src/server/listener_set.ts";

const v4 = (address: string): InterfaceAddress => ({ address, family: 4, iface: "lo", linkLocal: false });
const v6 = (address: string): InterfaceAddress => ({ address, family: 6, iface: "lo", linkLocal: false });
/** An address of the TEST-NET-2 range, assigned to no interface here: binding it fails with EADDRNOTAVAIL. */
const ABSENT = "198.51.100.77";

interface Recorded {
  connections: { socket: net.Socket; endpoint: Endpoint }[];
  datagrams: { msg: string; from: dgram.RemoteInfo; udp: dgram.Socket }[];
  removed: Endpoint[];
  log: { level: string; event: string; [k: string]: unknown }[];
}

function recorder(): { handlers: ListenerHandlers; rec: Recorded; logger: Logger } {
  const rec: Recorded = { connections: [], datagrams: [], removed: [], log: [] };
  const handlers: ListenerHandlers = {
    onConnection: (socket, endpoint) => {
      rec.connections.push({ socket, endpoint });
      socket.on("error", () => {});
    },
    onDatagram: (msg, from, udp) => {
      rec.datagrams.push({ msg: msg.toString(), from, udp });
      udp.send(`echo ${msg.toString()}`, from.port, from.address);
    },
    onRemoved: (endpoint) => rec.removed.push(endpoint),
  };
  const logger = createLogger("debug", (line) => rec.log.push(JSON.parse(line) as Recorded["log"][number]));
  return { handlers, rec, logger };
}

/** A ListenerSet with recording handlers; closed (and its accepted sockets destroyed) by `done`. */
function set(specs: ListenSpec[], options: ConstructorParameters<typeof ListenerSet>[3] = {}) {
  const { handlers, rec, logger } = recorder();
  const ls = new ListenerSet(specs, handlers, logger, options);
  const done = async (): Promise<void> => {
    await ls.close();
    for (const c of rec.connections) c.socket.destroy();
  };
  return { ls, rec, done };
}

const addr = (address: string, port: number): ListenSpec => ({ kind: "address", address, family: address.includes(":") ? 6 : 4, port });

/** Connects over TCP and waits until the connection is accepted (or refused). */
function tcpConnect(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

/** Sends one datagram and waits for the echo; rejects after `ms`. */
function udpAsk(host: string, port: number, text: string, ms = 1000): Promise<string> {
  const sock = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
  return new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer from ${host}:${port}`)), ms);
    sock.on("message", (m) => {
      clearTimeout(t);
      resolve(m.toString());
    });
    sock.on("error", (e) => {
      clearTimeout(t);
      reject(e);
    });
    sock.send(text, port, host);
  }).finally(() => sock.close());
}

/** Whether `port` on `host` can be bound again now, TCP and UDP. */
async function free(host: string, port: number): Promise<boolean> {
  const tcp = net.createServer();
  const ok = await new Promise<boolean>((resolve) => {
    tcp.once("error", () => resolve(false));
    tcp.listen({ host, port, exclusive: true }, () => resolve(true));
  });
  if (ok) await new Promise<void>((r) => tcp.close(() => r()));
  if (!ok) return false;
  const udp = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
  const uok = await new Promise<boolean>((resolve) => {
    udp.once("error", () => resolve(false));
    udp.bind({ address: host, port, exclusive: true }, () => resolve(true));
  });
  await new Promise<void>((r) => {
    try {
      udp.close(() => r());
    } catch {
      r();
    }
  });
  return uok;
}

const sortedAddresses = (eps: Endpoint[]): string[] => eps.map((e) => e.address).sort();

test("binds TCP and UDP on one port for each explicit address, and hands each accepted socket over with its endpoint", async () => {
  const { ls, rec, done } = set([addr("127.0.0.1", 0), addr("127.0.0.2", 0), addr("::1", 0)]);
  try {
    await ls.start();
    const eps = ls.endpoints();
    assert.deepEqual(sortedAddresses(eps), ["127.0.0.1", "127.0.0.2", "::1"]);
    for (const ep of eps) {
      assert.equal(ep.source, "explicit");
      assert.equal(ep.family, ep.address === "::1" ? 6 : 4);
      assert.ok(ep.port > 0, "port 0 resolved");
      const c = await tcpConnect(ep.address, ep.port);
      await waitFor(() => rec.connections.some((x) => x.endpoint === ep), `a connection on ${ep.address}`);
      c.destroy();
      assert.equal(await udpAsk(ep.address, ep.port, ep.address), `echo ${ep.address}`, "the UDP responder shares the TCP port");
    }
    assert.equal(rec.connections.length, 3);
    assert.equal(rec.datagrams.length, 3);
    assert.equal(ls.tcpServers().length, 3);
  } finally {
    await done();
  }
});

test("auto entries listen on every address of the injected interface list, on one port chosen once for the entry", async () => {
  const { ls, rec, done } = set([{ kind: "auto", port: 0 }], { interfaces: () => [v4("127.0.0.1"), v4("127.0.0.2"), v6("::1")] });
  try {
    await ls.start();
    const eps = ls.endpoints();
    assert.deepEqual(sortedAddresses(eps), ["127.0.0.1", "127.0.0.2", "::1"]);
    assert.equal(new Set(eps.map((e) => e.port)).size, 1, "one port for the whole entry");
    assert.ok(eps.every((e) => e.source === "auto"));
    const port = eps[0]!.port;
    assert.deepEqual(ls.resolvedSpecs(), [{ kind: "auto", port }], "resolvedSpecs keeps the port the kernel chose");
    for (const host of ["127.0.0.2", "::1"]) {
      const c = await tcpConnect(host, port);
      c.destroy();
    }
    await waitFor(() => rec.connections.length === 2, "two connections");
  } finally {
    await done();
  }
});

test("port 0 is resolved per entry: two entries get two ports, and the caller's specs are not changed", async () => {
  const specs: ListenSpec[] = [addr("127.0.0.1", 0), addr("127.0.0.1", 0), { kind: "auto", port: 0 }];
  const { ls, done } = set(specs, { interfaces: () => [v4("127.0.0.2")] });
  try {
    await ls.start();
    const resolved = ls.resolvedSpecs();
    const ports = resolved.map((s) => s.port);
    assert.equal(new Set(ports).size, 3, `three entries, three ports (${ports.join(", ")})`);
    assert.ok(ports.every((p) => p > 0));
    assert.deepEqual(
      ls.endpoints().map((e) => `${e.address}:${e.port}`).sort(),
      [`127.0.0.1:${ports[0]}`, `127.0.0.1:${ports[1]}`, `127.0.0.2:${ports[2]}`].sort(),
    );
    assert.deepEqual(
      specs.map((s) => s.port),
      [0, 0, 0],
      "the specs passed in are copied",
    );
    resolved[0]!.port = 1;
    assert.equal(ls.resolvedSpecs()[0]!.port, ports[0], "resolvedSpecs returns copies");
  } finally {
    await done();
  }
});

test("rescan opens listeners for new addresses on the entry's port and closes those that vanished, calling onRemoved", async () => {
  let addrs = [v4("127.0.0.1")];
  const { ls, rec, done } = set([{ kind: "auto", port: 0 }], { interfaces: () => addrs });
  try {
    await ls.start();
    const port = ls.endpoints()[0]!.port;
    addrs = [v4("127.0.0.1"), v4("127.0.0.2"), v6("::1")];
    await ls.rescan();
    assert.deepEqual(sortedAddresses(ls.endpoints()), ["127.0.0.1", "127.0.0.2", "::1"]);
    assert.ok(ls.endpoints().every((e) => e.port === port), "new addresses join on the entry's port");
    assert.equal(await udpAsk("127.0.0.2", port, "hi"), "echo hi");
    assert.equal(rec.removed.length, 0);
    assert.ok(rec.log.some((l) => l.event === "listener_added" && l.address === "127.0.0.2" && l.port === port));

    addrs = [v4("127.0.0.1"), v6("::1")];
    await ls.rescan();
    assert.deepEqual(sortedAddresses(ls.endpoints()), ["127.0.0.1", "::1"]);
    assert.deepEqual(
      rec.removed.map((e) => [e.address, e.port, e.source]),
      [["127.0.0.2", port, "auto"]],
    );
    assert.ok(rec.log.some((l) => l.event === "listener_removed" && l.address === "127.0.0.2"));
    await assert.rejects(tcpConnect("127.0.0.2", port), (e: NodeJS.ErrnoException) => e.code === "ECONNREFUSED");
    assert.equal(await free("127.0.0.2", port), true, "TCP and UDP of the vanished address are closed");
    const c = await tcpConnect("::1", port);
    c.destroy();
  } finally {
    await done();
  }
});

test("rescan never closes an explicit endpoint, whatever the interface list says", async () => {
  let addrs = [v4("127.0.0.2")];
  const { ls, rec, done } = set([addr("127.0.0.1", 0), { kind: "auto", port: 0 }], { interfaces: () => addrs });
  try {
    await ls.start();
    addrs = [];
    await ls.rescan();
    assert.deepEqual(
      ls.endpoints().map((e) => [e.address, e.source]),
      [["127.0.0.1", "explicit"]],
    );
    assert.deepEqual(
      rec.removed.map((e) => e.address),
      ["127.0.0.2"],
    );
  } finally {
    await done();
  }
});

test("a rescan while one runs shares it", async () => {
  let scans = 0;
  let addrs = [v4("127.0.0.1")];
  const { ls, done } = set([{ kind: "auto", port: 0 }], {
    interfaces: () => {
      scans++;
      return addrs;
    },
  });
  try {
    await ls.start();
    scans = 0;
    addrs = [v4("127.0.0.1"), v4("127.0.0.2")];
    const a = ls.rescan();
    const b = ls.rescan();
    assert.equal(a, b, "one scan");
    await a;
    assert.equal(scans, 1);
    assert.deepEqual(sortedAddresses(ls.endpoints()), ["127.0.0.1", "127.0.0.2"]);
    await ls.rescan();
    assert.equal(scans, 2, "a rescan after it ends scans again");
  } finally {
    await done();
  }
});

test("an auto address that cannot be bound at start is logged and skipped, and tried again on rescan", async () => {
  let scans = 0;
  const { ls, rec, done } = set([{ kind: "auto", port: 0 }], {
    interfaces: () => {
      scans++;
      return [v4("127.0.0.1"), v4(ABSENT)];
    },
  });
  try {
    await ls.start();
    assert.deepEqual(sortedAddresses(ls.endpoints()), ["127.0.0.1"]);
    const failed = rec.log.filter((l) => l.event === "listener_failed");
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.address, ABSENT);
    assert.equal(failed[0]!.level, "warn");
    await ls.rescan();
    assert.equal(rec.log.filter((l) => l.event === "listener_failed").length, 2, "tried again, failed again, logged again");
    assert.deepEqual(sortedAddresses(ls.endpoints()), ["127.0.0.1"]);
  } finally {
    await done();
  }
});

// start() sets each endpoint's port to its entry's port before binding it (so the first bind's
// choice is shared); #rescan() builds all its endpoints first, each with the entry's port as it
// was then, and does not. An `auto:0` entry that bound nothing at start (no usable address yet)
// thus gets one kernel-chosen port per address on the rescan that finds addresses.
test("an auto:0 entry that bound nothing at start shares the first port the kernel chooses on rescan across every address", async () => {
  let addrs = [v4(ABSENT)];
  const { ls, rec, done } = set([{ kind: "auto", port: 0 }], { interfaces: () => addrs });
  try {
    await ls.start();
    assert.deepEqual(ls.endpoints(), []);
    addrs = [v4("127.0.0.1"), v4("127.0.0.2"), v6("::1")];
    await ls.rescan();
    const eps = ls.endpoints();
    assert.deepEqual(sortedAddresses(eps), ["127.0.0.1", "127.0.0.2", "::1"]);
    const port = ls.resolvedSpecs()[0]!.port;
    assert.deepEqual(
      eps.map((e) => `${e.address} ${e.port}`).sort(),
      [`127.0.0.1 ${port}`, `127.0.0.2 ${port}`, `::1 ${port}`],
      "one port for the whole entry",
    );
    await ls.rescan();
    assert.equal(rec.removed.length, 0, "and nothing is closed on the next scan");
  } finally {
    await done();
  }
});

test("an explicit address the device does not have fails start with PERILINK_ADDRESS_UNAVAILABLE, and what was bound is freed", async () => {
  const { ls, done } = set([addr("127.0.0.1", 0), addr(ABSENT, 0)]);
  try {
    await assert.rejects(ls.start(), (e: unknown) => e instanceof ListenError && e.code === "PERILINK_ADDRESS_UNAVAILABLE" && e.message.includes(ABSENT));
    assert.deepEqual(ls.endpoints(), []);
    const port = ls.resolvedSpecs()[0]!.port;
    assert.ok(port > 0);
    assert.equal(await free("127.0.0.1", port), true);
  } finally {
    await done();
  }
});

test("a port taken by someone else fails start with PERILINK_ADDRESS_IN_USE naming the address, and what was bound is freed", async () => {
  const blocker = net.createServer();
  await new Promise<void>((r) => blocker.listen(0, "127.0.0.2", () => r()));
  const port = (blocker.address() as net.AddressInfo).port;
  const { ls, done } = set([addr("127.0.0.1", port), addr("127.0.0.2", port)]);
  try {
    await assert.rejects(
      ls.start(),
      (e: unknown) => e instanceof ListenError && e.code === "PERILINK_ADDRESS_IN_USE" && e.message.includes(`127.0.0.2:${port}`),
    );
    assert.equal(await free("127.0.0.1", port), true);
  } finally {
    await done();
    await new Promise<void>((r) => blocker.close(() => r()));
  }
});

test("an auto address whose port is taken on rescan is logged and skipped; the others are kept", async () => {
  let addrs = [v4("127.0.0.1")];
  const { ls, rec, done } = set([{ kind: "auto", port: 0 }], { interfaces: () => addrs });
  const blocker = net.createServer();
  try {
    await ls.start();
    const port = ls.endpoints()[0]!.port;
    await new Promise<void>((resolve, reject) => {
      blocker.once("error", reject);
      blocker.listen(port, "127.0.0.2", () => resolve());
    });
    addrs = [v4("127.0.0.1"), v4("127.0.0.2")];
    await ls.rescan();
    assert.deepEqual(sortedAddresses(ls.endpoints()), ["127.0.0.1"]);
    assert.ok(rec.log.some((l) => l.event === "listener_failed" && l.address === "127.0.0.2" && (l.error as { code?: string }).code === "PERILINK_ADDRESS_IN_USE"));
  } finally {
    await done();
    if (blocker.listening) await new Promise<void>((r) => blocker.close(() => r()));
  }
});

test("handoffSockets names each listening socket tcp@ADDRESS@PORT / udp@ADDRESS@PORT with the address URI-encoded", { skip: detectRuntime().name !== "node" && "handing sockets over is Node.js only" }, async () => {
  const { ls, done } = set([addr("127.0.0.1", 0), addr("::1", 0)]);
  try {
    await ls.start();
    const p4 = ls.endpoints().find((e) => e.family === 4)!.port;
    const p6 = ls.endpoints().find((e) => e.family === 6)!.port;
    const sockets = ls.handoffSockets();
    assert.deepEqual(sockets.map((s) => s.name).sort(), [`tcp@%3A%3A1@${p6}`, `tcp@127.0.0.1@${p4}`, `udp@%3A%3A1@${p6}`, `udp@127.0.0.1@${p4}`].sort());
    assert.equal(new Set(sockets.map((s) => s.fd)).size, 4, "four descriptors");
    for (const s of sockets) assert.ok(fstatSync(s.fd).isSocket(), `${s.name} is an open socket`);
  } finally {
    await done();
  }
});

test("close() closes every TCP listener and UDP responder, and a rescan afterwards opens nothing", async () => {
  let addrs = [v4("127.0.0.1"), v6("::1")];
  const { ls, rec, done } = set([{ kind: "auto", port: 0 }, addr("127.0.0.2", 0)], { interfaces: () => addrs });
  try {
    await ls.start();
    const eps = ls.endpoints().map((e) => ({ ...e }));
    const client = await tcpConnect("127.0.0.1", eps[0]!.port);
    await waitFor(() => rec.connections.length === 1, "the connection");
    await ls.close();
    assert.deepEqual(ls.endpoints(), []);
    for (const ep of eps) assert.equal(await free(ep.address, ep.port), true, `${ep.address}:${ep.port} is free`);
    assert.equal(rec.connections[0]!.socket.destroyed, false, "accepted sockets belong to the sessions: close() leaves them");
    client.destroy();
    addrs = [v4("127.0.0.1"), v4("127.0.0.2"), v6("::1")];
    await ls.rescan();
    assert.deepEqual(ls.endpoints(), []);
    assert.equal(rec.removed.length, 0, "closing is not an address vanishing");
  } finally {
    await done();
  }
});

test("deferUdp binds the UDP responders only at activate()", async () => {
  const { ls, done } = set([addr("127.0.0.1", 0)], { deferUdp: true });
  try {
    await ls.start();
    const port = ls.endpoints()[0]!.port;
    const c = await tcpConnect("127.0.0.1", port);
    c.destroy();
    await assert.rejects(udpAsk("127.0.0.1", port, "early", 200), "nobody answers UDP before activate()");
    await ls.activate();
    assert.equal(await udpAsk("127.0.0.1", port, "now"), "echo now");
  } finally {
    await done();
  }
});

async function waitFor(cond: () => boolean, what: string, ms = 2000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
