import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, test } from "node:test";
import { ClientSession } from "../../src/client/client_session.ts";
import { detectRuntime } from "../../src/runtime/runtime.ts";
import { runCli, spawnCli, stopChild } from "../helpers/cli.ts";
import { connect, portOf, sleep, tempDir, testServer, waitFor } from "../helpers/fixtures.ts";
import { freePort } from "../helpers/free_port.ts";
import { stopPidAfter } from "../helpers/pid_alive.ts";
import { openMetricsParserMissing, parseOpenMetrics, sampleValue, type ParsedMetrics } from "../helpers/open_metrics_parser.ts";

const missing = openMetricsParserMissing();

function get(port: number, p: string, method = "GET"): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path: p, method, agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (s: string) => (body += s));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"]), body }));
    });
    req.on("error", reject);
    req.end();
  });
}

/**
 * The process an upgrade started is not the test's child: `checks` run, then it is stopped in the
 * test itself, whether or not they passed, and waited for. (Stopped from an `after` hook instead, it
 * was seen left running after Deno runs of this file; why is not known.)
 */
async function thenStop(stateDir: string, checks: () => Promise<void>): Promise<void> {
  const { pid } = JSON.parse((await runCli(["status", "--state-dir", stateDir, "--json"])).stdout) as { pid: number };
  await stopPidAfter(pid, checks, "the upgraded server");
}

const total = (m: ParsedMetrics, family: string, labels: Record<string, string> = {}): number => sampleValue(m, family, `${family}_total`, labels) ?? NaN;

test("/metrics serves OpenMetrics a real parser reads: requests, errors, latency, bytes, refusals by reason", { skip: missing ?? false }, async () => {
  const port = await freePort();
  const server = await testServer({
    metrics: { listen: `127.0.0.1:${port}` },
    limits: { maxSessionsPerPeer: 1 },
    appObject: {
      request: (p: Buffer) => {
        if (p.toString() === "fail") throw new Error("no");
        return p;
      },
    },
  });
  const ch = await (await connect(server)).openChannel("echo");
  for (let i = 0; i < 5; i++) assert.equal((await ch.request(`hello ${i}`)).toString(), `hello ${i}`);
  await assert.rejects(ch.request("fail"));
  // A second session from the same peer is over maxSessionsPerPeer: refused, and counted under that reason.
  await assert.rejects(ClientSession.connect({ host: "127.0.0.1", port: portOf(server), timeoutMs: 3000 }));
  const res = await get(port, "/metrics");
  assert.equal(res.status, 200);
  assert.match(res.type, /^application\/openmetrics-text; version=1\.0\.0/);
  const m = parseOpenMetrics(res.body);
  assert.equal(total(m, "perilink_requests"), 6);
  assert.equal(total(m, "perilink_request_errors"), 1);
  assert.equal(sampleValue(m, "perilink_request_duration_seconds", "perilink_request_duration_seconds_count"), 6);
  assert.equal(total(m, "perilink_sessions_refused", { reason: "maxSessionsPerPeer" }), 1);
  assert.equal(total(m, "perilink_sessions_refused", { reason: "maxSessions" }), 0);
  assert.ok(total(m, "perilink_received_bytes") > 6 * 7, "bytes of open sessions count");
  assert.ok(total(m, "perilink_sent_bytes") > 5 * 7);
  assert.equal(sampleValue(m, "perilink_sessions", "perilink_sessions"), 1);
  assert.equal(sampleValue(m, "perilink_accepting", "perilink_accepting"), 1);
  assert.ok((sampleValue(m, "perilink_process_resident_memory_bytes", "perilink_process_resident_memory_bytes") ?? 0) > 1e6);
  assert.equal(m.perilink_server?.samples[0]?.[1].server_id, server.serverId);
  // The control socket gives the same families.
  const viaControl = await runCli(["metrics", "--state-dir", server.config.stateDir]);
  assert.equal(viaControl.code, 0, viaControl.stderr);
  assert.deepEqual(Object.keys(parseOpenMetrics(viaControl.stdout)).sort(), Object.keys(m).sort());
  assert.equal((await get(port, "/nothing")).status, 404);
  assert.equal((await get(port, "/metrics", "POST")).status, 405);
});

test("/healthz answers 200 while the server accepts and 503 once it drains", async () => {
  const port = await freePort();
  const server = await testServer({ metrics: { listen: `127.0.0.1:${port}` }, appObject: { request: () => new Promise((r) => setTimeout(() => r("late"), 600)) } });
  assert.deepEqual([(await get(port, "/healthz")).status, (await get(port, "/healthz")).body], [200, "accepting\n"]);
  const session = await connect(server);
  const ch = await session.openChannel("slow");
  const slow = ch.request("x").catch(() => undefined);
  await waitFor(() => server.status().inflight === 1, "a request running");
  const drained = server.drain(5000);
  await waitFor(() => !server.accepting, "the drain to begin");
  assert.equal((await get(port, "/healthz")).status, 503);
  await slow;
  await drained;
});

test("metrics.listen is checked: an address and port of its own", async () => {
  const { resolveConfig } = await import("../../src/server/config.ts");
  assert.equal(resolveConfig({}).metrics, null);
  assert.deepEqual(resolveConfig({ metrics: { listen: "[::1]:9464" } }).metrics, { address: "::1", port: 9464, text: "[::1]:9464" });
  for (const [bad, why] of [
    ["auto:9464", /one address, not auto/],
    ["127.0.0.1:0", /a port, not 0/],
    ["127.0.0.1:1025", /port 1025, which the port group listens on/],
    ["nonsense", /malformed/],
  ] as const) {
    assert.throws(() => resolveConfig({ metrics: { listen: bad } }), why);
  }
  assert.throws(() => resolveConfig({ metrics: { port: 1 } } as never), /unknown key "metrics.port"/);
});

test("counters continue across an upgrade, and the metrics port answers all through it", { skip: missing ?? false }, async () => {
  const stateDir = tempDir();
  const port = await freePort();
  const config = path.join(tempDir(), "config.json");
  writeFileSync(config, JSON.stringify({ listen: ["127.0.0.1:0"], access: "open", metrics: { listen: `127.0.0.1:${port}` } }));
  const child = spawnCli(["serve", "--config", config, "--state-dir", stateDir]);
  let err = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (err += s));
  after(() => stopChild(child));
  await waitFor(() => err.includes('"server_started"') || child.exitCode !== null, "the server to start", 20000);
  const status = JSON.parse((await runCli(["status", "--state-dir", stateDir, "--json"])).stdout) as { listeners: { port: number }[] };
  for (let i = 0; i < 3; i++) assert.equal((await runCli(["call", `127.0.0.1:${status.listeners[0]!.port}`, "--state-dir", tempDir()])).code, 0);
  const before = parseOpenMetrics((await get(port, "/metrics")).body);
  assert.equal(total(before, "perilink_requests"), 3);
  let scrapes = 0;
  const failures: string[] = [];
  let upgrading = true;
  const scraper = (async () => {
    const until = Date.now() + 60_000;
    while (upgrading && Date.now() < until) {
      try {
        const r = await get(port, "/metrics");
        if (r.status !== 200) failures.push(`status ${r.status}`);
        else if (total(parseOpenMetrics(r.body), "perilink_requests") < 3) failures.push("a counter went back");
        scrapes++;
      } catch (e) {
        failures.push(String(e));
      }
    }
  })();
  const up = await runCli(["upgrade", "--state-dir", stateDir, "--timeout", "20000"]);
  upgrading = false;
  await scraper;
  assert.equal(up.code, 0, up.stderr);
  await thenStop(stateDir, async () => {
    assert.deepEqual(failures, [], `${scrapes} scrapes during the upgrade`);
    assert.ok(scrapes >= 3, `${scrapes} scrapes`);
    const afterUp = parseOpenMetrics((await get(port, "/metrics")).body);
    assert.ok(total(afterUp, "perilink_received_bytes") >= total(before, "perilink_received_bytes"), "bytes do not go back");
    assert.equal(sampleValue(afterUp, "perilink_generation", "perilink_generation"), 2);
    assert.equal(total(afterUp, "perilink_requests"), 3, "the new process continues the totals");
    assert.equal(sampleValue(afterUp, "perilink_request_duration_seconds", "perilink_request_duration_seconds_count"), 3, "and the latency buckets");
    assert.equal(sampleValue(afterUp, "perilink_handoff_duration_seconds", "perilink_handoff_duration_seconds_count"), 1);
    assert.ok((sampleValue(afterUp, "perilink_handoff_duration_seconds", "perilink_handoff_duration_seconds_sum") ?? 0) > 0);
  });
});

test("a group's metrics add up its service processes' requests and latency", { skip: missing ?? (detectRuntime().name === "deno" ? "service processes need Node.js (docs/runtimes.md)" : false) }, async () => {
  const stateDir = tempDir();
  const port = await freePort();
  const config = path.join(tempDir(), "config.json");
  writeFileSync(config, JSON.stringify({ listen: ["127.0.0.1:0"], access: "open", workers: 2, metrics: { listen: `127.0.0.1:${port}` } }));
  const child = spawnCli(["serve", "--config", config, "--state-dir", stateDir]);
  let err = "";
  child.stderr!.setEncoding("utf8").on("data", (s: string) => (err += s));
  after(() => stopChild(child));
  await waitFor(() => err.includes('"server_started"') || child.exitCode !== null, "the group to start", 30000);
  const status = JSON.parse((await runCli(["status", "--state-dir", stateDir, "--json"])).stdout) as { listeners: { port: number }[] };
  for (let i = 0; i < 4; i++) assert.equal((await runCli(["call", `127.0.0.1:${status.listeners[0]!.port}`, "--state-dir", tempDir()])).code, 0);
  let m: ParsedMetrics = {};
  await waitFor(async () => {
    m = parseOpenMetrics((await get(port, "/metrics")).body);
    return total(m, "perilink_requests") === 4 && sampleValue(m, "perilink_request_duration_seconds", "perilink_request_duration_seconds_count") === 4;
  }, "the service processes' reports", 5000);
  assert.ok(total(m, "perilink_received_bytes") > 0);
  assert.equal(sampleValue(m, "perilink_service_processes", "perilink_service_processes", { state: "ready" }), 2);
  assert.equal(total(m, "perilink_connections_passed"), 4);
  // An upgrade of the group: the new manager continues what the old group's service processes counted.
  const up = await runCli(["upgrade", "--state-dir", stateDir, "--timeout", "30000"]);
  assert.equal(up.code, 0, up.stderr);
  await thenStop(stateDir, async () => {
    const next = parseOpenMetrics((await get(port, "/metrics")).body);
    assert.equal(sampleValue(next, "perilink_generation", "perilink_generation"), 2);
    assert.equal(total(next, "perilink_requests"), 4, "requests continue across a group upgrade");
    assert.equal(sampleValue(next, "perilink_request_duration_seconds", "perilink_request_duration_seconds_count"), 4);
    assert.ok(total(next, "perilink_received_bytes") >= total(m, "perilink_received_bytes"), "and bytes");
    assert.ok(total(next, "perilink_sessions_accepted") >= 4);
  });
});

test("the metrics listener cuts off a peer that never finishes its request, and still answers scrapes meanwhile", async () => {
  const port = await freePort();
  await testServer({ metrics: { listen: `127.0.0.1:${port}` } });
  const net = await import("node:net");
  const slow = net.connect(port, "127.0.0.1");
  slow.on("error", () => {});
  slow.resume(); // read what the server says (its 408), so its close is seen
  await new Promise((r) => slow.once("connect", r));
  slow.write("GET /metr"); // and nothing more
  const closed = new Promise<number>((r) => slow.once("close", () => r(Date.now())));
  const t0 = Date.now();
  assert.equal((await get(port, "/healthz")).status, 200, "another scrape is answered while it hangs");
  const at = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 10_000))]);
  assert.ok(at > 0, "the stalled peer is closed");
  assert.ok(at - t0 < 6000, `closed after ${at - t0} ms (headers timeout 3 s)`);
});

test("the metrics listener holds one peer to 8 connections and 16 requests on one connection", async () => {
  const port = await freePort();
  const server = await testServer({ metrics: { listen: `127.0.0.1:${port}` } });
  const net = await import("node:net");
  const held: import("node:net").Socket[] = [];
  after(() => held.forEach((s) => s.destroy()));
  const open = async (): Promise<{ s: import("node:net").Socket; closed: Promise<void> }> => {
    const s = net.connect({ port, host: "127.0.0.1" });
    s.on("error", () => {});
    s.resume();
    held.push(s);
    const closed = new Promise<void>((r) => s.once("close", () => r()));
    await new Promise((r) => s.once("connect", r));
    return { s, closed };
  };
  const eight = await Promise.all(Array.from({ length: 8 }, () => open()));
  const ninth = await open();
  const cut = await Promise.race([ninth.closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 1000))]);
  assert.ok(cut, "a ninth connection from the same address is closed");
  assert.ok(!eight[0]!.s.destroyed, "the first eight stay");
  eight.forEach(({ s }) => s.destroy());
  await sleep(100);
  // One connection pipelining 100 scrapes gets at most 16 answers, then is closed.
  const { s, closed } = await open();
  let text = "";
  s.setEncoding("utf8").on("data", (d: string) => (text += d));
  s.write("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(100));
  await Promise.race([closed, sleep(5000)]);
  const answers = text.match(/^HTTP\/1\.1 200/gm)?.length ?? 0;
  assert.ok(answers >= 1 && answers <= 16, `${answers} answers on one connection`);
  assert.ok(s.destroyed || s.readableEnded, "then it is closed");
  void server;
});
